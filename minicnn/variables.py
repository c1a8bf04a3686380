"""Variable: a named handle on one array minicnn keeps (a layer weight, an optimizer slot).

Keras 3 code reads weights through variables: ``layer.kernel``, ``model.trainable_variables``,
``optimizer.variables``; it calls ``.numpy()``, ``.assign(value)``, reads ``.shape``, ``.path``,
and passes the variables to ``optimizer.apply_gradients(zip(grads, variables))``. minicnn's
arrays live in plain dicts and lists (``layer.params['kernel']``, ``optimizer.slots``), so a
Variable holds no data of its own: it looks the live array up on every access, and so stays
right when the layer is rebuilt or its weights are set.

    v = model.layers[0].kernel           # <Variable path=sequential/conv2d/kernel, ...>
    v.numpy()                            # a copy, (3, 3, 1, 32)
    v.assign(np.zeros(v.shape))          # checked (shape, finite), then written in place
    np.asarray(v), v * 2, v[0]           # NumPy sees the live array

Arithmetic on a Variable gives plain NumPy arrays (``NDArrayOperatorsMixin``), never a new
Variable; in-place operators are refused so every write goes through ``assign``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from minicnn.validation import ArgumentTypeError, invalid


class Variable(NDArrayOperatorsMixin):
    """A view on one array, found by ``getter()`` each time it is read.

    Args:
        getter: () -> the live np.ndarray.
        name: the weight's own name ('kernel', 'moving_mean', 'iteration').
        path: where it lives, Keras style ('sequential/conv2d/kernel').
        trainable: whether optimizers update it.
        setter: optional (array) -> None for values that are not arrays in place (the
            optimizer's iteration count); by default assign writes into the live array.
        key: what identifies the underlying weight (equal keys: the same weight), so a
            Variable made again for the same weight is recognised by the optimizer.
    """

    __array_priority__ = 20  # ndarray <op> Variable defers to us, so the result is an ndarray

    def __init__(self, getter, name, path, trainable=True, setter=None, key=None):
        self._getter, self._setter = getter, setter
        self.name, self.path, self.trainable = name, path, trainable
        self._key = key if key is not None else id(self)

    # --- reading -----------------------------------------------------------------------------
    @property
    def value(self) -> np.ndarray:
        """The live array (writes to it change the weight: prefer assign)."""
        return self._getter()

    def numpy(self) -> np.ndarray:
        """A copy of the value, as Keras's Variable.numpy()."""
        return np.array(self.value, copy=True)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    @property
    def dtype(self) -> str:
        """The dtype's name, as Keras ('float32')."""
        return self.value.dtype.name

    @property
    def ndim(self) -> int:
        return self.value.ndim

    def __len__(self):
        return len(self.value)

    def __array__(self, dtype=None, copy=None):
        a = self.value
        if dtype is not None and np.dtype(dtype) != a.dtype:
            return a.astype(dtype)
        return a.copy() if copy else a

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if any(isinstance(o, Variable) for o in kwargs.get("out", ())):
            raise TypeError(f"Variable {self.path!r} cannot be written by a NumPy operation: "
                            f"use assign(), assign_add() or assign_sub().")
        inputs = tuple(i.value if isinstance(i, Variable) else i for i in inputs)
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __getitem__(self, index):
        return self.value[index]

    def __float__(self):
        return float(self.value)

    def __int__(self):
        return int(self.value)

    def __bool__(self):
        return bool(self.value)

    # --- writing -----------------------------------------------------------------------------
    def assign(self, value):
        """Write value (same shape, finite) into the variable; checked before anything is
        written. Returns the variable."""
        current = self.value
        try:
            new = np.asarray(value)
        except (TypeError, ValueError) as e:
            raise invalid("value", f"an array of shape {current.shape}", value,
                          ArgumentTypeError) from e
        if new.dtype.kind not in "biuf":
            raise invalid("value", f"a real array of shape {current.shape}", value,
                          ArgumentTypeError)
        if new.shape != current.shape:
            raise ValueError(f"The shape of the target variable and the shape of the target "
                             f"value in `variable.assign(value)` must match. "
                             f"variable.shape={current.shape}, Received: "
                             f"value.shape={new.shape}. Target variable: {self!r}")
        if new.dtype.kind == "f" and not np.all(np.isfinite(new)):
            raise ValueError(f"Variable {self.path!r}: the assigned value holds NaN or inf.")
        if self._setter is not None:
            self._setter(new)
        else:
            current[...] = new
        return self

    def assign_add(self, value):
        return self.assign(self.value + np.asarray(value))

    def assign_sub(self, value):
        return self.assign(self.value - np.asarray(value))

    def __iadd__(self, other):
        raise TypeError("Use variable.assign_add(value): in-place operators are not supported.")

    __isub__ = __imul__ = __itruediv__ = __iadd__

    # --- identity ----------------------------------------------------------------------------
    def __eq__(self, other):
        # Keras's `variable == x` is element-wise; identity questions use `is` or the key
        return np.equal(self.value, other.value if isinstance(other, Variable) else other)

    def __ne__(self, other):
        return np.not_equal(self.value, other.value if isinstance(other, Variable) else other)

    __hash__ = object.__hash__

    def __repr__(self):
        return (f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}, "
                f"value={self.value}>")


def layer_variable(layer, key: str, prefix: str | None = None) -> Variable:
    """The Variable for ``layer.params[key]``; path '<prefix>/<layer>/<key>' as Keras."""
    path = f"{layer.name}/{key}" if prefix is None else f"{prefix}/{layer.name}/{key}"
    return Variable(lambda: layer.params[key], key, path,
                    trainable=key not in layer.non_trainable, key=(id(layer), key))
