"""Weight initialisers with Keras's names, arguments and defaults (keras/src/initializers/).

    Dense(64, kernel_initializer="he_normal")                 # a name, as Keras
    Dense(64, kernel_initializer=RandomNormal(stddev=0.01))   # an object, as Keras
    values = GlorotUniform(seed=1)((3, 3, 1, 32))             # standalone: (shape, dtype=None)

Fans, for a kernel of shape (..., fan_axis_in, fan_axis_out) (Keras's compute_fans): a dense
kernel (D, K) has fan_in = D, fan_out = K; a conv kernel (KH, KW, C, F) has fan_in = KH*KW*C,
fan_out = KH*KW*F; a vector (n,) has fan_in = fan_out = n.

VarianceScaling(scale, mode, distribution) is the family the named ones belong to, with
n = fan_in, fan_out or (fan_in + fan_out) / 2 by mode:

    uniform             U(-limit, limit),  limit = sqrt(3 * scale / n)
    truncated_normal    N(0, s^2) redrawn beyond 2 s, s = sqrt(scale / n) / 0.8796..., so
                        that the *truncated* distribution has variance scale / n
    untruncated_normal  N(0, scale / n)

    glorot_uniform = VarianceScaling(1, 'fan_avg', 'uniform')   limit sqrt(6 / (fan_in+fan_out))
    glorot_normal  = VarianceScaling(1, 'fan_avg', 'truncated_normal')
    he_uniform     = VarianceScaling(2, 'fan_in', 'uniform')       limit sqrt(6 / fan_in)
    he_normal      = VarianceScaling(2, 'fan_in', 'truncated_normal')
    lecun_uniform  = VarianceScaling(1, 'fan_in', 'uniform')       limit sqrt(3 / fan_in)
    lecun_normal   = VarianceScaling(1, 'fan_in', 'truncated_normal')

Seeds. Keras's random streams cannot be reproduced in NumPy, so the values differ from Keras's;
the distributions are the same (tests/test_initializers.py compares them with Keras's samples).
Called standalone, an initializer behaves as Keras 3's: with an int seed, or with none (a seed
is then drawn once, at the first call), every call returns the same values. Inside a layer an
unseeded initializer draws from the layer's generator (minicnn's seeded global stream: see
minicnn.random), so each layer gets its own values; a seeded one gives its seed's values.

A plain function works too: Keras's form ``f(shape, dtype=None)``, or minicnn's older
``f(shape, rng, dtype)`` (recognised by a parameter named ``rng``).
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from minicnn.validation import ArgumentTypeError, check_seed, invalid, is_real


def compute_fans(shape, input_axes=None, output_axes=None) -> tuple[int, int]:
    """(fan_in, fan_out) as keras.src.initializers.random_initializers.compute_fans."""
    shape = tuple(shape)
    if input_axes is not None and output_axes is not None:
        return math.prod(shape[a] for a in input_axes), math.prod(shape[a] for a in output_axes)
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _truncated_normal(shape, mean, stddev, rng, dtype):
    """N(mean, stddev^2) with every value beyond 2 stddev redrawn (TensorFlow's rule)."""
    out = rng.standard_normal(size=shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(size=int(bad.sum()))
        bad = np.abs(out) > 2.0
    return (out * stddev + mean).astype(dtype) if mean else (out * stddev).astype(dtype)


def _dtype(dtype):
    from minicnn import config

    return np.dtype(dtype or config.floatx())


class Initializer:
    """Base class: ``init(shape, dtype=None)`` -> array, as Keras; layers call ``sample``."""

    def __call__(self, shape, dtype=None):
        shape = _check_shape(shape)
        return self.sample(shape, self._standalone_rng(), _dtype(dtype))

    def sample(self, shape, rng, dtype) -> np.ndarray:
        """Values of shape in dtype, drawn from rng (ignored by the constant initializers)."""
        raise NotImplementedError

    def _standalone_rng(self):
        return None

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def clone(self):
        return type(self).from_config(self.get_config())

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = None


class RandomInitializer(Initializer):
    """An initializer that draws random values; ``seed`` None or a non-negative int."""

    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            # Keras's message, less its SeedGenerator (minicnn seeds with ints only)
            raise ArgumentTypeError(f"`seed` argument should be an integer or None. "
                                    f"Received: seed={seed!r}")
        self.seed = check_seed(seed)
        self._drawn_seed = None

    def _standalone_rng(self):
        # Keras 3: a standalone initializer returns the same values at every call, seeded or
        # not. The unseeded one draws its seed at the first call, not at construction, so that
        # building layers from names ('glorot_uniform') leaves minicnn's random stream as it was.
        if self.seed is not None:
            return np.random.default_rng(self.seed)
        if self._drawn_seed is None:
            from minicnn.random import draw_seed

            self._drawn_seed = draw_seed()
        return np.random.default_rng(self._drawn_seed)

    def _rng(self, rng):
        """The generator a layer's build draws from: the seed's own if there is one."""
        if self.seed is not None:
            return np.random.default_rng(self.seed)
        return rng if rng is not None else self._standalone_rng()

    def get_config(self):
        return {"seed": self.seed}


class RandomUniform(RandomInitializer):
    """U(minval, maxval)."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval = _check_real(minval, "minval")
        self.maxval = _check_real(maxval, "maxval")
        super().__init__(seed)

    def sample(self, shape, rng, dtype):
        return self._rng(rng).uniform(self.minval, self.maxval, size=shape).astype(dtype)

    def get_config(self):
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}


class RandomNormal(RandomInitializer):
    """N(mean, stddev^2)."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean = _check_real(mean, "mean")
        self.stddev = _check_real(stddev, "stddev")
        super().__init__(seed)

    def sample(self, shape, rng, dtype):
        return self._rng(rng).normal(self.mean, self.stddev, size=shape).astype(dtype)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class TruncatedNormal(RandomInitializer):
    """N(mean, stddev^2) with values beyond two stddev from the mean redrawn (stddev is the
    untruncated one, as Keras: the truncated distribution's is 0.8796 stddev)."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean = _check_real(mean, "mean")
        self.stddev = _check_real(stddev, "stddev")
        super().__init__(seed)

    def sample(self, shape, rng, dtype):
        return _truncated_normal(shape, self.mean, self.stddev, self._rng(rng), dtype)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class VarianceScaling(RandomInitializer):
    """Variance scale / n, n from the fans by mode (see the module docstring)."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 input_axes=None, output_axes=None):
        if not is_real(scale) or not scale > 0.0:
            raise ValueError(f"Argument `scale` must be positive float. Received: scale={scale}")
        allowed_modes = {"fan_in", "fan_out", "fan_avg"}
        if not isinstance(mode, str) or mode not in allowed_modes:
            raise ValueError(f"Invalid `mode` argument: {mode}. "
                             f"Please use one of {allowed_modes}")
        if not isinstance(distribution, str):
            raise invalid("distribution", "a string", distribution, ArgumentTypeError)
        distribution = distribution.lower()
        if distribution == "normal":  # Keras's alias
            distribution = "truncated_normal"
        allowed = {"uniform", "truncated_normal", "untruncated_normal"}
        if distribution not in allowed:
            raise ValueError(f"Invalid `distribution` argument: {distribution}."
                             f"Please use one of {allowed}")
        self.scale, self.mode, self.distribution = float(scale), mode, distribution
        self.input_axes, self.output_axes = input_axes, output_axes
        super().__init__(seed)

    def _n(self, shape) -> float:
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}
        return max(1.0, n[self.mode])

    def sample(self, shape, rng, dtype):
        n = self._n(shape)
        rng = self._rng(rng)
        if self.distribution == "uniform":
            # 3 * scale / n in one division: for glorot_uniform this is exactly
            # sqrt(6 / (fan_in + fan_out)), the limit minicnn always drew from
            limit = math.sqrt(3.0 * self.scale / n)
            return rng.uniform(-limit, limit, size=shape).astype(dtype)
        stddev = math.sqrt(self.scale / n)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, stddev, size=shape).astype(dtype)
        return _truncated_normal(shape, 0.0, stddev / 0.87962566103423978, rng, dtype)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "mode": self.mode,
                "distribution": self.distribution, "input_axes": self.input_axes,
                "output_axes": self.output_axes}


def _named_scaling(name, scale, mode, distribution, doc):
    def __init__(self, seed=None, input_axes=None, output_axes=None):
        VarianceScaling.__init__(self, scale, mode, distribution, seed, input_axes, output_axes)

    def get_config(self):
        return {"seed": self.seed, "input_axes": self.input_axes,
                "output_axes": self.output_axes}

    return type(name, (VarianceScaling,), {"__init__": __init__, "get_config": get_config,
                                           "__doc__": doc, "__module__": __name__})


GlorotUniform = _named_scaling("GlorotUniform", 1.0, "fan_avg", "uniform",
                               "U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)) "
                               "(Glorot & Bengio, 2010); Keras's default kernel initializer.")
GlorotNormal = _named_scaling("GlorotNormal", 1.0, "fan_avg", "truncated_normal",
                              "Truncated normal, variance 2 / (fan_in + fan_out).")
HeUniform = _named_scaling("HeUniform", 2.0, "fan_in", "uniform",
                           "U(-limit, limit), limit = sqrt(6 / fan_in) (He et al., 2015).")
HeNormal = _named_scaling("HeNormal", 2.0, "fan_in", "truncated_normal",
                          "Truncated normal, variance 2 / fan_in (He et al., 2015).")
LecunUniform = _named_scaling("LecunUniform", 1.0, "fan_in", "uniform",
                              "U(-limit, limit), limit = sqrt(3 / fan_in).")
LecunNormal = _named_scaling("LecunNormal", 1.0, "fan_in", "truncated_normal",
                             "Truncated normal, variance 1 / fan_in.")


class Orthogonal(RandomInitializer):
    """gain * Q, Q from the QR decomposition of a normal (max(r, c), min(r, c)) matrix with
    r = prod(shape[:-1]) rows and c = shape[-1] columns; orthonormal columns (or rows when
    r < c): Q^T Q = I (Saxe et al., 2014)."""

    def __init__(self, gain=1.0, seed=None):
        self.gain = _check_real(gain, "gain")
        super().__init__(seed)

    def sample(self, shape, rng, dtype):
        if len(shape) < 2:
            raise ValueError(f"The tensor to initialize must be at least two-dimensional. "
                             f"Received: shape={shape} of rank {len(shape)}.")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = self._rng(rng).standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))  # the sign convention that makes Q unique, as Keras's
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).astype(dtype)

    def get_config(self):
        return {**super().get_config(), "gain": self.gain}


class Constant(Initializer):
    """Every value equal to ``value`` (a scalar)."""

    def __init__(self, value=0.0):
        self.value = _check_real(value, "value")

    def sample(self, shape, rng, dtype):
        return np.full(shape, self.value, dtype=dtype)

    def get_config(self):
        return {"value": self.value}


class Zeros(Initializer):
    """All zeros; Keras's default bias initializer."""

    def sample(self, shape, rng, dtype):
        return np.zeros(shape, dtype=dtype)


class Ones(Initializer):
    """All ones."""

    def sample(self, shape, rng, dtype):
        return np.ones(shape, dtype=dtype)


class Identity(Initializer):
    """gain * the identity matrix (ones on the diagonal of a 2-D shape, square or not)."""

    def __init__(self, gain=1.0):
        self.gain = _check_real(gain, "gain")

    def sample(self, shape, rng, dtype):
        if len(shape) != 2:
            raise ValueError(f"Identity matrix initializer can only be used for 2D matrices. "
                             f"Received: shape={shape} of rank {len(shape)}.")
        return (self.gain * np.eye(*shape)).astype(dtype)

    def get_config(self):
        return {"gain": self.gain}


# Keras's lowercase aliases are the classes themselves (keras.initializers.glorot_uniform is
# GlorotUniform), so glorot_uniform((3, 3)) and glorot_uniform(seed=1) both read as in Keras.
constant, zeros, ones, identity = Constant, Zeros, Ones, Identity
random_uniform, random_normal, truncated_normal = RandomUniform, RandomNormal, TruncatedNormal
variance_scaling, orthogonal = VarianceScaling, Orthogonal
glorot_uniform, glorot_normal = GlorotUniform, GlorotNormal
he_uniform, he_normal, lecun_uniform, lecun_normal = HeUniform, HeNormal, LecunUniform, LecunNormal
IdentityInitializer, OrthogonalInitializer = Identity, Orthogonal

_CLASSES = (Constant, Zeros, Ones, Identity, RandomUniform, RandomNormal, TruncatedNormal,
            VarianceScaling, Orthogonal, GlorotUniform, GlorotNormal, HeUniform, HeNormal,
            LecunUniform, LecunNormal)
_BY_NAME = {
    **{cls.__name__: cls for cls in _CLASSES},
    "constant": Constant, "zeros": Zeros, "ones": Ones, "identity": Identity,
    "random_uniform": RandomUniform, "random_normal": RandomNormal,
    "truncated_normal": TruncatedNormal, "variance_scaling": VarianceScaling,
    "orthogonal": Orthogonal, "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform, "he_normal": HeNormal,
    "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal,
    "IdentityInitializer": Identity, "OrthogonalInitializer": Orthogonal,
}


def get(identifier):
    """An initializer from a name ('he_normal', 'HeNormal'), a dict from serialize(), a class,
    an Initializer, an array (its values), or a function, as keras.initializers.get.

    Raises ValueError ('Could not interpret initializer identifier: ...') for anything else.
    """
    if identifier is None:
        return None
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]()
    elif isinstance(identifier, dict):
        return deserialize(identifier)
    elif isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    elif isinstance(identifier, (np.ndarray, np.generic)):
        return _FromArray(identifier)
    elif callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret initializer identifier: {identifier}")


def serialize(initializer) -> dict | str | None:
    """A JSON-ready form: Keras's {'module', 'class_name', 'config', 'registered_name'} dict
    for an Initializer; a name stays a name; None stays None."""
    if initializer is None or isinstance(initializer, str):
        return initializer
    if not isinstance(initializer, Initializer):
        raise ValueError(f"Cannot serialize {initializer!r}: only minicnn Initializers and "
                         f"names can be written as a config.")
    return {"module": "keras.initializers", "class_name": type(initializer).__name__,
            "config": initializer.get_config(), "registered_name": None}


def deserialize(config, custom_objects=None):
    """The initializer a serialize() dict (minicnn's or Keras's) describes."""
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ValueError(f"Could not interpret initializer identifier: {config}")
    cls = (custom_objects or {}).get(config["class_name"]) or _BY_NAME.get(config["class_name"])
    if cls is None:
        raise ValueError(f"Could not interpret initializer identifier: {config}")
    return cls.from_config(dict(config.get("config") or {}))


def sample(initializer, shape, rng, dtype) -> np.ndarray:
    """What a layer's build calls: values of shape and dtype from any accepted initializer."""
    if isinstance(initializer, Initializer):
        return initializer.sample(tuple(shape), rng, np.dtype(dtype))
    if _takes_rng(initializer):
        out = initializer(shape, rng, dtype)
    else:
        out = initializer(tuple(shape), dtype=np.dtype(dtype).name)
    out = np.asarray(out)
    if out.shape != tuple(shape):
        raise ValueError(f"The initializer {initializer!r} returned shape {out.shape}, "
                         f"expected {tuple(shape)}.")
    return out.astype(dtype)


class _FromArray(Initializer):
    """keras.initializers.get(array): the array's values, for the array's shape only."""

    def __init__(self, values):
        self.values = np.array(values)

    def sample(self, shape, rng, dtype):
        if tuple(shape) != self.values.shape:
            raise ValueError(f"Expected `shape` to be {self.values.shape} for direct tensor "
                             f"as initializer. Received shape={tuple(shape)}")
        return self.values.astype(dtype)


def _takes_rng(fn) -> bool:
    try:
        return "rng" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


def _check_shape(shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise invalid("shape", "a tuple of non-negative ints", shape, ArgumentTypeError) from None
    if any(d < 0 for d in shape):
        raise invalid("shape", "a tuple of non-negative ints", shape)
    return shape


def _check_real(value, arg) -> float:
    if not is_real(value) or not math.isfinite(float(value)):
        raise invalid(arg, "a finite float", value, ArgumentTypeError if not is_real(value)
                      else ValueError)
    return float(value)
