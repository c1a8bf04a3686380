"""Training speed of minicnn and its anchors, on the same data and machine, in one run.

    python -m benchmarks.train_epoch [--json PATH] [--quick] [--libs minicnn,keras-tf,...]

Trains the seed model and the deep model (batch 128, Adam, shuffled) with each library:

    minicnn        minicnn's Numba backend
    keras-tf       Keras 3 on TensorFlow (also under TF_ENABLE_ONEDNN_OPTS=0/1 with --tf)
    keras-jax      Keras 3 on JAX (KERAS_BACKEND=jax; XLA-compiled train step)
    torch          PyTorch eager
    torch-compile  PyTorch with torch.compile (the first epoch carries the compile)

Each library runs in its own fresh process, all held to the same threads (--threads, default 2:
the process's CPUs, Numba's pool, TensorFlow's intra-op and inter-op pools, PyTorch's intra-op
and inter-op pools; XLA has no thread setting and sizes its pool from the CPUs), in alternated
rounds (all libraries once, then all again) so that a change in the machine's speed reaches
every library alike. A library that is not installed is skipped with one line (the anchors
are an optional extra: pip install -e '.[anchors]').

Printed per model, as a Markdown table: the median epoch after the first (the first carries
compilation and tracing; the median is over the later epochs of every round), predict time on
10,000 images (batch 128, after a warm-up), the worker's peak RSS, the first epoch, and each
library's time divided by minicnn's. Then, for minicnn alone: the start-up of `minicnn train`
with an empty Numba cache (cold) and a filled one (warm), and the peak RSS of the seed protocol
(`minicnn train`: 20,000 images, 6 epochs, validation on 10,000).

Data: real MNIST digits from minicnn.datasets when it has them (tiled to the sample count if
it only has the offline sample), else random images of the same shape; the report says which.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

SCHEMA = "minicnn.bench.train_epoch/2"
SEED_BATCH = 128
PREDICT_N = 10_000
TF_CONFIGS = {"default": None, "onednn0": "0", "onednn1": "1"}  # TF_ENABLE_ONEDNN_OPTS
INSTALL_ANCHORS = "pip install -e '.[anchors]'"


@dataclass(frozen=True)
class Library:
    """One column of the comparison: how its worker is started and what it needs installed."""

    key: str  # the worker's name and the --libs name
    label: str  # the table's row label
    needs: tuple[str, ...]  # modules that must be importable
    env: dict = field(default_factory=dict)  # set in the worker's environment


def libraries(tf_configs=("default",)) -> list[Library]:
    """minicnn, Keras on TensorFlow (one per TF configuration), Keras on JAX, PyTorch eager,
    torch.compile: the report's row order."""
    libs = [Library("minicnn", "minicnn", ("numba",))]
    for cfg in tf_configs:
        value = TF_CONFIGS[cfg]
        env = {"KERAS_BACKEND": "tensorflow"}
        key, label = "keras-tf", "Keras 3 on TensorFlow"
        if value is not None:
            env["TF_ENABLE_ONEDNN_OPTS"] = value
            key, label = f"{key}-{cfg}", f"{label} (TF_ENABLE_ONEDNN_OPTS={value})"
        libs.append(Library(key, label, ("keras", "tensorflow"), env))
    return libs + [
        Library("keras-jax", "Keras 3 on JAX", ("keras", "jax"), {"KERAS_BACKEND": "jax"}),
        Library("torch", "PyTorch eager", ("torch",)),
        Library("torch-compile", "PyTorch torch.compile", ("torch",)),
    ]


def missing(lib: Library) -> str | None:
    """Why lib cannot run here (None: it can). Looks the modules up without importing them."""
    absent = [m for m in lib.needs if importlib.util.find_spec(m) is None]
    if not absent:
        return None
    hint = f" ({INSTALL_ANCHORS})" if set(absent) & {"jax", "torch"} else ""
    return f"{' and '.join(absent)} not installed{hint}"


# --- data ---------------------------------------------------------------------------------------


def make_data(n_train: int, n_test: int):
    """(x_train, y_train, x_test, y_test, source): uint8 images (N, 28, 28), int labels (N,)."""
    try:
        import warnings

        from minicnn import datasets

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = datasets.load("mnist")
        reps, reps_te = -(-n_train // len(ds.x_train)), -(-n_test // len(ds.x_test))
        source = f"MNIST digits ({ds.source}"
        source += f", {len(ds.x_train)} tiled {reps}x)" if reps > 1 else ")"
        return (
            np.tile(ds.x_train, (reps, 1, 1))[:n_train],
            np.tile(ds.y_train, reps)[:n_train],
            np.tile(ds.x_test, (reps_te, 1, 1))[:n_test],
            np.tile(ds.y_test, reps_te)[:n_test],
            source,
        )
    except Exception as exc:  # noqa: BLE001 - any failure: time on random data instead
        rng = np.random.default_rng(0)
        return (
            rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, n_train),
            rng.integers(0, 256, (n_test, 28, 28), np.uint8),
            rng.integers(0, 10, n_test),
            f"random uint8 images ({type(exc).__name__})",
        )


def _as_float(x_uint8, y):
    """The seed notebook's preprocessing: float32 in [0, 1], (N, 28, 28, 1); one-hot labels."""
    x = x_uint8.reshape(-1, 28, 28, 1).astype(np.float32) / 255
    return x, np.eye(10, dtype=np.float32)[y]


# --- workers (each in its own process) ----------------------------------------------------------


def _predict_time(predict, x, repeats=3):
    predict(x[:1000])  # warm-up: compilation, tracing, buffers
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_minicnn(model_name, x, y, xt, epochs, threads):
    import minicnn
    from minicnn import architectures
    from minicnn.kernels import numba_config
    from minicnn.kernels.numba_config import blas_single_threaded

    minicnn.set_backend("numba")
    minicnn.set_random_seed(0)
    model = architectures.build(model_name)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=SEED_BATCH, epochs=epochs, verbose=0, seed=0)
    predict_s = _predict_time(lambda a: model.predict(a, batch_size=SEED_BATCH), xt)
    with blas_single_threaded():  # what the model ran under; report BLAS's thread count then
        from threadpoolctl import threadpool_info

        blas = sorted({d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"})
    return {
        "epoch_s": model.epoch_times,
        "loss": history.history["loss"],
        "accuracy": history.history["accuracy"],
        "predict_s": predict_s,
        "threads": {"numba": numba_config.num_threads(), "blas_in_fit": blas,
                    "threading_layer": "minicnn thread pool"},
    }


def train_keras(model_name, x, y, xt, epochs, threads):
    """Keras 3 on the backend KERAS_BACKEND names (set by the parent before the import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from benchmarks.machine import allowed_cpus

    threads_doc = {"xla": f"no thread setting; {len(allowed_cpus())} CPUs"}
    if keras.backend.backend() == "tensorflow":
        from benchmarks.machine import set_tf_threads, tf_onednn

        threads_doc = set_tf_threads(threads) | {"onednn": tf_onednn()}
    keras.utils.set_random_seed(0)
    L = keras.layers
    body = (
        [L.MaxPooling2D((2, 2)), L.Dropout(0.25), L.Flatten(), L.Dropout(0.5)]
        if model_name == "seed"
        else [L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)), L.Dropout(0.25),
              L.Flatten(), L.Dense(128, activation="relu"), L.Dropout(0.5)]
    )
    model = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(32, (3, 3), activation="relu"),
                              *body, L.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    times = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    history = model.fit(x, y, batch_size=SEED_BATCH, epochs=epochs, verbose=0, shuffle=True,
                        callbacks=[EpochTimer()])
    predict_s = _predict_time(lambda a: model.predict(a, batch_size=SEED_BATCH, verbose=0), xt)
    return {
        "epoch_s": times,
        "loss": history.history["loss"],
        "accuracy": history.history["accuracy"],
        "predict_s": predict_s,
        "threads": threads_doc,
        "backend": keras.backend.backend(),
    }


def _torch_model(nn, model_name):
    """The same layers as the Keras model, in PyTorch's NCHW order, Keras's initialisation."""
    if model_name == "seed":
        layers = [nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
                  nn.Dropout(0.5), nn.Linear(32 * 13 * 13, 10)]
    else:
        layers = [nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Dropout(0.25), nn.Flatten(), nn.Linear(64 * 12 * 12, 128), nn.ReLU(),
                  nn.Dropout(0.5), nn.Linear(128, 10)]
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)  # Keras's glorot_uniform and zero biases
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)  # logits: the softmax is in the loss, as Keras-TF fuses it


def train_torch(model_name, x, y, xt, epochs, threads, compiled=False):
    import torch

    from benchmarks.machine import set_torch_threads

    threads_doc = set_torch_threads(threads)
    torch.manual_seed(0)
    net = _torch_model(torch.nn, model_name)
    step = torch.compile(net) if compiled else net
    xs = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # (N, 1, 28, 28)
    ys = torch.from_numpy(y.argmax(1))
    xts = torch.from_numpy(xt).permute(0, 3, 1, 2).contiguous()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)  # Keras's epsilon
    loss_fn = torch.nn.CrossEntropyLoss()
    times, losses, accs = [], [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
        net.train()
        total, correct = 0.0, 0
        for idx in torch.randperm(len(xs)).split(SEED_BATCH):
            xb, yb = xs[idx], ys[idx]
            opt.zero_grad(set_to_none=True)
            logits = step(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)  # the running loss and accuracy Keras also keeps
            correct += int((logits.argmax(1) == yb).sum())
        times.append(time.perf_counter() - t0)
        losses.append(total / len(xs))
        accs.append(correct / len(xs))

    def predict(a):
        net.eval()
        with torch.no_grad():
            return torch.cat([step(b).softmax(1) for b in a.split(SEED_BATCH)])

    return {"epoch_s": times, "loss": losses, "accuracy": accs,
            "predict_s": _predict_time(predict, xts), "threads": threads_doc}


TRAINERS = {
    "minicnn": train_minicnn,
    "keras": train_keras,
    "torch": train_torch,
    "torch-compile": lambda *args: train_torch(*args, compiled=True),
}


def worker(key, model_name, data_dir, epochs, threads) -> dict:
    """Train with library ``key`` in this process; the numbers and the process's peak RSS."""
    from benchmarks.machine import pin_cpus

    cpus = pin_cpus(threads)  # before any library starts a thread pool
    x, y = np.load(f"{data_dir}/x.npy"), np.load(f"{data_dir}/y.npy")
    xt = np.load(f"{data_dir}/xt.npy")
    trainer = TRAINERS["keras" if key.startswith("keras") else key]
    out = trainer(model_name, x, y, xt, epochs, threads)
    out["cpus"] = cpus
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


# --- the parent: run everything, print, save -----------------------------------------------------


def _run(args, env=None, timeout=3600):
    """Run a Python child; return (seconds, the JSON of its last stdout line)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{args[:4]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def run_worker(lib: Library, model, data_dir, epochs, threads) -> dict:
    """One fresh process training ``model`` with ``lib``; its numbers, or {'error': ...}."""
    load_before = os.getloadavg()[0]  # other work on the machine shows here
    env = {**lib.env, "OMP_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads)}
    args = ["-m", "benchmarks.train_epoch", "--worker", lib.key, "--model", model,
            "--data", data_dir, "--epochs", str(epochs), "--threads", str(threads)]
    try:
        _, out = _run(args, env)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        return {"error": str(exc)[-1500:]}
    out["loadavg_1min"] = (load_before, os.getloadavg()[0])
    return out


def merge_rounds(runs: list[dict]) -> dict:
    """One result from the rounds of one library: the median of all epochs after each round's
    first, the median first epoch and predict time, the largest peak RSS."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[-1]["error"]}
    later = [t for r in ok for t in (r["epoch_s"][1:] or r["epoch_s"])]
    return dict(
        ok[-1],
        epoch_median_s=statistics.median(later),
        first_epoch_s=statistics.median(r["epoch_s"][0] for r in ok),
        predict_s=statistics.median(r["predict_s"] for r in ok),
        peak_rss_mb=max(r["peak_rss_mb"] for r in ok),
        rounds=[{k: r.get(k) for k in ("epoch_s", "predict_s", "loadavg_1min", "error")}
                for r in runs],
    )


def run_benchmark(libs, models, epochs, deep_epochs, n_train, threads, rounds, work,
                  log=print) -> dict:
    """Train each model with each library, ``rounds`` alternated rounds; a library that fails
    is reported and left out of the later rounds."""
    xtr, ytr, xte, _, source = make_data(n_train, PREDICT_N)
    x, y = _as_float(xtr, ytr)
    xt, _ = _as_float(xte, np.zeros(len(xte), int))
    for name, a in (("x", x), ("y", y), ("xt", xt)):
        np.save(f"{work}/{name}.npy", a)
    results = {}
    for model in models:
        e = epochs if model == "seed" else deep_epochs
        runs = {lib.key: [] for lib in libs}
        for r in range(rounds):
            for lib in libs:
                if runs[lib.key] and "error" in runs[lib.key][-1]:
                    continue
                log(f"  {model} model, round {r + 1}/{rounds}: {lib.label} ...")
                runs[lib.key].append(run_worker(lib, model, work, e, threads))
                if "error" in runs[lib.key][-1]:
                    log(f"    failed: {runs[lib.key][-1]['error'].strip().splitlines()[-1]}")
        results[model] = {key: merge_rounds(rs) for key, rs in runs.items()}
    return {"data": source, "n_train": n_train, "batch": SEED_BATCH, "threads": threads,
            "rounds": rounds, "epochs": {"seed": epochs, "deep": deep_epochs},
            "labels": {lib.key: lib.label for lib in libs}, "results": results}


# --- minicnn's start-up and memory ---------------------------------------------------------------

_STARTUP_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import minicnn
from minicnn import architectures
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
x = rng.random((256, 28, 28, 1), dtype=np.float32)
y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 256)]
minicnn.set_backend("numba")
model = architectures.seed_model()
model.compile(metrics=["accuracy"])
runs = []
for _ in range(2):
    t = time.perf_counter()
    model.fit(x, y, batch_size=128, epochs=1, verbose=0)
    model.evaluate(x, y, batch_size=128, verbose=0)
    runs.append(time.perf_counter() - t)
print(json.dumps({"import_s": t_import, "first_s": runs[0], "second_s": runs[1],
                  "compile_load_s": runs[0] - runs[1]}))
"""

_RSS_SCRIPT = r"""
import json, resource, sys, time
from minicnn.cli import main
t = time.perf_counter()
status = main(sys.argv[1:])
wall = time.perf_counter() - t
print(json.dumps({"status": status, "wall_s": wall,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def startup_and_memory(work, threads):
    """Cold and warm start of `minicnn train` (tiny run), compile/load seconds, peak RSS."""
    xtr, ytr, xte, yte, source = make_data(60_000, 10_000)
    full, tiny = f"{work}/mnist_full.npz", f"{work}/mnist_tiny.npz"
    np.savez(full, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    np.savez(tiny, x_train=xtr[:512], y_train=ytr[:512], x_test=xte[:256], y_test=yte[:256])
    cache = tempfile.mkdtemp(prefix="numba-cache-", dir=work)
    env = {"NUMBA_CACHE_DIR": cache, "NUMBA_NUM_THREADS": str(threads)}
    common = ["--verbose", "0", "--backend", "numba", "--seed", "0"]
    train = ["-m", "minicnn", "train", "--data", tiny, "--epochs", "1", *common]
    out = {"data": source}
    for mode in ("cold", "warm"):  # the first fills the empty cache
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, *train], env={**os.environ, **env},
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"minicnn train failed:\n{proc.stderr[-3000:]}")
        out[f"train_{mode}_wall_s"] = time.perf_counter() - t0
    _, split = _run(["-c", _STARTUP_SCRIPT], env)
    out.update({f"warm_{k}": v for k, v in split.items()})
    _, out["seed_protocol"] = _run(["-c", _RSS_SCRIPT, "train", "--data", full, *common], env)
    return out


# --- the report ---------------------------------------------------------------------------------


def _num(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def markdown_tables(doc: dict) -> str:
    """One Markdown table per model: every library's epoch, predict, RSS, first epoch, and its
    epoch and predict times divided by minicnn's (above 1: minicnn is faster); a library that
    was skipped or failed keeps its row and says so."""
    out = []
    for model, res in doc["results"].items():
        e = doc["epochs"][model]
        mini = res.get("minicnn", {})
        out += [
            f"{model} model: {doc['n_train']:,} images, batch {doc['batch']}, Adam, "
            f"{doc['threads']} threads each; epoch = median of epochs 2-{e} over "
            f"{doc['rounds']} alternated round(s), each library in its own process",
            "",
            "| library | train epoch (s) | predict 10k (s) | peak RSS (MB) | first epoch (s) "
            "| epoch / minicnn's | predict / minicnn's |",
            "|---|---|---|---|---|---|---|",
        ]
        skipped = {s["key"] for s in doc.get("skipped", [])}
        for key, label in doc["labels"].items():
            r = res.get(key, {"error": "not installed" if key in skipped else "not run"})
            if "error" in r:
                why = "failed" if key in res else r["error"]
                out.append(f"| {label} | {why} | | | | | |")
                continue
            ratios = ["", ""]
            if "epoch_median_s" in mini:
                ratios = [f"{r['epoch_median_s'] / mini['epoch_median_s']:.3g}x",
                          f"{r['predict_s'] / mini['predict_s']:.3g}x"]
            out.append(f"| {label} | {_num(r['epoch_median_s'])} | {_num(r['predict_s'])} | "
                       f"{r['peak_rss_mb']:.0f} | {_num(r['first_epoch_s'])} | "
                       f"{' | '.join(ratios)} |")
        out.append("")
    return "\n".join(out).rstrip()


def report_lines(doc: dict) -> list[str]:
    lines = [f"machine: {doc['machine'].get('machine', doc['machine'].get('error'))}",
             f"data: {doc['data']}"]
    lines += [f"skipped {s['label']}: {s['reason']}" for s in doc.get("skipped", [])] + [""]
    lines += markdown_tables(doc).splitlines()
    lines += ["", "details (per library: threads as set, final loss, 1-minute load average "
              "before and after its last run):"]
    for model, res in doc["results"].items():
        for key, r in res.items():
            if "error" in r:
                lines.append(f"  {model} {key}: failed: {r['error'].strip()[-300:]}")
            else:
                load = r["loadavg_1min"]
                lines.append(f"  {model} {key:<18} threads {r['threads']}, final loss "
                             f"{r['loss'][-1]:.4f}, load {load[0]:.1f}-{load[1]:.1f}")
    s = doc.get("startup")
    if s:
        p = s["seed_protocol"]
        lines += [
            "",
            f"start-up of `minicnn train` (tiny run, {s['data']}):",
            f"  cold (empty Numba cache) {s['train_cold_wall_s']:.1f} s wall, "
            f"warm {s['train_warm_wall_s']:.1f} s wall",
            f"  warm, inside the process: import {s['warm_import_s']:.2f} s, "
            f"compile/load {s['warm_compile_load_s']:.2f} s",
            f"seed protocol (`minicnn train`, 20,000 images, 6 epochs + validation): "
            f"{p['wall_s']:.1f} s, peak RSS {p['peak_rss_mb']:.0f} MB",
        ]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.train_epoch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write every number (and the machine) to this file")
    ap.add_argument("--epochs", type=int, default=4, help="seed-model epochs (default: 4)")
    ap.add_argument("--deep-epochs", type=int, default=3, help="deep-model epochs (default: 3)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternated rounds of every library (default: 2)")
    ap.add_argument("--samples", type=int, default=20_000, help="images per epoch")
    ap.add_argument("--threads", type=int, default=2, help="threads of every library (default 2)")
    keys = ",".join(lib.key for lib in libraries())
    ap.add_argument("--libs", default=keys, help=f"libraries to run (default: all, {keys})")
    ap.add_argument("--tf", default="default",
                    help=f"TensorFlow configurations for keras-tf, of {sorted(TF_CONFIGS)}")
    ap.add_argument("--models", default="seed,deep", help="seed, deep or both (default)")
    ap.add_argument("--quick", action="store_true",
                    help="5,000 images, 2 epochs, 1 round, no start-up/RSS runs")
    ap.add_argument("--no-startup", action="store_true", help="skip cold/warm start and RSS")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for arg in ("epochs", "deep_epochs", "samples", "threads", "rounds"):
        if getattr(args, arg) <= 0:
            ap.error(f"--{arg.replace('_', '-')} must be positive, received {getattr(args, arg)}")
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.data, args.epochs, args.threads)))
        return 0
    tf_configs = [c for c in args.tf.split(",") if c]
    if set(tf_configs) - set(TF_CONFIGS):
        ap.error(f"unknown --tf configuration(s) {sorted(set(tf_configs) - set(TF_CONFIGS))}; "
                 f"expected some of {sorted(TF_CONFIGS)}")
    every = libraries(tf_configs)
    wanted = [k for k in args.libs.split(",") if k]
    known = {lib.key for lib in every} | {"keras-tf"}
    if set(wanted) - known:
        ap.error(f"unknown --libs {sorted(set(wanted) - known)}; expected some of {sorted(known)}")
    chosen = [lib for lib in every if lib.key in wanted or
              (lib.key.startswith("keras-tf") and "keras-tf" in wanted)]
    if args.quick:
        args.samples, args.epochs, args.deep_epochs, args.rounds = 5000, 2, 2, 1
    skipped = [{"key": lib.key, "label": lib.label, "reason": missing(lib)}
               for lib in chosen if missing(lib)]
    runnable = [lib for lib in chosen if not missing(lib)]
    with tempfile.TemporaryDirectory(prefix="minicnn-bench-") as work:
        doc = run_benchmark(runnable, args.models.split(","), args.epochs, args.deep_epochs,
                            args.samples, args.threads, args.rounds, work)
        if "minicnn" in wanted and not (args.quick or args.no_startup):
            doc["startup"] = startup_and_memory(work, args.threads)
    doc.update(schema=SCHEMA, skipped=skipped, labels={lib.key: lib.label for lib in chosen},
               command="python -m benchmarks.train_epoch " + " ".join(argv or sys.argv[1:]))
    try:
        from benchmarks.machine import environment

        doc["machine"] = environment()
    except Exception as exc:  # noqa: BLE001 - the numbers stand without the machine block
        doc["machine"] = {"error": repr(exc)}
    doc["markdown"] = markdown_tables(doc)
    print("\n".join(report_lines(doc)))
    if args.json:
        from benchmarks.machine import write_json

        write_json(doc, args.json)
    failed = [f"{m}/{k}" for m, res in doc["results"].items() for k, r in res.items()
              if "error" in r]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
