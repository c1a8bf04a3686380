"""The parity report: one row per compared tensor, printed as a table or written as JSON.

A row says how far minicnn's tensor is from Keras's:

    max abs = max |minicnn - keras|
    max rel = max abs / max |keras|       (relative to the tensor's scale, so the many entries
                                           near zero do not blow it up)
    ok      = max rel <= tolerance        (the regime's named constant, reference/tolerances.py)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import tempfile
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class Row:
    """One compared tensor. ``tol`` bounds ``max_rel``; ``note`` is free text (may be empty);
    ``known``: the key of the documented backend difference (tolerances.BACKEND_DIFFERENCES)
    that this row's ok relies on, else empty; ``keras_backend``: the Keras backend compared."""

    section: str
    tensor: str
    shape: str
    max_abs: float
    max_rel: float
    tol: float
    ok: bool
    note: str = ""
    known: str = ""
    keras_backend: str = ""

    @property
    def key(self) -> str:
        return f"{self.section} | {self.tensor}"

    @property
    def status(self) -> str:
        return "FAIL" if not self.ok else ("ok*" if self.known else "ok")


@dataclass
class Report:
    """All rows of a run, plus free-form extra tables (trajectory, statistics) and the setup."""

    rows: list[Row] = field(default_factory=list)
    extras: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]

    def extend(self, rows) -> None:
        self.rows.extend(rows)


# --- Keras's side of every comparison, kept for the cross-backend table -----------------------
_recorded: dict | None = None  # key -> list of float32 arrays, while recording
_scope: list[str] = []


@contextlib.contextmanager
def recording() -> dict:
    """Inside, every compare() / compare_many() / record() keeps Keras's tensor under its row's
    key (scoped, see ``scope``); yields the dict. ``minicnn parity --keras-backend all`` saves
    it per backend and compares Keras's backends with each other."""
    global _recorded
    saved, _recorded = _recorded, {}
    try:
        yield _recorded
    finally:
        _recorded = saved


@contextlib.contextmanager
def scope(prefix: str):
    """Prefix the recorded keys inside (the layer zoo's models reuse layer names)."""
    _scope.append(prefix)
    try:
        yield
    finally:
        _scope.pop()


def record(section: str, tensor: str, theirs) -> None:
    """Keep Keras's tensor(s) (an array or a list of arrays) for row (section, tensor)."""
    if _recorded is not None:
        arrays = theirs if isinstance(theirs, (list, tuple)) else [theirs]
        key = "".join(_scope) + f"{section} | {tensor}"
        _recorded[key] = [np.array(a, dtype=np.float32) for a in arrays]


def shape_str(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")" if len(shape) != 1 else f"({shape[0]},)"


def errors(ours, theirs) -> tuple[float, float]:
    """(max abs, max rel) of ours vs theirs, computed in float64 (exact for float32 inputs)."""
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(theirs, dtype=np.float64)
    if a.size == 0:
        return 0.0, 0.0
    max_abs = float(np.max(np.abs(a - b)))
    scale = float(np.max(np.abs(b)))
    if max_abs == 0.0:
        return 0.0, 0.0
    # a non-zero difference against an all-zero reference is infinitely wrong, not "0 %"
    return max_abs, (max_abs / scale if scale > 0 else math.inf)


def compare(section: str, tensor: str, ours, theirs, tol: float, note: str = "") -> Row:
    """The row for one tensor. Shapes must agree; NaN anywhere fails the row.

    Shapes: ours and theirs (any, equal) -> one Row.
    """
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    record(section, tensor, theirs)
    if ours.shape != theirs.shape:
        return Row(
            section,
            tensor,
            f"{shape_str(ours.shape)} vs {shape_str(theirs.shape)}",
            math.inf,
            math.inf,
            tol,
            False,
            note or "shapes differ",
        )
    if not (np.all(np.isfinite(ours)) and np.all(np.isfinite(theirs))):
        return Row(
            section,
            tensor,
            shape_str(ours.shape),
            math.nan,
            math.nan,
            tol,
            False,
            note or "NaN or inf",
        )
    max_abs, max_rel = errors(ours, theirs)
    return Row(section, tensor, shape_str(ours.shape), max_abs, max_rel, tol, max_rel <= tol, note)


def compare_many(
    section: str, tensor: str, ours: list, theirs: list, tol: float, note: str = ""
) -> Row:
    """One row for several arrays (e.g. every weight of a model): the worst array decides.

    max rel is each array's max abs over its own scale, then the maximum over arrays.
    """
    with not_recording():
        rows = [compare(section, tensor, a, b, tol) for a, b in zip(ours, theirs, strict=True)]
    record(section, tensor, list(theirs))
    n = sum(int(np.size(a)) for a in ours)
    worst = max(rows, key=lambda r: (not r.ok, r.max_rel))
    return Row(
        section,
        tensor,
        f"{len(rows)} arrays, {n:,} values",
        max(r.max_abs for r in rows),
        worst.max_rel,
        tol,
        all(r.ok for r in rows),
        note or worst.note,
    )


@contextlib.contextmanager
def not_recording():
    global _recorded
    saved, _recorded = _recorded, None
    try:
        yield
    finally:
        _recorded = saved


# --- text -------------------------------------------------------------------------------------
HEADER = ("section", "tensor", "shape", "max abs", "max rel", "tolerance", "ok")


def _num(v: float) -> str:
    if v == 0:
        return "0"
    if not math.isfinite(v):
        return str(v)
    return f"{v:.2e}"


def table_lines(rows: list[Row]) -> list[str]:
    """The report as a fixed-width text table, one line per row."""
    cells = [HEADER] + [
        (
            r.section,
            r.tensor,
            r.shape,
            _num(r.max_abs),
            _num(r.max_rel),
            _num(r.tol),
            r.status,
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    right = {3, 4, 5}

    def fmt(c):
        return "  ".join(
            s.rjust(w) if i in right else s.ljust(w) for i, (s, w) in enumerate(zip(c, widths))
        ).rstrip()

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(c) for c in cells[1:]]
    return lines


def markdown_lines(rows: list[Row]) -> list[str]:
    """The same table in Markdown (for the README)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        lines.append(
            f"| {r.section} | {r.tensor} | {r.shape} | {_num(r.max_abs)} | "
            f"{_num(r.max_rel)} | {_num(r.tol)} | {r.status if r.ok else '**FAIL**'} |"
        )
    return lines


# --- environment and JSON ---------------------------------------------------------------------
def package_versions() -> dict:
    """Installed versions of Keras and its three backends (None when not installed), read from
    the package metadata: nothing is imported."""
    from importlib import metadata

    out = {}
    for key, dists in VERSIONED.items():
        out[key] = None
        for dist in dists:
            try:
                out[key] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


# report key -> distributions that provide it (the first one installed wins)
VERSIONED = {
    "keras": ("keras",),
    "tensorflow": ("tensorflow-cpu", "tensorflow"),
    "jax": ("jax",),
    "jaxlib": ("jaxlib",),
    "torch": ("torch",),
    "numpy": ("numpy",),
}


CONSTRAINTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "constraints.txt")
# the pins that matter for a run against each Keras backend -> the environment key they pin
PINS_FOR = {
    "tensorflow": {"keras": "keras", "tensorflow-cpu": "tensorflow"},
    "jax": {"keras": "keras", "jax": "jax", "jaxlib": "jaxlib"},
    "torch": {"keras": "keras", "torch": "torch"},
}


def pinned_versions(path: str = CONSTRAINTS) -> dict[str, str]:
    """{distribution: version} from the constraints file's 'name==version' lines."""
    pins = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = (part.strip() for part in line.split("==", 1))
                pins[name.lower()] = version
    return pins


def version_mismatches(env: dict, backend: str, pins: dict | None = None) -> list[str]:
    """'torch 2.14.1 (pinned 2.13.0)' for every pin of this backend's run that env does not
    meet (a local label such as '+cpu' is ignored)."""
    pins = pinned_versions() if pins is None else pins
    out = []
    for dist, key in PINS_FOR[backend].items():
        have = env.get(key)
        want = pins.get(dist)
        if want is not None and (have or "").split("+")[0] != want:
            out.append(f"{key} {have or 'not installed'} (pinned {want})")
    return out


def versions_line(env: dict, backend: str) -> str:
    """'Keras 3.15.1 on JAX 0.10.2 (jaxlib 0.10.2)' and the like, from an environment dict."""
    on = {
        "tensorflow": f"TensorFlow {env.get('tensorflow')}",
        "jax": f"JAX {env.get('jax')} (jaxlib {env.get('jaxlib')})",
        "torch": f"PyTorch {env.get('torch')}",
    }[backend]
    return f"Keras {env.get('keras')} on {on}"


def environment() -> dict:
    """Versions, backends and thread counts of this run (what a reader needs to reproduce it)."""
    import numba

    import minicnn
    from reference._keras import BACKEND, keras, lib

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        **package_versions(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "minicnn": minicnn.__version__,
        "minicnn_backend": minicnn.get_backend(),
        "minicnn_floatx": minicnn.floatx(),
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
    }
    if BACKEND == "tensorflow":
        env["tf_intra_op_threads"] = lib.config.threading.get_intra_op_parallelism_threads()
        env["tf_inter_op_threads"] = lib.config.threading.get_inter_op_parallelism_threads()
        env["tf_onednn_opts"] = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: TF's default)")
    elif BACKEND == "torch":
        env["torch_threads"] = lib.get_num_threads()
    try:
        from threadpoolctl import threadpool_info

        env["blas"] = [
            {k: i.get(k) for k in ("internal_api", "version", "num_threads")}
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        ]
    except ImportError:  # pragma: no cover - threadpoolctl is a core dependency
        pass
    return env


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no inf/NaN
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return _jsonable(v.item())
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def write_json(report: Report, path: str) -> None:
    """Write rows, extras and environment to path atomically (temp file + os.replace)."""
    write_doc(
        {
            "ok": report.ok,
            "rows": [asdict(r) for r in report.rows],
            "extras": report.extras,
            "environment": report.environment,
        },
        path,
    )


def write_doc(doc: dict, path: str) -> None:
    """Write a JSON document atomically (non-finite floats as strings: JSON has none)."""

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(_jsonable(doc), f, indent=1)
            f.write("\n")

    _atomic_write(path, ".json", write)


def _atomic_write(path: str, suffix: str, write) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".parity-", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_tensors(tensors: dict, path: str) -> None:
    """Save recorded Keras tensors (key -> list of arrays) as one .npz, keys 'key#i'."""
    flat = {f"{key}#{i}": a for key, arrays in tensors.items() for i, a in enumerate(arrays)}

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **flat)

    _atomic_write(path, ".npz", write)


def read_tensors(path: str) -> dict:
    """The inverse of write_tensors: key -> list of arrays, in order."""
    out: dict = {}
    with np.load(path) as z:
        for name in z.files:
            key, i = name.rsplit("#", 1)
            out.setdefault(key, {})[int(i)] = z[name]
    return {key: [parts[i] for i in sorted(parts)] for key, parts in out.items()}
