"""`minicnn figures`: the seed tutorial's seven figures as PNGs, from a saved model or a quick run.

Without --model it first trains the seed model briefly (2 epochs by default) on the data
`minicnn train` uses (MNIST's first 20,000 training images; the offline sample when the full set
is absent), so the learned filters and confidences are real, then draws everything from it.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from minicnn import architectures, datasets, optimizers, viz
from minicnn.commands.argtypes import add_train_samples, check_output_folder
from minicnn.commands.argtypes import positive_int as _positive_int
from minicnn.commands.argtypes import seed as _seed
from minicnn.layers import Conv2D
from minicnn.layers.base import clear_session
from minicnn.random import set_random_seed
from minicnn.utils import to_categorical

HELP = "Draw the seed tutorial's seven figures (filters, activations, confidences, curves)."

INPUT_SHAPE, NUM_CLASSES = (28, 28, 1), 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        metavar="PATH",
        help="a model saved by `minicnn train --save PATH` (default: train the "
        "seed model here first, briefly)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default="figures",
        help="folder for the PNGs, created if missing (default: figures)",
    )
    parser.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="picks the 'random' digits and filters, and seeds the quick training run (default: 0)",
    )
    parser.add_argument(
        "--history",
        metavar="JSON",
        help="training curves from this `minicnn train --json` file (default: "
        "the quick run's history; none with --model)",
    )
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        default=2,
        help="epochs of the quick training run (default: 2)",
    )
    add_train_samples(parser)
    parser.add_argument(
        "--data",
        metavar="PATH",
        help="a Keras-format mnist.npz or a folder of the IDX files (default: as "
        "`minicnn train`: $MINICNN_DATA, Keras's cache, offline sample)",
    )
    parser.set_defaults(_parser=parser)


def _fail(args, message: str):
    parser = getattr(args, "_parser", None)
    if parser is not None:
        parser.error(message)  # exits with status 2
    raise SystemExit(f"minicnn figures: error: {message}")


def _load_data(path):
    """MNIST, with the loader's warnings (offline sample, corrupt cache) as one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = datasets.load("mnist", path)
    for w in caught:
        print(f"Warning: {' '.join(str(w.message).split())}", file=sys.stderr, flush=True)
    return ds


def _prepare(images, labels):
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1] and one-hot (N, 10), the seed's."""
    x = images.reshape(len(images), *INPUT_SHAPE).astype("float32") / 255
    return x, to_categorical(labels, NUM_CLASSES)


def _load_model(path):
    from minicnn import load_model  # saving is optional for the quick-run path

    model = load_model(path)
    if tuple(model.input_shape or ()) != INPUT_SHAPE or not isinstance(model.layers[0], Conv2D):
        raise ValueError(
            f"Argument --model: {path} must hold a model on 28x28x1 digits whose "
            f"first layer is a Conv2D. Received input shape {model.input_shape}, "
            f"first layer {type(model.layers[0]).__name__}."
        )
    return model


def _quick_train(args, x_train, y_train, x_test, y_test):
    n = min(args.train_samples, len(x_train))
    print(
        f"No --model given: training the seed model first ({args.epochs} epoch"
        f"{'s' if args.epochs > 1 else ''}, Adam, batch 128, on the first {n:,} training "
        f"images, validating on {len(x_test):,} test images, seed {args.seed}).",
        flush=True,
    )
    clear_session()
    set_random_seed(args.seed)
    model = architectures.seed_model(INPUT_SHAPE, NUM_CLASSES)
    model.compile(
        loss="categorical_crossentropy", optimizer=optimizers.Adam(), metrics=["accuracy"]
    )
    model.fit(
        x_train[:n],
        y_train[:n],
        batch_size=128,
        epochs=args.epochs,
        verbose=2,
        validation_data=(x_test, y_test),
        seed=args.seed,
    )
    return model


def run(args) -> int:
    if args.model is not None and not Path(args.model).is_file():
        _fail(args, f"argument --model: no such file: {args.model}")
    history = None
    if args.history is not None:
        try:
            history = viz.history_dict(args.history)
        except ValueError as e:
            _fail(args, f"argument --history: {e}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        _fail(args, f"argument --out: {out} exists and is not a folder")
    parser = getattr(args, "_parser", None) or argparse.ArgumentParser(prog="minicnn figures")
    check_output_folder(parser, "--out", out)  # before any training, not after

    model = None
    if args.model is not None:  # before the data: a bad file fails before any other work
        try:
            model = _load_model(args.model)
        except ValueError as e:
            print(f"minicnn figures: error: {e}", file=sys.stderr)
            return 1
    try:
        ds = _load_data(args.data)
    except (FileNotFoundError, ValueError) as e:
        print(f"minicnn figures: error: {e}", file=sys.stderr)
        return 1
    print(f"Data: {ds.describe()}", flush=True)
    x_train, y_train = _prepare(ds.x_train, ds.y_train)
    x_test, y_test = _prepare(ds.x_test, ds.y_test)

    if model is not None:
        print(f"Model: {args.model} ({model.count_params():,} parameters)")
    else:
        model = _quick_train(args, x_train, y_train, x_test, y_test)
        history = history if history is not None else model.history
    if model.loss is None or not model.metrics:  # only evaluate() needs it; weights untouched
        model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=128, verbose=0)
    print(f"Test loss: {loss:.4f}  Test accuracy: {accuracy:.4f} ({len(x_test):,} test images)")

    paths = viz.write_all(model, ds.x_train, x_test, y_test, out, history=history, seed=args.seed)
    print(f"Wrote {len(paths)} figures to {out}/:")
    for path in paths.values():
        print(f"  {path}")
    if "wrong_digit" not in paths:
        print("  (no wrong digit: the model classified every test image correctly)")
    if "training_curves" not in paths:
        print(
            "  (no training curves: pass --history RUN.json, written by "
            "`minicnn train --json RUN.json`)"
        )
    return 0
