"""Optimizers, computed exactly as Keras 3 computes them (keras/src/optimizers/{adam,sgd}.py).

An optimizer updates a list of parameter arrays in place from a parallel list of gradients.
Its slot arrays (m, v, momentum) are created on the first step, one per parameter, in order.
Scalars are cast to the parameter dtype before use, as Keras casts them to the variable's.

The array expressions below are the rules to read. On the 'numba' backend the same rules run as
one compiled pass per parameter (kernels/numba_optimizers.py), bit-identical to these.
"""

from __future__ import annotations

import numpy as np

from minicnn import config


def _compiled(name: str):
    """Kernel `name` of kernels/numba_optimizers.py when the 'numba' backend is in force."""
    if config.get_backend() != "numba":
        return None
    from minicnn.kernels import numba_available

    if not numba_available():
        return None
    from minicnn.kernels import numba_optimizers

    return getattr(numba_optimizers, name)


def _flat(*arrays):
    """Flat views of arrays that may be updated in place (None if one cannot be viewed flat)."""
    if not all(a.flags.c_contiguous and a.dtype == arrays[0].dtype for a in arrays):
        return None
    return [a.reshape(-1) for a in arrays]


class Optimizer:
    """Base class: the step counter, slot bookkeeping and state for saving."""

    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate):
        if not np.isscalar(learning_rate) or not learning_rate > 0:
            raise ValueError(f"Invalid value for argument learning_rate. Expected a positive "
                             f"float. Received: learning_rate={learning_rate!r}")
        self.learning_rate = float(learning_rate)
        self.iterations = 0
        self.slots: dict[str, list[np.ndarray]] = {}

    def build(self, params: list[np.ndarray]) -> None:
        self.slots = {name: [np.zeros_like(p) for p in params] for name in self.slot_names}

    def apply(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        """One step: update every params[i] in place from grads[i]."""
        if not self.slots and self.slot_names:
            self.build(params)
        for i, (w, g) in enumerate(zip(params, grads)):
            self.update_step(i, w, g)
        self.iterations += 1

    def update_step(self, i: int, w: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def variables(self) -> list[np.ndarray]:
        """Slot arrays in Keras's order (all m, then all v) for counting and saving."""
        return [a for name in self.slot_names for a in self.slots.get(name, [])]

    def get_state(self) -> dict:
        return {"iterations": self.iterations,
                **{f"{name}_{i}": a for name in self.slot_names
                   for i, a in enumerate(self.slots.get(name, []))}}

    def set_state(self, state: dict, params: list[np.ndarray]) -> None:
        """Restore iterations and slots saved by get_state (shapes checked against params)."""
        self.build(params)
        for name in self.slot_names:
            for i, p in enumerate(params):
                key = f"{name}_{i}"
                if key not in state:
                    if int(state["iterations"]) == 0:
                        continue
                    raise ValueError(f"Optimizer state is missing slot {key!r}.")
                if state[key].shape != p.shape:
                    raise ValueError(f"Optimizer slot {key!r} has shape {state[key].shape}, "
                                     f"but the parameter has shape {p.shape}.")
                self.slots[name][i][...] = state[key]
        self.iterations = int(state["iterations"])

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
        super().__init__(learning_rate)
        for arg, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0 <= value < 1:
                raise ValueError(f"Invalid value for argument {arg}. Expected a float in "
                                 f"[0, 1). Received: {arg}={value!r}")
        if not epsilon > 0:
            raise ValueError(f"Invalid value for argument epsilon. Expected a positive float. "
                             f"Received: epsilon={epsilon!r}")
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def update_step(self, i, w, g):
        dt = w.dtype.type
        t = dt(self.iterations + 1)
        # Keras evaluates alpha in the variable's dtype; doing the same keeps float32 bit-close
        alpha = dt(self.learning_rate) * np.sqrt(dt(1) - dt(self.beta_2) ** t) / (
            dt(1) - dt(self.beta_1) ** t)
        m, v = self.slots["momentums"][i], self.slots["velocities"][i]
        kernel, flat = _compiled("adam_update"), _flat(w, g, m, v)
        if kernel is not None and flat is not None:
            kernel(*flat, alpha, dt(1 - self.beta_1), dt(1 - self.beta_2), dt(self.epsilon))
            return
        m += (g - m) * dt(1 - self.beta_1)
        v += (g * g - v) * dt(1 - self.beta_2)
        w -= (m * alpha) / (np.sqrt(v) + dt(self.epsilon))

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
        super().__init__(learning_rate)
        if not 0 <= momentum <= 1:
            raise ValueError(f"Invalid value for argument momentum. Expected a float in "
                             f"[0, 1]. Received: momentum={momentum!r}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.slot_names = ("momentums",) if self.momentum != 0 else ()

    def update_step(self, i, w, g):
        dt = w.dtype.type
        lr = dt(self.learning_rate)
        if self.momentum == 0:
            w -= g * lr
            return
        mu = dt(self.momentum)
        m = self.slots["momentums"][i]
        kernel, flat = _compiled("sgd_momentum_update"), _flat(w, g, m)
        if kernel is not None and flat is not None:
            kernel(*flat, lr, mu, self.nesterov)
            return
        m[...] = m * mu - g * lr
        if self.nesterov:
            w += m * mu - g * lr
        else:
            w += m

    def get_config(self):
        return {"name": "SGD", "learning_rate": self.learning_rate, "momentum": self.momentum,
                "nesterov": self.nesterov}


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
    config = dict(config)
    cls = {"Adam": Adam, "SGD": SGD}[config.pop("name")]
    return cls(**config)
