"""The Keras reference suite: proof, layer by layer, that minicnn computes what Keras computes.

This package is the only part of the project that imports TensorFlow/Keras (via ``_keras``,
which pins ``KERAS_BACKEND=tensorflow``). Modules:

    twin.py         to_keras(model) / from_keras(keras_model): the identical Keras model, weights
                    copied both ways with no transposes; dropout layers that take a given mask
    tolerances.py   one named tolerance per float32 regime, each with its reason
    report.py       the rows (section, tensor, shape, max abs, max rel, tolerance, ok), the table
    sections/       forward, gradients, optimizer, trajectory, statistics, summary
    mutants.py      deliberately broken twins, to show the comparison can fail
    suite.py        runs the sections for a model;  cli.py: ``minicnn parity``

Importing ``reference`` itself imports neither TensorFlow nor Keras.
"""
