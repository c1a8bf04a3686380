"""minicnn: a convolutional-network library from scratch in NumPy + Numba, checked against Keras.

Keras's module layout, so that replacing the word ``keras`` by ``minicnn`` in the imports is
all a Keras program needs for what minicnn implements:

    from minicnn.models import Sequential
    from minicnn.layers import Conv2D, MaxPooling2D, Dropout, Flatten, Dense
    from minicnn import backend as K, optimizers, losses, utils
"""

from minicnn import (
    activations,
    architectures,
    backend,
    callbacks,
    datasets,
    initializers,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    regularizers,
    utils,
)
from minicnn._version import __version__  # noqa: F401 (the package's version)
from minicnn.config import floatx, get_backend, set_backend, set_floatx
from minicnn.layers import Input
from minicnn.layers.base import Layer, clear_session
from minicnn.model import Sequential, load_model
from minicnn.random import set_random_seed
from minicnn.variables import Variable

__all__ = ["Input", "Layer", "Sequential", "Variable", "activations", "architectures", "backend",
           "callbacks", "clear_session", "datasets", "floatx", "get_backend", "initializers",
           "layers", "load_model", "losses", "metrics", "models", "optimizers", "regularizers",
           "set_backend", "set_floatx", "set_random_seed", "utils"]
