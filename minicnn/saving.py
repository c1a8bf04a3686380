"""Saving and loading models: one `.npz` file holding a JSON header and named arrays.

    model.save("model.npz")                 # architecture + weights + compile/optimizer state
    model = minicnn.load_model("model.npz")  # (minicnn.model) training resumes where it stopped
    model.save_weights("w.npz");  other.load_weights("w.npz")   # weights only

The file format (``format_version`` 1) is a plain NumPy ``.npz`` (a zip of ``.npy`` members,
uncompressed), readable with ``np.load(path)`` and no pickle. Its members:

    __minicnn__                          0-d unicode array: the JSON header below
    layers/<path>/<weight>               e.g. layers/conv2d/kernel (3, 3, 1, 32) float32,
                                         layers/conv2d/bias, layers/dense/kernel, ...
    optimizer/<slot>/<path>/<weight>     e.g. optimizer/momentums/conv2d/kernel,
                                         optimizer/velocities/dense/bias (Adam's m and v)

``<path>`` is the layer's class in snake case, numbered per class in model order (``conv2d``,
``conv2d_1``, ``dropout``, ``dropout_1``, ...), so the names do not depend on the names the
process happened to give the layers (Keras 3 names its ``.weights.h5`` groups the same way).

The header::

    {"format": "minicnn.npz", "format_version": 1,
     "kind": "model" | "weights",             # save() or save_weights()
     "minicnn_version": "0.1.0",
     "model": {"class_name": "Sequential", "name": "sequential", "input_shape": [28, 28, 1]},
     "layers": [{"path": "conv2d", "class_name": "Conv2D", "dtype": "float32",
                 "config": {... layer.get_config() ...},
                 "weights": {"kernel": {"shape": [3, 3, 1, 32], "dtype": "float32",
                                        "trainable": true}, ...},
                 "state": {"counter": 157}},          # Dropout: masks drawn so far
                ...],
     "compile": null | {"loss": "categorical_crossentropy", "metrics": ["accuracy"],
                        "optimizer": {"name": "Adam", "learning_rate": 0.001, ...},
                        "iterations": 157, "slots": ["momentums", "velocities"]}}

``kind: "weights"`` files carry the same ``layers`` list (used to check the target model) but no
``state`` and a null ``compile``. Dropout's seed is in its config and its mask counter in
``state``, so dropout masks after loading continue the saved sequence.

Guarantees: writes are atomic (a temp file in the same folder, fsync, ``os.replace``), so a
crash leaves the previous file or the new one, never a part. Loading reads and checks the whole
file (zip CRCs, header, every array's name, shape, dtype and finiteness, and the match with the
model) before anything is written, so a truncated, corrupt or mismatched file raises a
ValueError naming the file (and, for a mismatch, the layer and the expected and found shapes)
and leaves the model as it was.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import numpy as np

from minicnn import initializers, losses, optimizers, untrusted
from minicnn import layers as layers_module
from minicnn._version import __version__
from minicnn.atomic import atomic_write
from minicnn.layers.base import Layer, check_shape, snake_case
from minicnn.layers.dropout import Dropout

FORMAT = "minicnn.npz"
FORMAT_VERSION = 1
HEADER_KEY = "__minicnn__"
# Limits for reading (minicnn.untrusted): a file larger than this is refused before it is read
# (the deep model with its optimizer state is 14 MB); raise it for a model that needs more.
MAX_FILE_BYTES = 2 * untrusted.GiB
MAX_HEADER_CHARS = untrusted.MiB
_PATH = re.compile(r"^[a-z0-9_]+$")
# Integer attributes that are state, not config: what a layer needs to continue where it stopped.
_STATE_ATTRS = {Dropout: ("counter",)}
# A custom initializer callable cannot be named in JSON; it only shapes the weights at build
# time, and loading overwrites those, so the default stands in for it when rebuilding.
_INIT_DEFAULTS = {"kernel_initializer": "glorot_uniform", "bias_initializer": "zeros"}


# --- writing ---------------------------------------------------------------------------------
def _write_npz(f, arrays: dict[str, np.ndarray]) -> None:
    """The one place bytes are written (tests replace it to simulate a failure midway)."""
    np.savez(f, **arrays)


def _layer_paths(layers) -> list[str]:
    """'conv2d', 'max_pooling2d', 'dropout', 'flatten', 'dropout_1', 'dense': class-based."""
    counts: dict[str, int] = {}
    paths = []
    for layer in layers:
        base = snake_case(type(layer).__name__)
        n = counts.get(base, 0)
        counts[base] = n + 1
        paths.append(base if n == 0 else f"{base}_{n}")
    return paths


def _is_model(model) -> bool:
    # duck-typed, so this module need not import the model (which imports it)
    return all(hasattr(model, a) for a in ("layers", "input_shape", "built", "optimizer"))


def _require_built(model, what) -> None:
    if not _is_model(model):
        raise TypeError(f"{what} expects a minicnn Sequential model. Received: {model!r}")
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built, so it has no weights to save: "
            f"call build(input_shape), fit or predict first, or give the first "
            f"layer input_shape=."
        )


def _payload(model, kind: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, arrays) describing model; kind 'model' adds state and the compile block."""
    arrays: dict[str, np.ndarray] = {}
    entries = []
    paths = _layer_paths(model.layers)
    for layer, path in zip(model.layers, paths, strict=True):
        weights = {}
        for key in layer.weight_names:
            w = layer.params[key]
            arrays[f"layers/{path}/{key}"] = w
            weights[key] = {
                "shape": list(w.shape),
                "dtype": w.dtype.name,
                "trainable": key not in layer.non_trainable,
            }
        entry = {
            "path": path,
            "class_name": type(layer).__name__,
            "dtype": layer.dtype,
            "config": layer.get_config(),
            "weights": weights,
        }
        if kind == "model":
            entry["state"] = {a: int(getattr(layer, a)) for a in _state_attrs(layer)}
        entries.append(entry)
    compiled = None
    if kind == "model" and model.optimizer is not None and model.loss is not None:
        opt = model.optimizer
        slot_paths = _slot_paths(model.layers, paths)
        for name in opt.slot_names:
            for i, a in enumerate(opt.slots.get(name, [])):
                arrays[f"optimizer/{name}/{slot_paths[i]}"] = a
        compiled = {
            "loss": _loss_entry(model.loss),
            "metrics": list(model.metrics),
            # the class beside Keras's config: the config's 'name' is the instance's own
            "optimizer": {"class_name": type(opt).__name__, **opt.get_config()},
            "iterations": int(opt.iterations),
            "slots": [n for n in opt.slot_names if opt.slots.get(n)],
        }
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "minicnn_version": __version__,
        "model": {
            "class_name": "Sequential",
            "name": model.name,
            "input_shape": list(model.input_shape),
        },
        "layers": entries,
        "compile": compiled,
    }
    return header, arrays


def _loss_entry(loss):
    """The loss's name when it has its default settings (as minicnn always wrote it), else
    Keras's serialised dict (from_logits, label_smoothing, ...)."""
    if loss.get_config() == type(loss)().get_config():
        return loss.name
    return losses.serialize(loss)


def _state_attrs(layer) -> tuple[str, ...]:
    return next((attrs for cls, attrs in _STATE_ATTRS.items() if isinstance(layer, cls)), ())


def _slot_paths(layers, paths) -> list[str]:
    """'<layer path>/<weight>' for each trainable parameter, in the optimizer's order."""
    return [
        f"{path}/{key}"
        for layer, path in zip(layers, paths, strict=True)
        for key in layer.trainable_names
    ]


def _save(model, path, kind) -> None:
    header, arrays = _payload(model, kind)
    arrays = {HEADER_KEY: np.array(json.dumps(header)), **arrays}
    atomic_write(path, lambda f: _write_npz(f, arrays))


def save_model(model, path) -> None:
    """Write architecture, weights, compile state and optimizer state to ``path`` (.npz).

    Everything training needs to continue is kept: Adam's iterations and m/v slots, and each
    Dropout layer's seed and mask counter. The write is atomic.
    """
    _require_built(model, "save")
    _save(model, path, "model")


def save_weights(model, path) -> None:
    """Write only the layers' weights to ``path`` (.npz), in the same format (kind 'weights')."""
    _require_built(model, "save_weights")
    _save(model, path, "weights")


# --- reading and checking --------------------------------------------------------------------
class _Saved:
    """A checked file: its header and every array, read in full (so CRCs were verified)."""

    def __init__(self, path, header: dict, arrays: dict[str, np.ndarray]):
        self.path, self.header, self.arrays = path, header, arrays
        self.layers: list[dict] = header["layers"]

    def fail(self, message):
        return ValueError(f"{self.path}: {message}")


def _read(path) -> _Saved:
    """Read and check the whole file: bounded read, header schema, the declared arrays.

    Nothing is allocated beyond what the file's own bytes account for (minicnn.untrusted).
    """
    path = os.fspath(path)
    arrays = untrusted.read_npz(path, MAX_FILE_BYTES, what="minicnn save file")
    if HEADER_KEY not in arrays:
        raise ValueError(
            f"{path}: no {HEADER_KEY!r} header: not a file written by minicnn's "
            f"save() or save_weights(). Arrays found: {sorted(arrays)[:8]}"
        )
    raw = arrays.pop(HEADER_KEY)
    if raw.dtype.kind != "U" or raw.shape != ():
        raise ValueError(f"{path}: the {HEADER_KEY!r} header is not a text value.")
    header = untrusted.parse_json(str(raw[()]), f"{path}: header", MAX_HEADER_CHARS)
    _check_header(path, header)
    saved = _Saved(path, header, arrays)
    _check_arrays(saved)
    return saved


def _check_header(path, header) -> None:
    """Every field minicnn reads, with its type and range; ValueError naming the field."""

    def need(ok, where, expected):
        if not ok:
            raise ValueError(f"{path}: malformed header: {where} must be {expected}.")

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    need(isinstance(header, dict) and header.get("format") == FORMAT, "'format'", repr(FORMAT))
    version = header.get("format_version")
    if not is_int(version) or version > FORMAT_VERSION or version < 1:
        raise ValueError(
            f"{path}: format version {version!r}; this minicnn reads version "
            f"{FORMAT_VERSION} and older (the file may come from a newer minicnn)."
        )
    need(header.get("kind") in ("model", "weights"), "'kind'", "'model' or 'weights'")
    model = header.get("model")
    need(isinstance(model, dict), "'model'", "an object")
    need(isinstance(model.get("name"), str), "model.name", "a string")
    try:
        check_shape(model.get("input_shape"))
    except (TypeError, ValueError):
        need(False, "model.input_shape", "a list of positive ints")
    entries = header.get("layers")
    need(isinstance(entries, list) and entries, "'layers'", "a non-empty list")
    paths = set()
    for i, entry in enumerate(entries):
        where = f"layers[{i}]"
        need(isinstance(entry, dict), where, "an object")
        p = entry.get("path")
        need(isinstance(p, str) and _PATH.match(p) and p not in paths, f"{where}.path",
             "a unique name of lowercase letters, digits and '_'")
        paths.add(p)
        need(isinstance(entry.get("class_name"), str), f"{where}.class_name", "a string")
        need(isinstance(entry.get("config"), dict), f"{where}.config", "an object")
        need(entry.get("dtype") in (None, "float32", "float64"), f"{where}.dtype",
             "'float32' or 'float64'")
        weights = entry.get("weights")
        need(isinstance(weights, dict), f"{where}.weights", "an object")
        for key, spec in weights.items():
            w = f"{where}.weights.{key}"
            need(_PATH.match(key) is not None, w, "named with lowercase letters, digits and '_'")
            need(isinstance(spec, dict), w, "an object")
            shape = spec.get("shape")
            need(isinstance(shape, list) and all(is_int(d) and d >= 0 for d in shape),
                 f"{w}.shape", "a list of non-negative ints")
            need(spec.get("dtype") in ("float32", "float64"), f"{w}.dtype",
                 "'float32' or 'float64'")
            need(isinstance(spec.get("trainable", True), bool), f"{w}.trainable", "a bool")
        state = entry.get("state", {})
        need(isinstance(state, dict) and all(is_int(v) and v >= 0 for v in state.values()),
             f"{where}.state", "an object of non-negative ints")
    compiled = header.get("compile")
    if compiled is None:
        return
    need(isinstance(compiled, dict), "'compile'", "an object or null")
    need(isinstance(compiled.get("loss"), (str, dict)), "compile.loss",
         "a loss name or a serialised loss")
    metrics = compiled.get("metrics", [])
    need(isinstance(metrics, list) and all(isinstance(m, str) for m in metrics),
         "compile.metrics", "a list of strings")
    need(isinstance(compiled.get("optimizer"), dict), "compile.optimizer", "an object")
    iterations = compiled.get("iterations")
    need(is_int(iterations) and 0 <= iterations < 2**62, "compile.iterations",
         "a non-negative int")
    slots = compiled.get("slots")
    need(isinstance(slots, list) and all(isinstance(n, str) and _PATH.match(n) for n in slots),
         "compile.slots", "a list of slot names")


def _declared(saved: _Saved) -> dict[str, tuple[tuple[int, ...], str]]:
    """Array name -> (shape, dtype) as the header declares them; a slot per trainable weight."""
    out = {}
    compiled = saved.header.get("compile") or {}
    for entry in saved.layers:
        for key, spec in entry["weights"].items():
            declared = (tuple(spec["shape"]), spec["dtype"])
            out[f"layers/{entry['path']}/{key}"] = declared
            if spec.get("trainable", True):
                for name in compiled.get("slots", []):
                    out[f"optimizer/{name}/{entry['path']}/{key}"] = declared
    return out


def _check_arrays(saved: _Saved) -> None:
    """Every declared array present with its shape and dtype, finite; nothing extra."""
    declared = _declared(saved)
    missing = [k for k in declared if k not in saved.arrays]
    extra = [k for k in saved.arrays if k not in declared]
    if missing:
        raise saved.fail(
            f"corrupt file: array(s) {missing[:5]} declared in the header are missing."
        )
    if extra:
        raise saved.fail(f"corrupt file: array(s) {extra[:5]} are not declared in the header.")
    for key, (shape, dtype) in declared.items():
        a = saved.arrays[key]
        if a.shape != shape or a.dtype != np.dtype(dtype):
            raise saved.fail(
                f"corrupt file: array {key!r} is {a.dtype.name} {a.shape}, the "
                f"header declares {dtype} {shape}."
            )
        if a.size and not (np.isfinite(a.min()) and np.isfinite(a.max())):
            raise saved.fail(f"array {key!r} holds NaN or inf values.")


def _match_layers(saved: _Saved, ours, name) -> list[tuple[Layer, list[np.ndarray]]]:
    """(layer, arrays in weight_names order) for each of the layers `ours` of model `name`,
    after checking the match."""
    theirs = saved.layers
    if len(ours) != len(theirs):
        raise saved.fail(
            f"the file holds {len(theirs)} layers ({', '.join(e['class_name'] for e in theirs)})"
            f" but model {name!r} has {len(ours)} "
            f"({', '.join(type(x).__name__ for x in ours)})."
        )
    staged = []
    for i, (layer, entry) in enumerate(zip(ours, theirs, strict=True)):
        if type(layer).__name__ != entry["class_name"]:
            raise saved.fail(
                f"layer {i} is {entry['class_name']} ({entry['path']!r}) in the "
                f"file but {type(layer).__name__} ({layer.name!r}) in the model."
            )
        if list(entry["weights"]) != layer.weight_names:
            raise saved.fail(
                f"layer {layer.name!r} ({type(layer).__name__}, position {i}) has "
                f"weights {layer.weight_names}, the file has "
                f"{list(entry['weights'])}."
            )
        ws = []
        for key in layer.weight_names:
            found = saved.arrays[f"layers/{entry['path']}/{key}"]
            expected = layer.params[key].shape
            if found.shape != expected:
                raise saved.fail(
                    f"layer {layer.name!r} ({type(layer).__name__}, position {i})"
                    f" weight {key!r}: expected shape {expected}, found "
                    f"{found.shape} in the file."
                )
            ws.append(found)
        staged.append((layer, ws))
    return staged


# --- loading ---------------------------------------------------------------------------------
def load_weights(model, path) -> None:
    """Set model's weights from a file written by save_weights() or save().

    The model must be built with the same layers (class by class, shape by shape); nothing is
    written unless the whole file matches. Optimizer state is not touched (use load_model).
    """
    if not _is_model(model):
        raise TypeError(f"load_weights expects a minicnn Sequential model. Received: {model!r}")
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built: build it (model.build(input_shape)"
            f" or input_shape= on the first layer) before load_weights({path!r})."
        )
    saved = _read(path)
    staged = _match_layers(saved, model.layers, model.name)
    for layer, ws in staged:  # nothing below can fail: shapes and finiteness are checked
        for key, w in zip(layer.weight_names, ws, strict=True):
            layer.params[key][...] = w


@dataclass
class SavedModel:
    """What a file written by save() holds, rebuilt: built layers with their weights and state,
    and, if the model was compiled, its loss, metrics and optimizer (state restored).
    minicnn.load_model assembles the Sequential from it."""

    name: str
    input_shape: tuple[int, ...]
    layers: list
    loss: str | None = None
    metrics: list | None = None
    optimizer: object = None


def read_model(path, custom_objects=None) -> SavedModel:
    """Read, check and rebuild what save() wrote (see SavedModel); ValueError naming the file
    for anything wrong with it. Nothing is built before every shape is known to match."""
    saved = _read(path)
    if saved.header["kind"] != "model":
        raise saved.fail(
            "holds weights only (written by save_weights): build the model and "
            "call model.load_weights(path)."
        )
    if custom_objects is not None and not isinstance(custom_objects, dict):
        raise TypeError(f"custom_objects must be a dict {{class name: Layer subclass}}. "
                        f"Received: {custom_objects!r}")
    input_shape = check_shape(saved.header["model"]["input_shape"])
    layers = [_layer_from_entry(saved, i, e, custom_objects or {})
              for i, e in enumerate(saved.layers)]
    # Every weight shape the layers would create is compared with the file's arrays before
    # anything is built: a header asking for 400,000,000 filters allocates nothing.
    shape = input_shape
    for i, (layer, entry) in enumerate(zip(layers, saved.layers, strict=True)):
        try:
            out_shape = layer.compute_output_shape(shape)
            check_shape(out_shape, "output shape")
        except ValueError as e:
            raise saved.fail(
                f"layer {i} ({entry['class_name']}): cannot take inputs of shape "
                f"{(None, *shape)}: {e}"
            ) from e
        expected = {k: tuple(v) for k, v in layer.weight_shapes(shape).items()}
        found = {k: tuple(spec["shape"]) for k, spec in entry["weights"].items()}
        if expected != found:
            raise saved.fail(
                f"layer {i} ({entry['class_name']}, {entry['path']!r}): its config makes "
                f"weights {expected}, but the file holds {found}."
            )
        for attr in entry.get("state", {}):
            if attr not in _state_attrs(layer):
                raise saved.fail(f"layer {i} ({entry['class_name']}): unknown state {attr!r}.")
        shape = out_shape
    compiled = saved.header.get("compile")
    optimizer = _optimizer_from(saved) if compiled else None
    if compiled:
        from minicnn import losses

        try:
            losses.get(compiled["loss"])
        except ValueError as e:
            raise saved.fail(f"cannot restore the compile state: {e}") from e
    shape = input_shape
    for layer in layers:
        # A fixed generator, so rebuilding leaves minicnn's global random stream alone; the
        # values it draws are overwritten just below.
        layer.build_for(shape, rng=np.random.default_rng(0))
        shape = layer.compute_output_shape(shape)
    name = saved.header["model"]["name"]
    for layer, ws in _match_layers(saved, layers, name):
        for key, w in zip(layer.weight_names, ws, strict=True):
            layer.params[key][...] = w
    for layer, entry in zip(layers, saved.layers, strict=True):
        for attr, value in entry.get("state", {}).items():
            setattr(layer, attr, int(value))
    if optimizer is not None:
        _restore_optimizer_state(saved, layers, optimizer)
    return SavedModel(name, input_shape, layers,
                      loss=compiled["loss"] if compiled else None,
                      metrics=(compiled.get("metrics") or None) if compiled else None,
                      optimizer=optimizer)


def _layer_from_entry(saved, i, entry, custom_objects) -> Layer:
    name = entry["class_name"]
    cls = custom_objects.get(name) or (
        getattr(layers_module, name, None) if name in layers_module.__all__ else None
    )
    if not (isinstance(cls, type) and issubclass(cls, Layer)) or cls is Layer:
        raise saved.fail(
            f"layer {i} has unknown class {name!r}; load_model rebuilds the "
            f"classes in minicnn.layers, or pass custom_objects={{{name!r}: cls}}."
        )
    config = dict(entry["config"])
    for key, default in _INIT_DEFAULTS.items():
        if key in config and not _known_initializer(config[key]):
            config[key] = default
    try:
        return cls.from_config({**config, "dtype": entry.get("dtype")})
    except (TypeError, ValueError) as e:
        raise saved.fail(
            f"layer {i} ({name}) cannot be rebuilt from its config {config}: {e}"
        ) from e


def _known_initializer(name) -> bool:
    if not isinstance(name, (str, dict)):
        return False
    try:
        initializers.get(name)
    except (TypeError, ValueError):
        return False
    return True


def _optimizer_from(saved):
    """The saved optimizer, its settings checked by its constructor (finite, in range)."""
    try:
        return optimizers.from_config(saved.header["compile"]["optimizer"])
    except (TypeError, ValueError) as e:
        raise saved.fail(f"cannot restore the optimizer: {e}") from e


def _restore_optimizer_state(saved, layers, optimizer) -> None:
    compiled = saved.header["compile"]
    iterations = int(compiled["iterations"])
    slots = list(compiled["slots"])
    if slots and slots != list(optimizer.slot_names):
        raise saved.fail(
            f"optimizer {compiled['optimizer'].get('name')} has slots "
            f"{list(optimizer.slot_names)}, the file has {slots}."
        )
    if iterations and optimizer.slot_names and not slots:
        raise saved.fail(f"optimizer state: {iterations} iterations but no slot arrays.")
    params = [layer.params[k] for layer in layers for k in layer.trainable_names]
    paths = _slot_paths(layers, _layer_paths(layers))
    state = {"iterations": iterations}
    for name in slots:
        for i, p in enumerate(paths):
            state[f"{name}_{i}"] = saved.arrays[f"optimizer/{name}/{p}"]
    try:
        optimizer.set_state(state, params)
    except (TypeError, ValueError) as e:
        raise saved.fail(f"optimizer state: {e}") from e
