"""``minicnn parity --keras-backend all``: the suite against each Keras backend, each in a fresh
process (Keras picks its backend once, at import), merged into one table with a column per
backend, followed by the rows where Keras's backends disagree *with each other* by more than
the row's tolerance, each explained by a documented backend difference or failing.

Each child is ``python -m reference --keras-backend NAME --json ... --tensors ...`` with
KERAS_BACKEND=NAME: its JSON holds the rows and the environment, its .npz Keras's side of every
comparison, which is what the backends are compared on here. (The inputs and weights are the
same in every child: the suite seeds minicnn, and the Keras twins copy minicnn's weights.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from itertools import combinations

from reference import report as rep
from reference import tolerances
from reference.report import Row, errors

NAMES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


def child_args(args, backend: str, json_path: str | None, tensors_path: str | None) -> list:
    """The command line of the child that runs the suite against `backend`."""
    out = [sys.executable, "-m", "reference", "--keras-backend", backend]
    out += ["--model", args.model, "--seeds", str(args.seeds), "--epochs", str(args.epochs)]
    out += ["--backend", args.backend]
    out += ["--quick"] if args.quick else []
    out += ["--steps", str(args.steps)] if args.steps is not None else []
    out += ["--mutant", args.mutant] if args.mutant else []
    out += ["--markdown"] if args.markdown else []
    out += ["--json", json_path] if json_path else []
    out += ["--tensors", tensors_path] if tensors_path else []
    return out


def _spawn(cmd: list, backend: str, capture: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, KERAS_BACKEND=backend)
    print(f"[parity] Keras on {backend}: a fresh process", file=sys.stderr, flush=True)
    # stderr (the progress log, tracebacks) goes straight through; stdout is the child's table
    return subprocess.run(cmd, env=env, stdout=subprocess.PIPE if capture else None, text=True)


def run(args, backends) -> int:
    """Run the suite against each backend in its own process; print one report."""
    if len(backends) == 1:  # this process already runs Keras on another backend
        proc = _spawn(child_args(args, backends[0], args.json, args.tensors), backends[0], True)
        sys.stdout.write(proc.stdout)
        sys.stdout.flush()
        return proc.returncode
    docs, tensors = {}, {}
    with tempfile.TemporaryDirectory(prefix="minicnn-parity-") as tmp:
        for b in backends:
            j, t = os.path.join(tmp, f"{b}.json"), os.path.join(tmp, f"{b}.npz")
            proc = _spawn(child_args(args, b, j, t), b, True)
            if os.path.exists(j) and os.path.exists(t):
                with open(j, encoding="utf-8") as f:
                    docs[b] = json.load(f)
                tensors[b] = rep.read_tensors(t)
            else:
                docs[b] = _crashed(b, proc.returncode)
                tensors[b] = {}
    cross = cross_backend_rows(docs, tensors, backends)
    print("\n".join(report_lines(args, docs, cross, backends)))
    ok = all(d["ok"] for d in docs.values()) and all(r.ok for r in cross)
    if args.json:
        rep.write_doc(
            {
                "ok": ok,
                "keras_backends": list(backends),
                "rows": [r for b in backends for r in docs[b]["rows"]],
                "cross_backend": [vars(r) for r in cross],
                "environment": {b: docs[b]["environment"] for b in backends},
                "extras": {b: docs[b]["extras"] for b in backends},
            },
            args.json,
        )
        print(f"wrote {args.json}")
    sys.stdout.flush()
    return 0 if ok else 1


def _crashed(backend: str, code: int) -> dict:
    row = Row(
        "error",
        f"the Keras {backend} process exited with status {code}",
        "",
        float("nan"),
        float("nan"),
        0.0,
        False,
        "see its traceback above",
        keras_backend=backend,
    )
    return {"ok": False, "rows": [vars(row)], "extras": {}, "environment": {}}


def _tolerances(doc: dict) -> dict:
    """key -> tolerance of every row and every layer-zoo detail row of one backend's run."""
    rows = doc["rows"] + doc["extras"].get("layers_detail", [])
    return {f"{r['section']} | {r['tensor']}": float(r["tol"]) for r in rows}


def explanation(key: str, a: str, b: str):
    """The documented backend difference that accounts for backends a and b disagreeing on
    row `key`, or None."""
    for d in tolerances.BACKEND_DIFFERENCES:
        if d.explains and re.search(d.explains, key) and (a in d.backends) != (b in d.backends):
            return d
    return None


def cross_backend_rows(docs: dict, tensors: dict, backends) -> list[Row]:
    """One row per (tensor, pair of backends) where Keras's outputs differ by more than the
    row's tolerance (the larger of the two backends'): ok when a documented difference
    explains it. max rel = max |a - b| / max |b| per array, the worst array."""
    tols = {b: _tolerances(docs[b]) for b in backends}
    out = []
    for a, b in combinations(backends, 2):
        for key in tensors[a]:
            if key not in tensors[b] or key not in tols[a] or key not in tols[b]:
                continue
            xs, ys = tensors[a][key], tensors[b][key]
            if len(xs) != len(ys) or any(x.shape != y.shape for x, y in zip(xs, ys)):
                max_abs, max_rel = float("inf"), float("inf")
            else:
                errs = [errors(x, y) for x, y in zip(xs, ys)]
                max_abs, max_rel = max(e[0] for e in errs), max(e[1] for e in errs)
            tol = max(tols[a][key], tols[b][key])
            if max_rel <= tol:
                continue
            d = explanation(key, a, b)
            section, tensor = key.split(" | ", 1)
            out.append(
                Row(
                    section,
                    tensor,
                    " + ".join(str(x.shape) for x in xs[:1]) + (" ..." if len(xs) > 1 else ""),
                    max_abs,
                    max_rel,
                    tol,
                    d is not None,
                    f"documented: {d.key}" if d else "not documented: a new backend difference?",
                    d.key if d else "",
                    f"{b} vs {a}",
                )
            )
    return out


def merged_table_lines(docs: dict, backends, markdown: bool = False) -> list[str]:
    """One line per row key (first seen order), one column per backend: 'max rel  ok'."""
    keys, info = [], {}
    for b in backends:
        for r in docs[b]["rows"]:
            key = f"{r['section']} | {r['tensor']}"
            if key not in info:
                keys.append(key)
                info[key] = {"section": r["section"], "tensor": r["tensor"], "shape": r["shape"]}
            info[key][b] = r
    header = ["section", "tensor", "shape", "tolerance", *backends]
    cells = []
    for key in keys:
        i = info[key]
        tols = {float(i[b]["tol"]) for b in backends if b in i}
        same_tol = len(tols) == 1
        row = [i["section"], i["tensor"], i["shape"], _num(tols.pop()) if same_tol else "per cell"]
        for b in backends:
            r = i.get(b)
            if r is None:
                row.append("-")
                continue
            status = "FAIL" if not r["ok"] else ("ok*" if r.get("known") else "ok")
            tol = "" if same_tol else f" / {_num(float(r['tol']))}"
            row.append(f"{_num(float(r['max_rel']))}{tol} {status}")
        cells.append(row)
    return _lines(header, cells, markdown, right=set(range(3, len(header))))


def cross_table_lines(cross: list[Row], markdown: bool = False) -> list[str]:
    header = ["section", "tensor", "keras backends", "max abs", "max rel", "tolerance", "why"]
    cells = [
        [
            r.section,
            r.tensor,
            r.keras_backend,
            _num(r.max_abs),
            _num(r.max_rel),
            _num(r.tol),
            r.note if r.ok else f"FAIL: {r.note}",
        ]
        for r in cross
    ]
    return _lines(header, cells, markdown, right={3, 4, 5})


def facts_table_lines(docs: dict, backends, markdown: bool = False) -> list[str]:
    facts = [d["extras"].get("backend_facts", {}) for d in docs.values()]
    labels = list(dict.fromkeys(k for f in facts for k in f))
    cells = [
        [label]
        + [
            docs[b]["extras"].get("backend_facts", {}).get(label, {}).get("value", "-")
            for b in backends
        ]
        for label in labels
    ]
    return _lines(["what Keras computes", *backends], cells, markdown, right=set())


def _num(v: float) -> str:
    return rep._num(v)


def _lines(header, cells, markdown: bool, right: set) -> list[str]:
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return out + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    widths = [max(len(str(c[i])) for c in [header, *cells]) for i in range(len(header))]

    def fmt(c):
        return "  ".join(
            s.rjust(w) if i in right else s.ljust(w) for i, (s, w) in enumerate(zip(c, widths))
        ).rstrip()

    return [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(c) for c in cells]


def report_lines(args, docs: dict, cross: list[Row], backends) -> list[str]:
    """The whole merged report."""
    from reference.sections.statistics import statistics_lines
    from reference.sections.trajectory import divergence_lines

    envs = {b: docs[b]["environment"] for b in backends}
    any_env = next((e for e in envs.values() if e), {})
    out = [
        f"minicnn parity: {args.model} model{' (quick)' if args.quick else ''}, against Keras "
        f"on {', '.join(backends)} (a fresh process each)"
        + (f", against the BROKEN twin '{args.mutant}'" if args.mutant else ""),
        "; ".join(rep.versions_line(envs[b], b) for b in backends if envs[b])
        + (
            f"; NumPy {any_env.get('numpy')}, Numba {any_env.get('numba')}; minicnn backend(s): "
            f"{', '.join(any_env.get('minicnn_backends_compared', []))}; "
            f"{any_env.get('cpu_count')} CPUs"
        ),
    ]
    off = [m for b in backends if envs[b] for m in rep.version_mismatches(envs[b], b)]
    if off:
        out.append(
            f"NOTE: not the pinned versions the tolerances were set against "
            f"(reference/constraints.txt): {', '.join(dict.fromkeys(off))}"
        )
    out += [
        f"data: {next((d['extras'].get('data') for d in docs.values() if d['extras']), '?')}",
        "each cell: max rel = max|minicnn - keras| / max|keras| against Keras on that backend, "
        "and ok when within the tolerance (ok* = ok given a documented backend difference)",
        "",
    ]
    out += merged_table_lines(docs, backends, args.markdown)
    out += [
        "",
        "Where Keras's backends disagree with each other by more than the tolerance "
        "(max rel of Keras's tensors, backend against backend):",
    ]
    out += cross_table_lines(cross, args.markdown) if cross else ["  nowhere"]
    out += ["", "What Keras computes on each backend (reference/sections/backend_facts.py):"]
    out += facts_table_lines(docs, backends, args.markdown)
    for b in backends:
        extras = docs[b]["extras"]
        if "trajectory" in extras:
            out += ["", f"[{b}] " + divergence_lines(extras["trajectory"])[0]]
            out += divergence_lines(extras["trajectory"])[1:]
        if "statistics" in extras:
            out += ["", f"[{b}] " + statistics_lines(extras["statistics"])[0]]
            out += statistics_lines(extras["statistics"])[1:]
    from reference.tolerances import footer_lines

    known = {r.get("known") for d in docs.values() for r in d["rows"] if r.get("known")}
    out += footer_lines(known | {r.known for r in cross if r.known}, backends)
    n_rows = {b: len(docs[b]["rows"]) for b in backends}
    bad = {b: sum(1 for r in docs[b]["rows"] if not r["ok"]) for b in backends}
    starred = sum(1 for d in docs.values() for r in d["rows"] if r["ok"] and r.get("known"))
    unexplained = [r for r in cross if not r.ok]
    secs = sum(float(e.get("seconds", 0)) for e in envs.values())
    out += [
        "",
        ", ".join(
            f"{NAMES[b]}: {n_rows[b]} rows, {'all ok' if not bad[b] else f'{bad[b]} FAIL'}"
            for b in backends
        )
        + (f" ({starred} ok* by a documented backend difference)" if starred else "")
        + f"; {len(cross)} cross-backend disagreements, "
        + ("all documented" if not unexplained else f"{len(unexplained)} NOT documented: FAIL")
        + f" ({secs:.0f} s)",
    ]
    return out
