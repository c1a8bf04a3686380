"""Optimizers, computed exactly as Keras 3 computes them (keras/src/optimizers/{adam,sgd}.py).

An optimizer updates a list of parameter arrays in place from a parallel list of gradients.
Its slot arrays (m, v, momentum) are created on the first step, one per parameter, in order.
Scalars are cast to the parameter dtype before use, as Keras casts them to the variable's.

Two ways in, one rule:

    optimizer.apply_gradients(zip(grads, model.trainable_variables))   # Keras's, Variables
    optimizer.apply(grads, model.trainable_variables)                  # Keras 3, grads first
    optimizer.update(params, grads)                                    # minicnn's, raw arrays

The Keras forms remember the variables the optimizer was first built with and find each
variable's slots by it (a later call may pass a subset, in any order), as Keras does;
``update`` (what fit uses) pairs slots with arrays by position.

Each class's docstring gives its rule; kernels/naive.py computes it on whole arrays (adam_step,
sgd_step, sgd_momentum_step). On the 'numba' backend the same rules run as one compiled pass per
parameter (kernels/numba_optimizers.py), bit-identical to those (tested); kernels/dispatch.py
says which runs.
"""

from __future__ import annotations

import numpy as np

from minicnn.kernels import naive
from minicnn.kernels.dispatch import ops
from minicnn.validation import ArgumentTypeError, check_bool, check_float, check_int, invalid
from minicnn.variables import Variable


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


# Keras's optimizer arguments for features minicnn does not compute: accepted at the value that
# switches them off, refused by name otherwise (never silently ignored).
_KERAS_OFF = {"weight_decay": None, "clipnorm": None, "clipvalue": None, "global_clipnorm": None,
              "use_ema": False, "ema_overwrite_frequency": None, "loss_scale_factor": None,
              "gradient_accumulation_steps": None}
_SLOT_WORDS = {"momentums": "momentum", "velocities": "velocity"}  # Keras's variable names


class Optimizer:
    """Base class: the step counter, slot bookkeeping and state for saving.

    A step (``update``, ``apply``, ``apply_gradients``) runs in two phases: every parameter's
    new value (and its slots') is computed and checked finite first, and only if all are is
    anything written.
    """

    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate, name=None, **kwargs):
        ema_momentum = kwargs.pop("ema_momentum", 0.99)
        for arg, off in _KERAS_OFF.items():
            value = kwargs.pop(arg, off)
            if value is not off and value != off:
                raise invalid(arg, f"{off} (not implemented in minicnn)", value)
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        check_float(ema_momentum, "ema_momentum", low=0, high=1)  # Keras's range; unused
        if name is not None and not isinstance(name, str):
            raise invalid("name", "a string or None", name, ArgumentTypeError)
        self.name = name or type(self).__name__.lower()
        self.learning_rate = learning_rate
        self.iterations = 0
        self.slots: dict[str, list[np.ndarray]] = {}
        self._built_vars: list[Variable] | None = None  # what apply() was built for

    @property
    def learning_rate(self) -> float:
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        # settable after compile, as Keras's; checked like the constructor argument
        if isinstance(value, Variable):
            value = value.value
        if not isinstance(value, (int, float, np.integer, np.floating, np.ndarray)) or \
                isinstance(value, (bool, np.bool_)):
            # Keras's message; minicnn has no schedules or callables
            raise ArgumentTypeError(
                f"Argument `learning_rate` should be float (minicnn has no "
                f"LearningRateSchedule or callable learning rates). Received instead: "
                f"learning_rate={value!r}")
        self._learning_rate = check_float(value, "learning_rate", low=0, low_open=True)

    def build(self, variables) -> None:
        """Create the slots (zeros) for variables: Variables (as Keras, remembered for apply)
        or raw arrays (paired by position, as update pairs them)."""
        variables = list(variables)
        arrays = [_array_of(v, f"variables[{i}]") for i, v in enumerate(variables)]
        self.slots = self._zero_slots(arrays)
        self._built_vars = None
        if variables and all(isinstance(v, Variable) for v in variables):
            self._built_vars = variables

    def __getstate__(self):
        # a copy (deepcopy, pickle) forgets which Variables it was built for: they belong to
        # the original model; the next apply() pairs the copy's slots with its variables again
        state = self.__dict__.copy()
        state["_built_vars"] = None
        return state

    def _zero_slots(self, params) -> dict[str, list[np.ndarray]]:
        return {name: [np.zeros_like(p) for p in params] for name in self.slot_names}

    # --- Keras's API: gradients for Variables ------------------------------------------------
    def apply_gradients(self, grads_and_vars):
        """One step from (gradient, variable) pairs, as Keras: returns the new iteration count.

        ``optimizer.apply_gradients(zip(grads, model.trainable_variables))``.
        """
        try:
            pairs = list(grads_and_vars)
        except TypeError:
            raise invalid("grads_and_vars", "an iterable of (gradient, variable) pairs",
                          grads_and_vars, ArgumentTypeError) from None
        if not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
            raise invalid("grads_and_vars", "an iterable of (gradient, variable) pairs",
                          grads_and_vars, ArgumentTypeError)
        grads = [g for g, _ in pairs]
        variables = [v for _, v in pairs]
        self.apply(grads, variables)
        return self.iterations

    def apply(self, grads, trainable_variables=None) -> None:
        """One step, Keras 3's argument order: gradients first, then the Variables (model.
        trainable_variables) they belong to; on the first call the optimizer is built for
        those variables, later calls may pass them or a subset, or None (= all, in order).

        Raises ValueError for a variable it was not built with (Keras's message) and for
        raw arrays (those go to ``update(params, grads)``); NonFiniteUpdateError (a
        FloatingPointError) and no change at all when the step would make anything NaN or inf.
        """
        try:
            grads = list(grads)
        except TypeError:
            raise invalid("grads", "a list of gradient arrays", grads, ArgumentTypeError) \
                from None
        if trainable_variables is None:
            if self._built_vars is None:
                raise ValueError("When passing `grads` without `variables`, the optimizer "
                                 "must already be built on a list of variables. Call "
                                 "`optimizer.build(trainable_variables)` first. ")
            if len(grads) != len(self._built_vars):
                raise ValueError(f"When passing `grads` as a list of gradient tensors, the "
                                 f"gradients must match `optimizer.variables` one-to-one. "
                                 f"Received a list of {len(grads)} gradients, but the "
                                 f"optimizer is tracking {len(self._built_vars)} trainable "
                                 f"variables.")
            indices = list(range(len(grads)))
            params = [v.value for v in self._built_vars]
        else:
            variables = list(trainable_variables)
            if not all(isinstance(v, Variable) for v in variables):
                raise ArgumentTypeError(
                    "Invalid value for argument trainable_variables. Expected Variables "
                    "(model.trainable_variables, layer.kernel, ...). Received: "
                    f"{[type(v).__name__ for v in variables][:4]}. For lists of raw arrays, "
                    "use optimizer.update(params, grads) (parameters first).")
            if len(grads) != len(variables):
                raise ValueError(f"Expected one gradient per variable: received {len(grads)} "
                                 f"gradients for {len(variables)} variables.")
            if not grads:
                return  # Keras: an empty step is a no-op
            if self._built_vars is None:
                self._adopt(variables)
            indices = self._indices(variables)
            params = [v.value for v in variables]
        grads = [_gradient(g, p, i) for i, (g, p) in enumerate(zip(grads, params))]
        self.update(params, grads, indices=indices,
                    all_params=[v.value for v in self._built_vars])

    def _adopt(self, variables) -> None:
        """Remember variables as the ones this optimizer is built for: at the first apply, or
        when the slots came from fit() or a saved file (paired by position, shapes checked)."""
        held = self.slots.get(self.slot_names[0], []) if self.slot_names else []
        if held and (len(held) != len(variables)
                     or any(a.shape != v.shape for a, v in zip(held, variables))):
            raise ValueError(f"This optimizer already holds state for {len(held)} variables "
                             f"that do not match the {len(variables)} given. When working "
                             f"with a new set of variables, you should recreate a new "
                             f"optimizer instance.")
        self._built_vars = list(variables)

    def _indices(self, variables) -> list[int]:
        where = {v._key: i for i, v in enumerate(self._built_vars)}
        out = []
        for v in variables:
            if v._key not in where:
                raise ValueError(f"Unknown variable: {v!r}. This optimizer can only be called "
                                 f"for the variables it was originally built with. When "
                                 f"working with a new set of variables, you should recreate "
                                 f"a new optimizer instance.")
            out.append(where[v._key])
        if len(set(out)) != len(out):
            raise ValueError("The same variable appears twice in one step.")
        return out

    @property
    def variables(self) -> list[Variable]:
        """Keras 3's optimizer.variables: the iteration count, the learning rate, then each
        parameter's slots (Adam: its momentum and velocity, parameter by parameter)."""
        out = [Variable(lambda: np.array(self.iterations, np.int64), "iteration",
                        f"{self.name}/iteration", trainable=False, setter=self._set_iterations),
               Variable(lambda: np.array(self.learning_rate, np.float32), "learning_rate",
                        f"{self.name}/learning_rate", trainable=False,
                        setter=self._set_learning_rate)]
        n = len(next(iter(self.slots.values()), []))
        names = ([v.name for v in self._built_vars] if self._built_vars is not None
                 and len(self._built_vars) == n else [f"variable_{i}" for i in range(n)])
        for i in range(n):
            for slot in self.slot_names:
                word = f"{names[i]}_{_SLOT_WORDS.get(slot, slot)}"
                out.append(Variable(lambda slot=slot, i=i: self.slots[slot][i], word,
                                    f"{self.name}/{word}", trainable=False))
        return out

    def _set_iterations(self, value):
        self.iterations = check_int(value[()] if np.ndim(value) == 0 else value, "iterations",
                                    minimum=0)

    def _set_learning_rate(self, value):
        self.learning_rate = value[()] if np.ndim(value) == 0 else value

    def slot_arrays(self) -> list[np.ndarray]:
        """Slot arrays (all m, then all v), for counting and saving."""
        return [a for name in self.slot_names for a in self.slots.get(name, [])]

    # --- the step on raw arrays --------------------------------------------------------------
    def update(self, params, grads, indices=None, all_params=None) -> None:
        """One step: update every params[i] in place from grads[i], or raise and change nothing.

        ``indices`` (from apply) says which of the variables the optimizer is built for (the
        arrays ``all_params``) each parameter is; by default parameter i is variable i.
        Raises NonFiniteUpdateError (a FloatingPointError) when the step would make a
        parameter or a slot NaN or inf, ValueError when the slots do not fit the parameters.
        """
        params, grads = list(params), list(grads)
        _check_params_and_grads(params, grads)
        if indices is None:
            indices = range(len(params))
        if self.slots or not self.slot_names:
            slots = self.slots
        else:
            slots = self._zero_slots(params if all_params is None else all_params)
        for name in self.slot_names:
            if len(slots[name]) <= max(indices, default=-1) or any(
                    slots[name][j].shape != p.shape for j, p in zip(indices, params)):
                raise ValueError(f"The optimizer's {name} do not match the parameters it is "
                                 f"given (another model's, or a different list): create a new "
                                 f"optimizer for these parameters.")
        per_param = [[slots[name][j] for name in self.slot_names] for j in indices]
        compiled = _compiled_pair(self)
        flats = [_flat(w, g, *s) for w, g, s in zip(params, grads, per_param)]
        if compiled is not None and all(f is not None for f in flats):
            is_finite, update = compiled
            args, by_dtype = [], {}  # the step's scalars, once per dtype (usually one)
            for w in params:
                if w.dtype not in by_dtype:
                    by_dtype[w.dtype] = self._kernel_args(w.dtype.type)
                args.append(by_dtype[w.dtype])
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
        """Keras 3's keys (those of the features minicnn leaves out at their off values), so
        Keras's optimizer configs read back here and minicnn's read in Keras."""
        return {"name": self.name, "learning_rate": self.learning_rate, **_KERAS_OFF,
                "ema_momentum": 0.99}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        if not isinstance(config, dict):
            raise invalid("config", "a dict from get_config()", config, ArgumentTypeError)
        return cls(**config)


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) in Keras's "epsilon hat" form.

    With t = iterations + 1:
        alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
        m += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2)
        w -= alpha * m / (sqrt(v) + epsilon)
    The textbook form lr * m_hat / (sqrt(v_hat) + epsilon) differs when sqrt(v) ~ epsilon.
    """

    slot_names = ("momentums", "velocities")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, name=None, **kwargs):
        self.beta_1 = check_float(beta_1, "beta_1", low=0, high=1, high_open=True)
        self.beta_2 = check_float(beta_2, "beta_2", low=0, high=1, high_open=True)
        self.epsilon = check_float(epsilon, "epsilon", low=0, low_open=True)
        if check_bool(amsgrad, "amsgrad"):
            raise invalid("amsgrad", "False (AMSGrad is not implemented in minicnn)", amsgrad)
        super().__init__(learning_rate, name=name, **kwargs)

    def _kernel_args(self, dt):
        t = dt(self.iterations + 1)
        # Keras evaluates alpha in the variable's dtype; doing the same keeps float32 bit-close
        alpha = dt(self.learning_rate) * np.sqrt(dt(1) - dt(self.beta_2) ** t) / (
            dt(1) - dt(self.beta_1) ** t)
        return alpha, dt(1 - self.beta_1), dt(1 - self.beta_2), dt(self.epsilon)

    def step(self, w, g, m, v):
        return naive.adam_step(w, g, m, v, *self._kernel_args(w.dtype.type))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": False}


class SGD(Optimizer):
    """Stochastic gradient descent, with Keras's momentum and Nesterov forms.

        momentum = 0:  w -= lr * g
        else:          m = momentum * m - lr * g;  w += m                    (classical)
                       w += momentum * m - lr * g   (with the new m)         (nesterov=True)
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name=None, **kwargs):
        if isinstance(momentum, (int, float)) and not isinstance(momentum, bool) and \
                not 0 <= momentum <= 1:
            raise ValueError("`momentum` must be a float between [0, 1].")  # Keras's words
        self.momentum = check_float(momentum, "momentum", low=0, high=1)
        self.nesterov = check_bool(nesterov, "nesterov")
        self.slot_names = ("momentums",) if self.momentum != 0 else ()
        super().__init__(learning_rate, name=name, **kwargs)

    def _kernel_args(self, dt):
        return dt(self.learning_rate), dt(self.momentum), self.nesterov

    def step(self, w, g, *m):
        lr, mu, nesterov = self._kernel_args(w.dtype.type)
        if self.momentum == 0:
            return naive.sgd_step(w, g, lr)
        return naive.sgd_momentum_step(w, g, m[0], lr, mu, nesterov)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


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
_CLASSES = {"Adam": Adam, "SGD": SGD}


def get(identifier) -> Optimizer:
    """An optimizer from an instance, its Keras name ('adam', 'sgd') with default arguments,
    its class, or a serialize() dict."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, type) and identifier in _CLASSES.values():
        return identifier()
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return deserialize(identifier)
    raise ValueError(f"Invalid value for argument optimizer. Expected an Optimizer or one of "
                     f"{sorted(_BY_NAME)}. Received: optimizer={identifier!r}")


def serialize(optimizer) -> dict:
    """Keras's {'module', 'class_name', 'config', 'registered_name'} dict."""
    return {"module": "keras.optimizers", "class_name": type(optimizer).__name__,
            "config": optimizer.get_config(), "registered_name": None}


def deserialize(config) -> Optimizer:
    if not isinstance(config, dict) or config.get("class_name") not in _CLASSES:
        raise ValueError(f"Could not interpret optimizer identifier: {config}")
    return _CLASSES[config["class_name"]].from_config(dict(config.get("config") or {}))


def from_config(config: dict) -> Optimizer:
    """An optimizer from a saved config: {'class_name': ..., **get_config()} as minicnn saves
    it now, or the older {'name': 'Adam', ...}; every value is checked by the constructor."""
    if not isinstance(config, dict):
        raise TypeError(f"Expected an optimizer config dict. Received: {config!r}")
    config = dict(config)
    class_name = config.pop("class_name", None)
    if class_name is None:  # files from before the Keras-style configs: the name is the class
        class_name = config.pop("name", None)
        class_name = {"adam": "Adam", "sgd": "SGD"}.get(str(class_name).lower(), class_name)
    if class_name not in _CLASSES:
        raise ValueError(f"Unknown optimizer {class_name!r}: expected one of "
                         f"{sorted(_CLASSES)}.")
    return _CLASSES[class_name](**config)


def _array_of(v, arg):
    if isinstance(v, Variable):
        return v.value
    if isinstance(v, np.ndarray):
        return v
    raise invalid(arg, "a Variable or a NumPy array", v, ArgumentTypeError)


def _gradient(g, p, i):
    """A gradient as an array of its parameter's dtype (Keras casts it to the variable's)."""
    if isinstance(g, Variable):
        g = g.value
    try:
        g = np.asarray(g)
    except (TypeError, ValueError):
        raise invalid(f"grads[{i}]", "an array", g, ArgumentTypeError) from None
    if g.dtype.kind not in "biuf":
        raise invalid(f"grads[{i}]", "a real array", g, ArgumentTypeError)
    if g.shape != p.shape:
        raise ValueError(f"The gradient of parameter {i} has shape {g.shape}, the parameter "
                         f"{p.shape}: they must match.")
    return np.ascontiguousarray(g, dtype=p.dtype)
