"""The one place minicnn imports TensorFlow and Keras, with the backend pinned to TensorFlow.

Keras 3 computes categorical crossentropy differently per backend (TensorFlow reads a softmax
output's logits and does not clip; the others clip probabilities), so parity is only meaningful
against one stated backend: TensorFlow, the one the seed tutorial ran on.
"""

from __future__ import annotations

import os
import sys

BACKEND = "tensorflow"

if "keras" in sys.modules and os.environ.get("KERAS_BACKEND", BACKEND) != BACKEND:
    raise RuntimeError(
        f"Keras was already imported with KERAS_BACKEND="
        f"{os.environ['KERAS_BACKEND']!r}; the parity suite needs "
        f"'{BACKEND}'. Import reference before keras, or unset KERAS_BACKEND."
    )
os.environ["KERAS_BACKEND"] = BACKEND
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ banners off the table

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

if keras.backend.backend() != BACKEND:  # pragma: no cover - only if keras was pre-configured
    raise RuntimeError(f"Keras runs on {keras.backend.backend()!r}, expected {BACKEND!r}.")

__all__ = ["BACKEND", "keras", "tf"]
