"""Optimizers, computed exactly as Keras 3 computes them (keras/src/optimizers/{adam,sgd}.py).

An optimizer updates a list of parameter arrays in place from a parallel list of gradients.
Its slot arrays (m, v, momentum) are created on the first step, one per parameter, in order.
Scalars are cast to the parameter dtype before use, as Keras casts them to the variable's.

Each class's docstring gives its rule; kernels/naive.py computes it on whole arrays (adam_step,
sgd_step, sgd_momentum_step). On the 'numba' backend the same rules run as one compiled pass per
parameter (kernels/numba_optimizers.py), bit-identical to those (tested); kernels/dispatch.py
says which runs.
"""

from __future__ import annotations

import numpy as np

from minicnn.kernels import naive
from minicnn.kernels.dispatch import ops
from minicnn.validation import check_bool, check_float, check_int


def _flat(*arrays):
    """Flat views of arrays that may be updated in place (None if one cannot be viewed flat)."""
    if not all(a.flags.c_contiguous and a.dtype == arrays[0].dtype for a in arrays):
        return None
    return [a.reshape(-1) for a in arrays]


class NonFiniteUpdateError(FloatingPointError):
    """A step would have made parameter ``index`` (or one of its slots) NaN or inf.

    Raised before anything is written: the parameters, slots and step counter are as they were.
    """

    def __init__(self, index: int, reason: str):
        super().__init__(f"the step would make parameter {index} non-finite ({reason})")
        self.index, self.reason = index, reason


class Optimizer:
    """Base class: the step counter, slot bookkeeping and state for saving.

    ``apply(params, grads)`` is one step in two phases: every parameter's new value (and its
    slots') is computed and checked finite first, and only if all are is anything written.
    """

    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate):
        self.learning_rate = learning_rate
        self.iterations = 0
        self.slots: dict[str, list[np.ndarray]] = {}

    @property
    def learning_rate(self) -> float:
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        # settable after compile, as Keras's; checked like the constructor argument
        self._learning_rate = check_float(value, "learning_rate", low=0, low_open=True)

    def build(self, params: list[np.ndarray]) -> None:
        self.slots = self._zero_slots(params)

    def _zero_slots(self, params) -> dict[str, list[np.ndarray]]:
        return {name: [np.zeros_like(p) for p in params] for name in self.slot_names}

    def apply(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        """One step: update every params[i] in place from grads[i], or raise and change nothing.

        Raises NonFiniteUpdateError (a FloatingPointError) when the step would make a
        parameter or a slot NaN or inf.
        """
        params, grads = list(params), list(grads)
        _check_params_and_grads(params, grads)
        slots = self.slots if (self.slots or not self.slot_names) else self._zero_slots(params)
        per_param = [[slots[name][i] for name in self.slot_names] for i in range(len(params))]
        compiled = _compiled_pair(self)
        flats = [_flat(w, g, *s) for w, g, s in zip(params, grads, per_param)]
        if compiled is not None and all(f is not None for f in flats):
            is_finite, update = compiled
            args = [self._kernel_args(w.dtype.type) for w in params]
            for i, (flat, a) in enumerate(zip(flats, args)):
                if not is_finite(*flat, *a):
                    raise self._non_finite(i, grads[i])
            for flat, a in zip(flats, args):
                update(*flat, *a)
        else:
            with np.errstate(over="ignore", invalid="ignore"):  # checked just below
                new = [self.step(w, g, *s) for w, g, s in zip(params, grads, per_param)]
            for i, arrays in enumerate(new):
                if not all(_all_finite(a) for a in arrays):
                    raise self._non_finite(i, grads[i])
            for w, s, arrays in zip(params, per_param, new):
                for target, value in zip((w, *s), arrays):
                    np.copyto(target, value)
        self.slots = slots
        self.iterations += 1

    def step(self, w, g, *slots) -> tuple[np.ndarray, ...]:
        """The rule on whole arrays: (new w, *new slots) from w, g and the slots; pure."""
        raise NotImplementedError

    def _kernel_args(self, dt) -> tuple:
        """The scalars the compiled pair takes after the arrays, in the parameters' dtype."""
        raise NotImplementedError

    def _non_finite(self, i, g) -> NonFiniteUpdateError:
        bad = int(g.size - np.count_nonzero(np.isfinite(g)))
        why = (f"its gradient holds {bad} NaN or inf value(s)" if bad else
               "its gradient is finite but the update overflows")
        return NonFiniteUpdateError(i, why)

    def variables(self) -> list[np.ndarray]:
        """Slot arrays in Keras's order (all m, then all v) for counting and saving."""
        return [a for name in self.slot_names for a in self.slots.get(name, [])]

    def get_state(self) -> dict:
        return {"iterations": self.iterations,
                **{f"{name}_{i}": a for name in self.slot_names
                   for i, a in enumerate(self.slots.get(name, []))}}

    def set_state(self, state: dict, params: list[np.ndarray]) -> None:
        """Restore iterations and slots saved by get_state; everything is checked (shapes,
        finiteness, iterations >= 0) before anything is set."""
        iterations = check_int(state.get("iterations"), "iterations", minimum=0)
        slots = self._zero_slots(params)
        for name in self.slot_names:
            for i, p in enumerate(params):
                key = f"{name}_{i}"
                if key not in state:
                    if iterations == 0:
                        continue
                    raise ValueError(f"Optimizer state is missing slot {key!r}.")
                value = np.asarray(state[key])
                if value.shape != p.shape:
                    raise ValueError(f"Optimizer slot {key!r} has shape {value.shape}, "
                                     f"but the parameter has shape {p.shape}.")
                if not _all_finite(value):
                    raise ValueError(f"Optimizer slot {key!r} holds NaN or inf values.")
                slots[name][i][...] = value
        self.slots = slots if self.slot_names else {}
        self.iterations = iterations

    def get_config(self) -> dict:
        raise NotImplementedError


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) in Keras's "epsilon hat" form.

    With t = iterations + 1:
        alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
        m += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2)
        w -= alpha * m / (sqrt(v) + epsilon)
    The textbook form lr * m_hat / (sqrt(v_hat) + epsilon) differs when sqrt(v) ~ epsilon.
    """

    slot_names = ("momentums", "velocities")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        self.beta_1 = check_float(beta_1, "beta_1", low=0, high=1, high_open=True)
        self.beta_2 = check_float(beta_2, "beta_2", low=0, high=1, high_open=True)
        self.epsilon = check_float(epsilon, "epsilon", low=0, low_open=True)
        super().__init__(learning_rate)

    def _kernel_args(self, dt):
        t = dt(self.iterations + 1)
        # Keras evaluates alpha in the variable's dtype; doing the same keeps float32 bit-close
        alpha = dt(self.learning_rate) * np.sqrt(dt(1) - dt(self.beta_2) ** t) / (
            dt(1) - dt(self.beta_1) ** t)
        return alpha, dt(1 - self.beta_1), dt(1 - self.beta_2), dt(self.epsilon)

    def step(self, w, g, m, v):
        return naive.adam_step(w, g, m, v, *self._kernel_args(w.dtype.type))

    def get_config(self):
        return {"name": "Adam", "learning_rate": self.learning_rate, "beta_1": self.beta_1,
                "beta_2": self.beta_2, "epsilon": self.epsilon}


class SGD(Optimizer):
    """Stochastic gradient descent, with Keras's momentum and Nesterov forms.

        momentum = 0:  w -= lr * g
        else:          m = momentum * m - lr * g;  w += m                    (classical)
                       w += momentum * m - lr * g   (with the new m)         (nesterov=True)
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        self.momentum = check_float(momentum, "momentum", low=0, high=1)
        self.nesterov = check_bool(nesterov, "nesterov")
        self.slot_names = ("momentums",) if self.momentum != 0 else ()
        super().__init__(learning_rate)

    def _kernel_args(self, dt):
        return dt(self.learning_rate), dt(self.momentum), self.nesterov

    def step(self, w, g, *m):
        lr, mu, nesterov = self._kernel_args(w.dtype.type)
        if self.momentum == 0:
            return naive.sgd_step(w, g, lr)
        return naive.sgd_momentum_step(w, g, m[0], lr, mu, nesterov)

    def get_config(self):
        return {"name": "SGD", "learning_rate": self.learning_rate, "momentum": self.momentum,
                "nesterov": self.nesterov}


def _compiled_pair(opt):
    """(is_finite, update): the compiled step of opt's rule in the backend in force, or None
    (no compiled step there, or plain SGD, which is one NumPy expression)."""
    k = ops()
    if isinstance(opt, Adam):
        pair = k.adam_update_is_finite, k.adam_update
    elif isinstance(opt, SGD) and opt.momentum != 0:
        pair = k.sgd_momentum_update_is_finite, k.sgd_momentum_update
    else:
        return None
    return pair if pair[0] is not None else None


def _all_finite(a) -> bool:
    # min and max propagate NaN, so two reductions without a temporary answer it
    return a.size == 0 or bool(np.isfinite(a.min()) and np.isfinite(a.max()))


def _check_params_and_grads(params, grads) -> None:
    if len(params) != len(grads):
        raise ValueError(f"Expected one gradient per parameter: received {len(grads)} "
                         f"gradients for {len(params)} parameters.")
    for i, (w, g) in enumerate(zip(params, grads)):
        if not isinstance(w, np.ndarray) or not isinstance(g, np.ndarray):
            raise TypeError(f"Parameter {i} and its gradient must be NumPy arrays. Received: "
                            f"{type(w).__name__} and {type(g).__name__}.")
        if g.shape != w.shape or g.dtype != w.dtype:
            raise ValueError(f"The gradient of parameter {i} is {g.dtype} {g.shape}, the "
                             f"parameter {w.dtype} {w.shape}: they must match.")


_BY_NAME = {"adam": Adam, "sgd": SGD}


def get(identifier) -> Optimizer:
    """An optimizer from an instance or its Keras name ('adam', 'sgd') with default arguments."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(f"Invalid value for argument optimizer. Expected an Optimizer or one of "
                     f"{sorted(_BY_NAME)}. Received: optimizer={identifier!r}")


def from_config(config: dict) -> Optimizer:
    """An optimizer from get_config()'s dict; every value is checked by the constructor."""
    if not isinstance(config, dict):
        raise TypeError(f"Expected an optimizer config dict. Received: {config!r}")
    config = dict(config)
    name = config.pop("name", None)
    classes = {"Adam": Adam, "SGD": SGD}
    if name not in classes:
        raise ValueError(f"Unknown optimizer {name!r}: expected one of {sorted(classes)}.")
    return classes[name](**config)
