"""The one place minicnn imports Keras, on the backend named by ``KERAS_BACKEND``.

Keras 3 runs on TensorFlow, JAX or PyTorch and picks the backend once, at import, from the
``KERAS_BACKEND`` environment variable; the parity suite reads the same variable (default
'tensorflow', the backend the seed tutorial ran on) and compares against that backend. A run
against another backend needs a fresh process: ``minicnn parity --keras-backend jax`` starts one.

The backends do not all compute the same thing (categorical crossentropy on a softmax output
reads the logits on TensorFlow and clips the probabilities on JAX and PyTorch; see
reference/tolerances.py, BACKEND_DIFFERENCES), so every report says which backend it ran on.
What differs per backend in *how* the suite drives Keras (gradients, a training step) lives in
reference/autodiff.py; everything else talks to Keras through ``keras`` and ``keras.ops``.
"""

from __future__ import annotations

import os

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT = "tensorflow"

BACKEND = os.environ.get("KERAS_BACKEND", DEFAULT)
if BACKEND not in BACKENDS:
    raise RuntimeError(
        f"Invalid value for KERAS_BACKEND. Expected one of {BACKENDS}. Received: {BACKEND!r}"
    )
os.environ["KERAS_BACKEND"] = BACKEND
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ banners off the table

import keras  # noqa: E402

if keras.backend.backend() != BACKEND:  # pragma: no cover - keras was imported before us
    raise RuntimeError(
        f"Keras runs on {keras.backend.backend()!r}, but KERAS_BACKEND is {BACKEND!r}: Keras "
        f"picks its backend at its first import. Import reference before keras, or start a "
        f"fresh process (minicnn parity --keras-backend NAME does)."
    )

ops = keras.ops

# the backend's own tensor library: autodiff.py's gradient tape, jax.grad or torch.autograd
if BACKEND == "tensorflow":
    import tensorflow as lib
elif BACKEND == "jax":
    import jax as lib
else:
    import torch as lib


def minicnn_loss():
    """minicnn's crossentropy in the form Keras computes it on this backend: from a softmax
    output's logits on TensorFlow, from clipped probabilities on JAX and PyTorch
    (tolerances.BACKEND_DIFFERENCES, 'crossentropy')."""
    from minicnn.losses import CategoricalCrossentropy

    return CategoricalCrossentropy(clip_probabilities=BACKEND != "tensorflow")


def to_numpy(t):
    """A NumPy copy of a Keras tensor or variable on any backend (torch: detached)."""
    return ops.convert_to_numpy(t)


__all__ = ["BACKEND", "BACKENDS", "DEFAULT", "keras", "lib", "minicnn_loss", "ops", "to_numpy"]
