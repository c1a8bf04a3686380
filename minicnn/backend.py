"""``keras.backend``, the part of it that means something in minicnn.

    from minicnn import backend as K         # the seed: from keras import backend as K
    K.image_data_format()                    # 'channels_last', always

(Not to be confused with ``minicnn.set_backend``, which picks the *kernels*: naive loops, NumPy
or Numba. Keras's "backend" is the tensor library under it; minicnn's is NumPy, hence
``backend()`` = 'numpy'.)

* image_data_format() is 'channels_last': minicnn's layers are channels-last only, so
  set_image_data_format('channels_first') is refused rather than ignored.
* floatx() / set_floatx(): the dtype new layers are built in ('float32', or 'float64').
* epsilon() / set_epsilon(): the fuzz factor Keras clips probabilities with before a log
  (crossentropy on probabilities: [eps, 1 - eps]); 1e-7 by default, as Keras.
* clear_session(): layer and model names start again from 'conv2d', 'dense', 'sequential'.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from minicnn.config import floatx, set_floatx
from minicnn.naming import clear_session as _clear_names
from minicnn.validation import ArgumentTypeError, check_float, invalid

__all__ = ["backend", "clear_session", "epsilon", "floatx", "get_uid", "image_data_format",
           "is_float_dtype", "is_int_dtype", "set_epsilon", "set_floatx",
           "set_image_data_format", "standardize_dtype"]

_EPSILON = 1e-7
_UIDS: defaultdict[str, int] = defaultdict(int)


def backend() -> str:
    """The array library minicnn computes with: 'numpy' (Keras answers 'tensorflow', 'jax',
    'torch' or 'numpy')."""
    return "numpy"


def image_data_format() -> str:
    """'channels_last': images are (N, H, W, C), conv kernels (KH, KW, C, F)."""
    return "channels_last"


def set_image_data_format(data_format) -> None:
    """Only 'channels_last' is accepted (it is already in force)."""
    value = str(data_format).lower() if isinstance(data_format, str) else data_format
    if value not in ("channels_first", "channels_last"):
        raise ValueError(f"The `data_format` argument must be one of "
                         f"{{'channels_first', 'channels_last'}}. "
                         f"Received: data_format={data_format!r}")
    if value == "channels_first":
        raise invalid("data_format", "'channels_last' (minicnn's layers are channels-last "
                      "only)", data_format)


def epsilon() -> float:
    """The fuzz factor of numeric expressions (the crossentropy clip), 1e-7 by default."""
    return _EPSILON


def set_epsilon(value) -> None:
    """Set the fuzz factor; a finite float in (0, 0.5) (the clip [eps, 1 - eps] must be an
    interval)."""
    global _EPSILON
    _EPSILON = check_float(value, "value", low=0, high=0.5, low_open=True, high_open=True)


def clear_session(free_memory=True) -> None:
    """Forget the names given so far (and get_uid's counters), as keras.backend.clear_session:
    the next Conv2D is 'conv2d' again. Models and layers already made keep working."""
    _clear_names()
    _UIDS.clear()


def get_uid(prefix="") -> int:
    """1, 2, 3, ... per prefix, as keras.backend.get_uid."""
    _UIDS[prefix] += 1
    return _UIDS[prefix]


def standardize_dtype(dtype=None) -> str:
    """A dtype's name ('float32'); None is floatx()."""
    if dtype is None:
        return floatx()
    try:
        return np.dtype(getattr(dtype, "name", dtype)).name
    except TypeError:
        raise invalid("dtype", "a NumPy dtype or its name", dtype, ArgumentTypeError) from None


def is_float_dtype(dtype) -> bool:
    return np.issubdtype(np.dtype(standardize_dtype(dtype)), np.floating)


def is_int_dtype(dtype) -> bool:
    return np.issubdtype(np.dtype(standardize_dtype(dtype)), np.integer)
