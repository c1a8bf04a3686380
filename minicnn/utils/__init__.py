"""``keras.utils`` with Keras's names: to_categorical, normalize, set_random_seed.

``minicnn.utils.np_utils`` is Keras 2's spelling (``from keras.utils import np_utils``), kept
for old notebooks such as the seed tutorial.
"""

from __future__ import annotations

from minicnn.random import set_random_seed
from minicnn.utils import np_utils
from minicnn.utils.arrays import normalize, to_categorical

__all__ = ["normalize", "np_utils", "set_random_seed", "to_categorical"]
