"""The Keras reference suite: proof, layer by layer, that minicnn computes what Keras computes,
on each of Keras's backends (TensorFlow, JAX, PyTorch).

This package is the only part of the project that imports Keras (via ``_keras``, on the
backend ``KERAS_BACKEND`` names, default TensorFlow). Modules:

    twin.py         to_keras(model) / from_keras(keras_model): the identical Keras model, weights
                    copied both ways with no transposes; dropout layers that take a given mask
    autodiff.py     gradients and training steps on the backend: the only backend-specific code
    tolerances.py   one named tolerance per float32 regime, each with its reason, and the
                    documented differences between Keras's backends
    constraints.txt the Keras / TensorFlow / JAX / PyTorch versions the tolerances were set on
    report.py       the rows (section, tensor, shape, max abs, max rel, tolerance, ok), the table
    sections/       forward, gradients, optimizer, trajectory, statistics, summary, backend facts
    mutants.py      deliberately broken twins, to show the comparison can fail
    suite.py        runs the sections for a model;  cli.py: ``minicnn parity``
    backends.py     ``--keras-backend all``: a process per backend, one merged table

Importing ``reference`` itself imports no Keras.
"""
