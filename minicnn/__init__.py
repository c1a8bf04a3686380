"""minicnn: a convolutional-network library from scratch in NumPy + Numba, checked against Keras.

    from minicnn import Sequential
    from minicnn.layers import Conv2D, MaxPooling2D, Dropout, Flatten, Dense
"""

from minicnn import activations, datasets, initializers, layers, losses, optimizers, utils
from minicnn._version import __version__  # noqa: F401 (the package's version)
from minicnn.config import floatx, get_backend, set_backend, set_floatx
from minicnn.layers.base import clear_session
from minicnn.model import Sequential, load_model
from minicnn.random import set_random_seed

__all__ = ["Sequential", "activations", "clear_session", "datasets", "floatx", "get_backend",
           "initializers", "layers", "load_model", "losses", "optimizers", "set_backend",
           "set_floatx", "set_random_seed", "utils"]
