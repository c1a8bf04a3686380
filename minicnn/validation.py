"""Argument checks for the public boundary, with Keras's wording.

Every public entry point (layer and optimizer constructors, the model's methods, callbacks,
loading, the datasets, the CLI) checks all of its arguments with these functions *before* it
changes anything, so a rejected call leaves the model as it was. The messages follow Keras's

    Invalid value for argument rate. Expected a float in [0, 1). Received: rate=1.5

Accepted forms are Keras's and NumPy's: Python and NumPy integer scalars for ints, Python and
NumPy real scalars for floats (``np.int64(8)``, ``np.float32(0.5)``, a 0-d array). ``bool`` is
not accepted as a number: ``Dense(True)`` is almost certainly a mistake.

A value of the wrong type raises ``ArgumentTypeError``, which is both a TypeError (Python's
convention) and a ValueError (what Keras raises for most bad arguments), so either ``except``
catches it. A value of the right type but out of range raises ValueError.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a TypeError and, as Keras raises, a ValueError)."""


def received(arg: str, value) -> str:
    """'Received: arg=value' with a short repr (arrays by shape and dtype, not by value)."""
    if isinstance(value, np.ndarray) and value.ndim > 0:
        text = f"array of shape {value.shape} and dtype {value.dtype}"
    else:
        text = repr(value)
        if len(text) > 80:
            text = text[:77] + "..."
    return f"Received: {arg}={text}"


def invalid(arg: str, expected: str, value, cls=ValueError) -> Exception:
    """The exception for argument ``arg``: 'Invalid value for argument arg. Expected ...'."""
    return cls(f"Invalid value for argument {arg}. Expected {expected}. {received(arg, value)}")


def _scalar(value):
    """A 0-d array becomes its scalar; anything else is returned as it is."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value[()]
    return value


def is_int(value) -> bool:
    """True for Python and NumPy integers (and 0-d integer arrays), not for bool."""
    value = _scalar(value)
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value) -> bool:
    """True for Python and NumPy ints and floats (and 0-d arrays of them), not for bool."""
    value = _scalar(value)
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_int(value, arg: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """value as a Python int, in [minimum, maximum] where given."""
    if minimum is not None and maximum is not None:
        expected = f"an int in [{minimum}, {maximum}]"
    elif minimum == 1:
        expected = "a positive int"
    elif minimum == 0:
        expected = "a non-negative int"
    elif minimum is not None:
        expected = f"an int >= {minimum}"
    else:
        expected = "an int"
    if not is_int(value):
        raise invalid(arg, expected, value, ArgumentTypeError)
    out = int(_scalar(value))
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        raise invalid(arg, expected, value)
    return out


def check_float(
    value,
    arg: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    expected: str | None = None,
) -> float:
    """value as a finite Python float in the interval given by low, high (open or closed)."""
    if expected is None:
        if low is None and high is None:
            expected = "a finite float"
        elif high is None:
            expected = f"a finite float {'>' if low_open else '>='} {low:g}"
        elif low is None:
            expected = f"a float {'<' if high_open else '<='} {high:g}"
        else:
            expected = (
                f"a float in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            )
    if not is_real(value):
        raise invalid(arg, expected, value, ArgumentTypeError)
    out = float(_scalar(value))
    if not math.isfinite(out):
        raise invalid(arg, expected, value)
    if low is not None and (out < low or (low_open and out == low)):
        raise invalid(arg, expected, value)
    if high is not None and (out > high or (high_open and out == high)):
        raise invalid(arg, expected, value)
    return out


def check_bool(value, arg: str) -> bool:
    """A Python or NumPy bool (ints 0 and 1 too, as Python treats them)."""
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or (is_int(value) and value in (0, 1)):
        return bool(value)
    raise invalid(arg, "a bool", value, ArgumentTypeError)


def check_choice(value, arg: str, choices) -> str:
    """One of the strings in choices."""
    if not isinstance(value, str):
        raise invalid(arg, f"one of {list(choices)}", value, ArgumentTypeError)
    if value not in choices:
        raise invalid(arg, f"one of {list(choices)}", value)
    return value


def check_pair(value, arg: str) -> tuple[int, int]:
    """A positive int, or a sequence of 2 positive ints, as Keras's kernel_size and strides."""
    expected = "a positive int or a tuple of 2 positive ints"
    if is_int(value):
        pair = (value, value)
    else:
        try:
            pair = tuple(value)
        except TypeError:
            raise invalid(arg, expected, value, ArgumentTypeError) from None
        if isinstance(value, (str, bytes)) or len(pair) != 2:
            raise invalid(arg, expected, value, ArgumentTypeError)
    if not all(is_int(v) for v in pair):
        raise invalid(arg, expected, value, ArgumentTypeError)
    if not all(int(_scalar(v)) > 0 for v in pair):
        raise invalid(arg, expected, value)
    return int(_scalar(pair[0])), int(_scalar(pair[1]))


def check_name(value, arg: str = "name") -> str | None:
    """None or a non-empty string without '/' (names become paths in saved files)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(arg, "a string or None", value, ArgumentTypeError)
    if not value or "/" in value:
        raise invalid(arg, "a non-empty string without '/'", value)
    return value


def check_seed(value, arg: str = "seed") -> int | None:
    """None or an int in [0, 2**63 - 1] (NumPy's generators take any non-negative int)."""
    if value is None:
        return None
    return check_int(value, arg, minimum=0, maximum=2**63 - 1)
