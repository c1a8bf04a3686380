"""Saving and loading models: one `.npz` file holding a JSON header and named arrays.

    model.save("model.npz")                 # architecture + weights + compile/optimizer state
    model = minicnn.load_model("model.npz")  # training resumes exactly where it stopped
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

import contextlib
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from minicnn import initializers, optimizers
from minicnn import layers as layers_module
from minicnn.layers.base import Layer, snake_case
from minicnn.layers.dropout import Dropout
from minicnn.model import Sequential

FORMAT = "minicnn.npz"
FORMAT_VERSION = 1
HEADER_KEY = "__minicnn__"
# Integer attributes that are state, not config: what a layer needs to continue where it stopped.
_STATE_ATTRS = {Dropout: ("counter",)}
# A custom initializer callable cannot be named in JSON; it only shapes the weights at build
# time, and loading overwrites those, so the default stands in for it when rebuilding.
_INIT_DEFAULTS = {"kernel_initializer": "glorot_uniform", "bias_initializer": "zeros"}


# --- writing ---------------------------------------------------------------------------------
def atomic_write(path, write) -> None:
    """Call ``write(f)`` on a temp file beside ``path``, fsync it, then rename it over ``path``.

    Readers see the old file or the new one, never a part; on any error the temp file is
    removed and ``path`` is untouched. The new file gets the usual permissions (0666 & ~umask).
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"Cannot write {path}: folder {folder} does not exist.")
    if path.is_dir():
        raise IsADirectoryError(f"Cannot write {path}: it is a folder.")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every OS/filesystem, and not needed
    # for atomicity, so failures are ignored.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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


def _require_built(model, what) -> None:
    if not isinstance(model, Sequential):
        raise TypeError(f"{what} expects a minicnn Sequential model. Received: {model!r}")
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built, so it has no weights to save: "
            f"call build(input_shape), fit or predict first, or give the first "
            f"layer input_shape=."
        )


def _payload(model: Sequential, kind: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, arrays) describing model; kind 'model' adds state and the compile block."""
    from minicnn import __version__

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
        slot_paths = _slot_paths(model, paths)
        for name in opt.slot_names:
            for i, a in enumerate(opt.slots.get(name, [])):
                arrays[f"optimizer/{name}/{slot_paths[i]}"] = a
        compiled = {
            "loss": model.loss.name,
            "metrics": list(model.metrics),
            "optimizer": opt.get_config(),
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


def _state_attrs(layer) -> tuple[str, ...]:
    return next((attrs for cls, attrs in _STATE_ATTRS.items() if isinstance(layer, cls)), ())


def _slot_paths(model, paths) -> list[str]:
    """'<layer path>/<weight>' for each trainable parameter, in the optimizer's order."""
    return [
        f"{path}/{key}"
        for layer, path in zip(model.layers, paths, strict=True)
        for key in layer.trainable_names
    ]


def _save(model, path, kind) -> None:
    header, arrays = _payload(model, kind)
    arrays = {HEADER_KEY: np.array(json.dumps(header)), **arrays}
    atomic_write(path, lambda f: _write_npz(f, arrays))


def save_model(model: Sequential, path) -> None:
    """Write architecture, weights, compile state and optimizer state to ``path`` (.npz).

    Everything training needs to continue is kept: Adam's iterations and m/v slots, and each
    Dropout layer's seed and mask counter. The write is atomic.
    """
    _require_built(model, "save")
    _save(model, path, "model")


def save_weights(model: Sequential, path) -> None:
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
    """Read and check the whole file: zip, header, and the arrays the header declares."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path}: not a minicnn save file (not an .npz/zip archive, or truncated)."
        )
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}  # reading each member checks its CRC
    # A truncated or damaged member raises BadZipFile/zlib.error/EOFError/OSError; numpy
    # raises ValueError for a malformed .npy header or a pickled array.
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError) as e:
        raise ValueError(f"{path}: corrupt or truncated ({type(e).__name__}: {e}).") from e
    if HEADER_KEY not in arrays:
        raise ValueError(
            f"{path}: no {HEADER_KEY!r} header: not a file written by minicnn's "
            f"save() or save_weights(). Arrays found: {sorted(arrays)[:8]}"
        )
    raw = arrays.pop(HEADER_KEY)
    try:
        header = json.loads(str(raw[()]))
    except (ValueError, IndexError) as e:
        raise ValueError(f"{path}: the {HEADER_KEY!r} header is not valid JSON ({e}).") from e
    try:
        _check_header(path, header)
        saved = _Saved(path, header, arrays)
        _check_arrays(saved)
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise ValueError(f"{path}: malformed header ({type(e).__name__}: {e}).") from e
    return saved


def _check_header(path, header) -> None:
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path}: header does not say format {FORMAT!r}.")
    version = header["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ValueError(
            f"{path}: format version {version!r}; this minicnn reads version "
            f"{FORMAT_VERSION} and older (the file may come from a newer minicnn)."
        )
    if header["kind"] not in ("model", "weights"):
        raise ValueError(
            f"{path}: unknown kind {header['kind']!r} (expected 'model' or 'weights')."
        )
    if not isinstance(header["layers"], list):
        raise TypeError("'layers' must be a list")
    for entry in header["layers"]:
        for key in ("path", "class_name", "config", "weights"):
            entry[key]  # noqa: B018  (KeyError -> malformed header)
        for spec in entry["weights"].values():
            tuple(spec["shape"]), np.dtype(spec["dtype"])
    tuple(header["model"]["input_shape"]), header["model"]["name"]
    compiled = header.get("compile")
    if compiled is not None:
        for key in ("loss", "optimizer", "iterations", "slots"):
            compiled[key]  # noqa: B018
        int(compiled["iterations"]), list(compiled["slots"]), dict(compiled["optimizer"])


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
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise saved.fail(f"array {key!r} holds NaN or inf values.")


def _match_layers(saved: _Saved, model: Sequential) -> list[tuple[Layer, list[np.ndarray]]]:
    """(layer, arrays in weight_names order) for every layer, after checking the match."""
    ours, theirs = model.layers, saved.layers
    if len(ours) != len(theirs):
        raise saved.fail(
            f"the file holds {len(theirs)} layers ({', '.join(e['class_name'] for e in theirs)})"
            f" but model {model.name!r} has {len(ours)} "
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
def load_weights(model: Sequential, path) -> None:
    """Set model's weights from a file written by save_weights() or save().

    The model must be built with the same layers (class by class, shape by shape); nothing is
    written unless the whole file matches. Optimizer state is not touched (use load_model).
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"load_weights expects a minicnn Sequential model. Received: {model!r}")
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built: build it (model.build(input_shape)"
            f" or input_shape= on the first layer) before load_weights({path!r})."
        )
    saved = _read(path)
    staged = _match_layers(saved, model)
    for layer, ws in staged:  # nothing below can fail: shapes and finiteness are checked
        for key, w in zip(layer.weight_names, ws, strict=True):
            layer.params[key][...] = w


def load_model(path, custom_objects=None) -> Sequential:
    """Rebuild a model written by save(): architecture, weights, compile and optimizer state.

    Args:
        path: the .npz file.
        custom_objects: optional {class name: Layer subclass} for layers outside minicnn.layers.

    Returns: the model, compiled if it was compiled when saved; fit() continues exactly where
    the saved model stopped. The global random generator is not touched.
    """
    saved = _read(path)
    if saved.header["kind"] != "model":
        raise saved.fail(
            "holds weights only (written by save_weights): build the model and "
            "call model.load_weights(path)."
        )
    input_shape = tuple(int(d) for d in saved.header["model"]["input_shape"])
    rebuilt, shape = [], input_shape
    for i, entry in enumerate(saved.layers):
        layer = _layer_from_entry(saved, i, entry, custom_objects or {})
        try:
            # A fixed generator, so rebuilding leaves minicnn's global random stream alone;
            # the values it draws are overwritten just below.
            layer.build_for(shape, rng=np.random.default_rng(0))
            shape = layer.compute_output_shape(shape)
        except ValueError as e:
            raise saved.fail(
                f"layer {i} ({entry['class_name']}): cannot be built for input "
                f"shape {(None, *shape)}: {e}"
            ) from e
        rebuilt.append(layer)
    model = Sequential(rebuilt, name=saved.header["model"]["name"])
    model.build(input_shape)
    for layer, ws in _match_layers(saved, model):
        for key, w in zip(layer.weight_names, ws, strict=True):
            layer.params[key][...] = w
    for layer, entry in zip(model.layers, saved.layers, strict=True):
        for attr, value in entry.get("state", {}).items():
            if attr not in _state_attrs(layer):
                raise saved.fail(f"layer {layer.name!r}: unknown state {attr!r}.")
            setattr(layer, attr, int(value))
    if saved.header.get("compile"):
        _restore_compile(saved, model)
    return model


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
        return cls(**config, dtype=entry.get("dtype"))
    except (TypeError, ValueError) as e:
        raise saved.fail(
            f"layer {i} ({name}) cannot be rebuilt from its config {config}: {e}"
        ) from e


def _known_initializer(name) -> bool:
    try:
        initializers.get(name)
    except ValueError:
        return False
    return isinstance(name, str)


def _restore_compile(saved, model) -> None:
    compiled = saved.header["compile"]
    try:
        optimizer = optimizers.from_config(compiled["optimizer"])
        model.compile(
            loss=compiled["loss"], optimizer=optimizer, metrics=compiled.get("metrics") or None
        )
    except (KeyError, TypeError, ValueError) as e:
        raise saved.fail(f"cannot restore compile state {compiled}: {e}") from e
    iterations = int(compiled["iterations"])
    slots = list(compiled["slots"])
    if slots and slots != list(optimizer.slot_names):
        raise saved.fail(
            f"optimizer {compiled['optimizer'].get('name')} has slots "
            f"{list(optimizer.slot_names)}, the file has {slots}."
        )
    if iterations and optimizer.slot_names and not slots:
        raise saved.fail(f"optimizer state: {iterations} iterations but no slot arrays.")
    params, _ = model.trainable_params()
    paths = _slot_paths(model, _layer_paths(model.layers))
    state = {"iterations": iterations}
    for name in slots:
        for i, p in enumerate(paths):
            state[f"{name}_{i}"] = saved.arrays[f"optimizer/{name}/{p}"]
    optimizer.set_state(state, params)
