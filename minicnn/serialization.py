"""Configs and JSON in Keras 3's format: model.to_json(), model_from_json, clone_model.

Keras 3 describes an object as ``{'module', 'class_name', 'config', 'registered_name'}``
(keras/src/saving/serialization_lib.py); a Sequential model's config lists its layers that way,
an InputLayer first, then ``build_input_shape``. minicnn writes the same layout, with Keras's
module names for the classes it shares with Keras (so the JSON reads as the network it is), and
reads Keras's own JSON back:

    json_string = keras_model.to_json()            # written by Keras 3
    model = minicnn.models.model_from_json(json_string)
    model.set_weights(keras_model.get_weights())   # the same layouts: no transposes

Keras's entries for features minicnn does not compute are accepted at their defaults and refused
by name otherwise (layers/base.py, check_keras_arguments), so a model that would compute
something else is never built silently.
"""

from __future__ import annotations

import json
import os

from minicnn import untrusted
from minicnn.validation import ArgumentTypeError, invalid

# a model's JSON is small (the deep model's is 6 KB); the bound keeps a hostile string harmless
MAX_JSON_CHARS = untrusted.MiB


def serialize(obj, module="keras.layers") -> dict:
    """Keras's dict for a layer (or any object with get_config)."""
    return {"module": module, "class_name": type(obj).__name__, "config": obj.get_config(),
            "registered_name": None}


def dtype_name(value):
    """A dtype from a config: a name, or Keras's DTypePolicy dict {'config': {'name': ...}}."""
    if isinstance(value, dict):
        inner = value.get("config") if isinstance(value.get("config"), dict) else {}
        return inner.get("name", value.get("name"))
    return value


def layer_kwargs(cls, config) -> dict:
    """Constructor arguments for cls from a layer config (minicnn's or Keras's)."""
    if not isinstance(config, dict):
        raise invalid("config", f"a dict from {cls.__name__}.get_config()", config,
                      ArgumentTypeError)
    kwargs = dict(config)
    if "dtype" in kwargs:
        kwargs["dtype"] = dtype_name(kwargs["dtype"])
    return kwargs


def layer_class(class_name, custom_objects=None):
    """The minicnn layer class called class_name, or one from custom_objects."""
    from minicnn import layers
    from minicnn.layers.base import Layer

    cls = (custom_objects or {}).get(class_name)
    if cls is None and class_name in layers.__all__:
        cls = getattr(layers, class_name)
    if not (isinstance(cls, type) and (issubclass(cls, Layer) or cls is layers.InputLayer)) \
            or cls is Layer:
        raise ValueError(f"Unknown layer class {class_name!r}: minicnn builds "
                         f"{sorted(n for n in layers.__all__ if n not in ('Layer', 'Input'))}, "
                         f"or pass custom_objects={{{class_name!r}: cls}}.")
    return cls


def deserialize_layer(entry, custom_objects=None):
    """A layer from Keras's {'class_name', 'config', ...} dict."""
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise invalid("layer", "a dict with 'class_name' and 'config'", entry, ArgumentTypeError)
    cls = layer_class(entry["class_name"], custom_objects)
    return cls.from_config(entry.get("config") or {})


def model_from_config(config, custom_objects=None):
    """A Sequential from Keras's {'class_name': 'Sequential', 'config': {...}} dict."""
    from minicnn.model import Sequential

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
    from minicnn.model import Sequential

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
    from minicnn.model import Sequential

    if not isinstance(model, Sequential):
        raise invalid("model", "a minicnn Sequential model", model, ArgumentTypeError)
    if not overwrite and os.path.exists(os.fspath(filepath)):
        raise FileExistsError(f"{os.fspath(filepath)} exists and overwrite=False.")
    model.save(filepath)


def to_json(model, **kwargs) -> str:
    """Keras's layout of model.get_config() as a JSON string (kwargs go to json.dumps)."""
    out = {"module": "keras", "class_name": "Sequential", "config": model.get_config(),
           "registered_name": None}
    if model.input_shape is not None:
        out["build_config"] = {"input_shape": [None, *model.input_shape]}
    return json.dumps(out, **kwargs)
