"""Keras 2's ``keras.utils.np_utils`` (``np_utils.to_categorical(y, 10)``), for old notebooks.

The functions are ``minicnn.utils``'s own (Keras 2.1+ gave to_categorical a float32 default;
Keras 2.0's returned float64).
"""

from minicnn.utils.arrays import normalize, to_categorical

__all__ = ["normalize", "to_categorical"]
