"""Configs and JSON in Keras 3's format: a layer's dict, a model's JSON (model.to_json()).

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

from minicnn.validation import ArgumentTypeError, invalid


def serialize(obj, module="keras.layers") -> dict:
    """Keras's dict for a layer (or any object with get_config)."""
    return {"module": module, "class_name": type(obj).__name__, "config": obj.get_config(),
            "registered_name": None}


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


def to_json(model, **kwargs) -> str:
    """Keras's layout of model.get_config() as a JSON string (kwargs go to json.dumps)."""
    out = {"module": "keras", "class_name": "Sequential", "config": model.get_config(),
           "registered_name": None}
    if model.input_shape is not None:
        out["build_config"] = {"input_shape": [None, *model.input_shape]}
    return json.dumps(out, **kwargs)
