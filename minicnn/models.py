"""``keras.models``, spelled the same: Sequential, load_model, save_model, clone_model,
model_from_json.

    from minicnn.models import Sequential      # as `from keras.models import Sequential`

The seed tutorial's two networks are built by ``minicnn.architectures`` (``seed_model``,
``deep_model``, ``build``, ``BUILDERS``); their old spelling ``minicnn.models.seed_model`` and
so on still works for this release, with a FutureWarning naming the new one.
"""

from __future__ import annotations

import warnings

from minicnn.model import Sequential
from minicnn.saving import load_model
from minicnn.serialization import clone_model, model_from_json, save_model

__all__ = ["Sequential", "clone_model", "load_model", "model_from_json", "save_model"]

_MOVED = ("BUILDERS", "architecture_name", "build", "deep_model", "seed_model")


def __getattr__(name):
    # PEP 562: reached only for names this module does not define
    if name in _MOVED:
        from minicnn import architectures

        warnings.warn(f"minicnn.models.{name} is now minicnn.architectures.{name}; the old "
                      f"name will be removed in the next release.", FutureWarning, stacklevel=2)
        return getattr(architectures, name)
    raise AttributeError(f"module 'minicnn.models' has no attribute {name!r}")
