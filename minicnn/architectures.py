"""The two architectures of the seed tutorial, built with the public API.

    from minicnn.architectures import seed_model, deep_model, build, BUILDERS

(Until release 0.1 these lived in ``minicnn.models``; that name is now Keras's, holding
Sequential, load_model, clone_model and model_from_json, as ``keras.models`` does.)

seed: Conv2D(32, 3x3, relu) -> MaxPooling2D(2x2) -> Dropout(0.25) -> Flatten -> Dropout(0.5)
      -> Dense(10, softmax)                                    54,410 parameters
deep: the tutorial's commented-out lines switched on: a second Conv2D(64, 3x3, relu) before the
      pool and Dense(128, relu) before the last dropout        1,199,882 parameters
"""

from __future__ import annotations

from minicnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from minicnn.model import Sequential


def seed_model(input_shape=(28, 28, 1), num_classes=10) -> Sequential:
    """The seed tutorial's model, uncompiled."""
    return Sequential([
        Conv2D(32, kernel_size=(3, 3), activation="relu", input_shape=input_shape),
        MaxPooling2D(pool_size=(2, 2)),
        Dropout(0.25),
        Flatten(),
        Dropout(0.5),
        Dense(num_classes, activation="softmax"),
    ])


def deep_model(input_shape=(28, 28, 1), num_classes=10) -> Sequential:
    """The seed's deeper variant (its commented-out Conv2D(64) and Dense(128) lines), uncompiled."""
    return Sequential([
        Conv2D(32, kernel_size=(3, 3), activation="relu", input_shape=input_shape),
        Conv2D(64, (3, 3), activation="relu"),
        MaxPooling2D(pool_size=(2, 2)),
        Dropout(0.25),
        Flatten(),
        Dense(128, activation="relu"),
        Dropout(0.5),
        Dense(num_classes, activation="softmax"),
    ])


BUILDERS = {"seed": seed_model, "deep": deep_model}


def build(name: str, **kwargs) -> Sequential:
    """A model by name: 'seed' or 'deep'."""
    if name not in BUILDERS:
        raise ValueError(f"Invalid value for argument model. Expected one of {sorted(BUILDERS)}. "
                         f"Received: model={name!r}")
    return BUILDERS[name](**kwargs)


def architecture_name(model: Sequential) -> str | None:
    """'seed' or 'deep' when model has exactly that builder's layers, else None.

    Layers are compared by class and config (names and dropout seeds aside) and the input
    shape must be the digits' (28, 28, 1). Nothing is built, and layer naming and minicnn's
    random stream are left as they were (a builder's Dropout draws a seed from it).
    """
    from minicnn import naming
    from minicnn import random as mrandom

    def signature(layers):
        return [
            (type(layer).__name__,
             {k: v for k, v in layer.get_config().items() if k not in ("name", "seed")})
            for layer in layers
        ]

    if tuple(model.input_shape or ()) != (28, 28, 1):
        return None
    mine = signature(model.layers)
    for name, build in BUILDERS.items():
        names, state = dict(naming._NAME_COUNTS), mrandom._root.bit_generator.state
        try:
            reference = build(input_shape=None)  # None: the layers stay unbuilt
        finally:
            naming._NAME_COUNTS.clear()
            naming._NAME_COUNTS.update(names)
            mrandom._root.bit_generator.state = state
        if signature(reference.layers) == mine:
            return name
    return None
