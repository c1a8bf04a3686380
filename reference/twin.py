"""The Keras twin of a minicnn model: the same layers, the same weights, copied with no transposes.

    kmodel = to_keras(model)          # keras.Sequential, weights copied from minicnn
    model2 = from_keras(kmodel)       # and back: a minicnn Sequential with Keras's weights

Both libraries store activations channels-last (N, H, W, C), conv kernels (KH, KW, C, F) and
dense kernels (D_in, D_out), and Flatten is a C-order reshape in both, so ``get_weights()`` of
one is ``set_weights()`` of the other. Training-mode dropout is compared by giving both the same
keep-mask: the twin's dropout layers are ``MaskedDropout``, which multiply by a given mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from minicnn import layers as mlayers
from minicnn.model import Sequential
from reference._keras import BACKEND, keras, ops


class MaskedDropout(keras.layers.Dropout):
    """keras.layers.Dropout that, when given ``keep``, drops exactly the units keep marks False.

    Shapes: inputs (any), keep (same shape, bool or 0/1) -> out (same shape).

    Each backend's own order of operations, so that a shared mask gives bit-identical outputs
    to that backend's Dropout (tests/test_parity.py checks it against the stock layer):
    TensorFlow (``tf.nn.experimental.stateless_dropout``) and PyTorch
    (``torch.nn.functional.dropout``) multiply by the float32 scale 1 / (1 - rate); JAX
    (``keras.src.backend.jax.random.dropout``) divides by 1 - rate, which rounds differently
    in the last bit of some entries. Without ``keep`` it is Keras's Dropout, random mask and all.
    """

    def call(self, inputs, training=False, keep=None):
        if not training or keep is None or self.rate == 0:
            return super().call(inputs, training=training)
        keep = ops.cast(keep, "bool")
        if BACKEND == "jax":
            return ops.where(keep, ops.divide(inputs, 1.0 - self.rate), ops.zeros_like(inputs))
        scaled = ops.multiply(inputs, 1.0 / (1.0 - self.rate))
        return ops.multiply(scaled, ops.cast(keep, inputs.dtype))


def _activation_arg(act) -> str | None:
    return None if act.name == "linear" else act.name


def keras_layer(layer, dropout: str = "masked"):
    """The Keras layer with the same configuration as minicnn ``layer`` (weights not copied).

    dropout: 'masked' gives MaskedDropout (parity), 'keras' the stock keras.layers.Dropout
    (independent training, as in the statistical comparison).
    """
    if any(r is not None for r in getattr(layer, "regularizers", {}).values()):
        # a twin without the penalty would compute another loss: refuse rather than mislead
        raise ValueError(
            f"Layer {layer.name!r} has weight regularizers, which the reference twin does not "
            f"mirror; pass to_keras(..., layer_factory=...) to build its Keras twin."
        )
    if isinstance(layer, mlayers.Conv2D):
        return keras.layers.Conv2D(
            layer.filters,
            layer.kernel_size,
            strides=layer.strides,
            padding=layer.padding,
            activation=_activation_arg(layer.activation),
            use_bias=layer.use_bias,
            name=layer.name,
        )
    if isinstance(layer, mlayers.MaxPooling2D):
        return keras.layers.MaxPooling2D(
            layer.pool_size, strides=layer.strides, padding=layer.padding, name=layer.name
        )
    if isinstance(layer, mlayers.Dropout):
        cls = MaskedDropout if dropout == "masked" else keras.layers.Dropout
        return cls(layer.rate, name=layer.name)
    if isinstance(layer, mlayers.Flatten):
        return keras.layers.Flatten(name=layer.name)
    if isinstance(layer, mlayers.Dense):
        return keras.layers.Dense(
            layer.units,
            activation=_activation_arg(layer.activation),
            use_bias=layer.use_bias,
            name=layer.name,
        )
    if isinstance(layer, mlayers.Activation):
        return keras.layers.Activation(layer.activation.name, name=layer.name)
    raise TypeError(f"No Keras twin for minicnn layer {layer!r} of type {type(layer).__name__}.")


def to_keras(
    model: Sequential,
    dropout: str = "masked",
    copy_weights: bool = True,
    layer_factory: Callable | None = None,
    weight_transform: Callable | None = None,
):
    """Build the Keras twin of a built minicnn ``model`` and (by default) copy its weights.

    Args:
        model: a built minicnn Sequential.
        dropout: 'masked' (MaskedDropout, for parity) or 'keras' (stock Dropout).
        copy_weights: False keeps Keras's own random initialisation.
        layer_factory: optional callable(minicnn layer) -> Keras layer or None (None: the
            faithful twin); ``reference.mutants`` uses it to build deliberately wrong twins.
        weight_transform: optional callable(minicnn layer, weights) -> weights applied on copy.

    Returns:
        keras.Sequential with the model's name, layer names, shapes and (copied) weights.
    """
    if dropout not in ("masked", "keras"):
        raise ValueError(
            f"Invalid value for argument dropout. Expected 'masked' or 'keras'. "
            f"Received: dropout={dropout!r}"
        )
    if model.input_shape is None:
        raise ValueError(
            "to_keras needs a built model: call model.build(input_shape) first, "
            "or give the first layer input_shape=."
        )
    klayers = []
    for layer in model.layers:
        k = layer_factory(layer) if layer_factory is not None else None
        klayers.append(k if k is not None else keras_layer(layer, dropout))
    kmodel = keras.Sequential([keras.Input(shape=model.input_shape), *klayers], name=model.name)
    if copy_weights:
        copy_to_keras(model, kmodel, weight_transform)
    return kmodel


def copy_to_keras(model: Sequential, kmodel, weight_transform: Callable | None = None) -> None:
    """Set every Keras layer's weights to its minicnn twin's (same order, same shapes)."""
    for layer, klayer in zip(model.layers, kmodel.layers, strict=True):
        weights = layer.get_weights()
        if weight_transform is not None:
            weights = weight_transform(layer, weights)
        if weights:
            klayer.set_weights(weights)


def copy_from_keras(kmodel, model: Sequential) -> None:
    """Set every minicnn layer's weights to its Keras twin's."""
    for layer, klayer in zip(model.layers, kmodel.layers, strict=True):
        if layer.weight_names:
            layer.set_weights([np.asarray(w) for w in klayer.get_weights()])


def _minicnn_layer(klayer):
    cfg = klayer.get_config()
    name = cfg["name"]
    if isinstance(klayer, keras.layers.Conv2D):
        if (
            cfg.get("data_format", "channels_last") != "channels_last"
            or cfg["groups"] != 1
            or tuple(cfg["dilation_rate"]) != (1, 1)
        ):
            raise ValueError(
                f"Keras layer {name!r}: minicnn's Conv2D supports channels_last, "
                f"groups=1 and dilation_rate=1 only. Received: {cfg}"
            )
        return mlayers.Conv2D(
            cfg["filters"],
            tuple(cfg["kernel_size"]),
            strides=tuple(cfg["strides"]),
            padding=cfg["padding"],
            activation=_activation_name(cfg["activation"]),
            use_bias=cfg["use_bias"],
            name=name,
        )
    if isinstance(klayer, keras.layers.MaxPooling2D):
        return mlayers.MaxPooling2D(
            tuple(cfg["pool_size"]),
            strides=tuple(cfg["strides"]),
            padding=cfg["padding"],
            name=name,
        )
    if isinstance(klayer, keras.layers.Dropout):
        return mlayers.Dropout(cfg["rate"], name=name)
    if isinstance(klayer, keras.layers.Flatten):
        return mlayers.Flatten(name=name)
    if isinstance(klayer, keras.layers.Dense):
        return mlayers.Dense(
            cfg["units"],
            activation=_activation_name(cfg["activation"]),
            use_bias=cfg["use_bias"],
            name=name,
        )
    if isinstance(klayer, keras.layers.Activation):
        return mlayers.Activation(_activation_name(cfg["activation"]), name=name)
    raise TypeError(
        f"minicnn has no layer for Keras layer {name!r} of type {type(klayer).__name__}."
    )


def _activation_name(act) -> str:
    # Keras 3 configs hold activations as names ('relu') or serialised dicts
    if isinstance(act, dict):
        act = act.get("config", act).get("name", act)
    return act or "linear"


def from_keras(kmodel) -> Sequential:
    """A built minicnn Sequential with the same layers and weights as Keras ``kmodel``.

    Shapes: kmodel's input (None, *input_shape) -> the minicnn model's input_shape.
    """
    if not isinstance(kmodel, keras.Sequential):
        raise TypeError(
            f"from_keras expects a keras.Sequential model. Received: {type(kmodel).__name__}"
        )
    model = Sequential([_minicnn_layer(k) for k in kmodel.layers], name=kmodel.name)
    model.build(tuple(kmodel.input_shape[1:]))
    copy_from_keras(kmodel, model)
    return model


def _call(layer, h, training: bool, keep, weights=None):
    """One layer of the twin on h: stateful (its own variables) or, given ``weights`` (its
    trainable variables' values, in order), stateless, which autodiff.py differentiates."""
    kwargs = {"keep": keep} if isinstance(layer, MaskedDropout) else {}
    if weights is None:
        return layer(h, training=training, **kwargs)
    if "training" in layer.call_signature_parameters:
        kwargs["training"] = training
    state = [v.value for v in layer.non_trainable_variables]  # e.g. Dropout's seed
    return layer.stateless_call(weights, state, h, **kwargs)[0]


def run_layers(kmodel, x, training: bool = False, keeps: Sequence | None = None) -> list:
    """Every layer's output of the Keras twin, calling the layers one by one.

    Args:
        x: input batch (N, *input_shape), array or tensor.
        training: Keras's training flag for every layer.
        keeps: optional list (one entry per layer) of keep-masks for MaskedDropout layers;
            None entries (and non-dropout layers) take none.

    Returns:
        list of tensors, output of layer i at index i.
    """
    outs, h = [], ops.convert_to_tensor(x)
    for i, layer in enumerate(kmodel.layers):
        h = _call(layer, h, training, keeps[i] if keeps is not None else None)
        outs.append(h)
    return outs


def layer_weights(kmodel) -> list[list]:
    """The twin's trainable variables, one list per layer (what stateless_run takes)."""
    return [list(layer.trainable_variables) for layer in kmodel.layers]


def stateless_run(kmodel, weights, x, training: bool = False, keeps=None, probes=None):
    """The twin's output with the given weights instead of its variables: a pure function
    of (weights, x, probes) that jax.grad, a gradient tape or torch.autograd can differentiate.

    Args:
        weights: one list per layer of tensors, shaped as that layer's trainable variables.
        keeps: as in run_layers.
        probes: optional zero tensors added to the outputs of layers 0 .. L-2, so that
            d loss / d probe_i is the gradient at the input of layer i + 1. (The last output
            takes none: on TensorFlow a softmax output carries its logits to the loss, and
            an addition would drop them.)

    Shapes: x (N, *input_shape); probes[i] as layer i's output -> (N, *output_shape).
    """
    h = x
    last = len(kmodel.layers) - 1
    for i, (layer, w) in enumerate(zip(kmodel.layers, weights, strict=True)):
        h = _call(layer, h, training, keeps[i] if keeps is not None else None, w)
        if probes is not None and i < last:
            h = ops.add(h, probes[i])
    return h
