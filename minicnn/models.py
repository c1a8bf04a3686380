"""``keras.models``, spelled the same: Sequential, load_model, save_model, clone_model,
model_from_json.

    from minicnn.models import Sequential      # as `from keras.models import Sequential`

The seed tutorial's two networks are built by ``minicnn.architectures`` (``seed_model``,
``deep_model``, ``build``, ``BUILDERS``); their old spelling ``minicnn.models.seed_model`` and
so on still works for this release, with a FutureWarning naming the new one.
"""

from __future__ import annotations

import os
import warnings

from minicnn import untrusted
from minicnn.model import Sequential, load_model
from minicnn.validation import ArgumentTypeError, invalid

# a model's JSON is small (the deep model's is 6 KB); the bound keeps a hostile string harmless
MAX_JSON_CHARS = untrusted.MiB

__all__ = ["Sequential", "clone_model", "load_model", "model_from_json", "save_model"]

def model_from_config(config, custom_objects=None):
    """A Sequential from Keras's {'class_name': 'Sequential', 'config': {...}} dict."""
    if not isinstance(config, dict):
        raise invalid("config", "a dict", config, ArgumentTypeError)
    name = config.get("class_name")
    if name != "Sequential":
        raise ValueError(f"minicnn builds Sequential models only; the config describes a "
                         f"{name!r} model.")
    return Sequential.from_config(config.get("config") or {}, custom_objects=custom_objects)


def model_from_json(json_string, custom_objects=None):
    """The model a to_json() string describes (minicnn's or Keras 3's), unbuilt weights
    initialised afresh, not compiled (as keras.models.model_from_json)."""
    if not isinstance(json_string, (str, bytes)):
        raise invalid("json_string", "a JSON string", json_string, ArgumentTypeError)
    if isinstance(json_string, bytes):
        json_string = json_string.decode("utf-8", errors="replace")
    config = untrusted.parse_json(json_string, "model_from_json", MAX_JSON_CHARS)
    return model_from_config(config, custom_objects)


def clone_model(model, input_tensors=None, clone_function=None, **kwargs):
    """A new model with the same layers (by config) and fresh weights, as keras.models.
    clone_model: not compiled, built when model is built.

    Args:
        model: a minicnn Sequential.
        input_tensors: Keras's; only None is supported.
        clone_function: layer -> new layer (default: ``type(layer).from_config(config)``).
    """
    if not isinstance(model, Sequential):
        raise invalid("model", "a minicnn Sequential model", model, ArgumentTypeError)
    if input_tensors is not None:
        raise invalid("input_tensors", "None (minicnn clones Sequential models only)",
                      input_tensors)
    if kwargs:
        raise ValueError(f"Unrecognized keyword arguments passed to clone_model: {kwargs}")
    if clone_function is None:
        def clone_function(layer):
            return type(layer).from_config(layer.get_config())
    elif not callable(clone_function):
        raise invalid("clone_function", "a callable layer -> layer", clone_function,
                      ArgumentTypeError)
    layers = [clone_function(layer) for layer in model.layers]
    clone = Sequential(name=model.name)
    if model.input_shape is not None:
        clone.add_input_shape(model.input_shape)
    for layer in layers:
        clone.add(layer)
    return clone


def save_model(model, filepath, overwrite=True):
    """keras.models.save_model: ``model.save(filepath)`` (minicnn's .npz format)."""
    if not isinstance(model, Sequential):
        raise invalid("model", "a minicnn Sequential model", model, ArgumentTypeError)
    if not overwrite and os.path.exists(os.fspath(filepath)):
        raise FileExistsError(f"{os.fspath(filepath)} exists and overwrite=False.")
    model.save(filepath)


_MOVED = ("BUILDERS", "architecture_name", "build", "deep_model", "seed_model")


def __getattr__(name):
    # PEP 562: reached only for names this module does not define
    if name in _MOVED:
        from minicnn import architectures

        warnings.warn(f"minicnn.models.{name} is now minicnn.architectures.{name}; the old "
                      f"name will be removed in the next release.", FutureWarning, stacklevel=2)
        return getattr(architectures, name)
    raise AttributeError(f"module 'minicnn.models' has no attribute {name!r}")
