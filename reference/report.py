"""The parity report: one row per compared tensor, printed as a table or written as JSON.

A row says how far minicnn's tensor is from Keras's:

    max abs = max |minicnn - keras|
    max rel = max abs / max |keras|       (relative to the tensor's scale, so the many entries
                                           near zero do not blow it up)
    ok      = max rel <= tolerance        (the regime's named constant, reference/tolerances.py)
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class Row:
    """One compared tensor. ``tol`` bounds ``max_rel``; ``note`` is free text (may be empty)."""

    section: str
    tensor: str
    shape: str
    max_abs: float
    max_rel: float
    tol: float
    ok: bool
    note: str = ""


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
    rows = [compare(section, tensor, a, b, tol) for a, b in zip(ours, theirs, strict=True)]
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
            "ok" if r.ok else "FAIL",
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
            f"{_num(r.max_rel)} | {_num(r.tol)} | {'ok' if r.ok else '**FAIL**'} |"
        )
    return lines


# --- environment and JSON ---------------------------------------------------------------------
def environment() -> dict:
    """Versions, backends and thread counts of this run (what a reader needs to reproduce it)."""
    import keras
    import numba
    import tensorflow as tf

    import minicnn

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "tf_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: TF's default)"),
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "minicnn": minicnn.__version__,
        "minicnn_backend": minicnn.get_backend(),
        "minicnn_floatx": minicnn.floatx(),
    }
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
    doc = {
        "ok": report.ok,
        "rows": [asdict(r) for r in report.rows],
        "extras": report.extras,
        "environment": report.environment,
    }
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".parity-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_jsonable(doc), f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
