"""Training speed, minicnn against Keras, on the same data and machine, in one run.

    python -m benchmarks.train_epoch [--json PATH] [--epochs N] [--rounds N] [--quick]

For the seed model and the deep model it trains minicnn (Numba backend) and Keras for a few
epochs on the same arrays (batch 128, Adam, shuffled), each framework in a fresh process held to
the same number of threads, and prints the median epoch time after the first epoch (the first
carries compilation and tracing), the ratio minicnn / Keras, steps per second, and predict
throughput on 10,000 images (batch 128). Keras runs once per TensorFlow configuration
(TF_ENABLE_ONEDNN_OPTS unset, 0 and 1). Then, for minicnn alone: the start-up of
`minicnn train` with an empty Numba cache (cold: everything compiles) and a filled one (warm),
the compile/load seconds inside it, and the peak RSS of the seed protocol (`minicnn train`:
20,000 images, 6 epochs, validation on 10,000).

Data: real MNIST digits from minicnn.datasets when it has them (tiled to the sample count if
it only has the offline sample), else random images of the same shape; the report says which.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

SEED_BATCH = 128
PREDICT_N = 10_000
TF_CONFIGS = {"default": None, "onednn0": "0", "onednn1": "1"}  # TF_ENABLE_ONEDNN_OPTS


# --- data ---------------------------------------------------------------------------------------


def make_data(
    n_train: int, n_test: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(x_train, y_train, x_test, y_test, source): uint8 images (N, 28, 28), int labels (N,)."""
    try:
        import warnings

        from minicnn import datasets

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = datasets.load("mnist")
        xtr, ytr, xte, yte = ds.x_train, ds.y_train, ds.x_test, ds.y_test
        reps = -(-n_train // len(xtr))
        source = f"MNIST digits ({ds.source}"
        source += f", {len(xtr)} tiled {reps}x)" if reps > 1 else ")"
        reps_te = -(-n_test // len(xte))
        return (
            np.tile(xtr, (reps, 1, 1))[:n_train],
            np.tile(ytr, reps)[:n_train],
            np.tile(xte, (reps_te, 1, 1))[:n_test],
            np.tile(yte, reps_te)[:n_test],
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


def _median_after_first(times):
    return statistics.median(times[1:]) if len(times) > 1 else times[0]


def _predict_time(predict, x, repeats=3):
    predict(x[:1000])  # warm-up: compilation, tracing, buffers
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def worker_minicnn(model_name, data_dir, epochs, threads):
    os.environ["NUMBA_NUM_THREADS"] = str(threads)  # before Numba starts its pool
    import minicnn
    from minicnn import architectures

    x, y = np.load(f"{data_dir}/x.npy"), np.load(f"{data_dir}/y.npy")
    xt = np.load(f"{data_dir}/xt.npy")
    minicnn.set_backend("numba")
    minicnn.set_random_seed(0)
    model = architectures.build(model_name)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=SEED_BATCH, epochs=epochs, verbose=0, seed=0)
    predict_s = _predict_time(lambda a: model.predict(a, batch_size=SEED_BATCH), xt)
    import numba

    from minicnn.kernels.numba_config import blas_single_threaded

    with blas_single_threaded():  # what the model ran under; report BLAS's thread count then
        from threadpoolctl import threadpool_info

        blas = sorted({d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"})
    return {
        "epoch_s": model.epoch_times,
        "loss": history.history["loss"],
        "accuracy": history.history["accuracy"],
        "predict_s": predict_s,
        "threads": {
            "numba": numba.get_num_threads(),
            "blas_in_fit": blas,
            "threading_layer": numba.threading_layer(),
        },
    }


def _keras_model(keras, model_name):
    L = keras.layers
    head = [keras.Input((28, 28, 1)), L.Conv2D(32, (3, 3), activation="relu")]
    if model_name == "seed":
        body = [L.MaxPooling2D((2, 2)), L.Dropout(0.25), L.Flatten(), L.Dropout(0.5)]
    else:
        body = [
            L.Conv2D(64, (3, 3), activation="relu"),
            L.MaxPooling2D((2, 2)),
            L.Dropout(0.25),
            L.Flatten(),
            L.Dense(128, activation="relu"),
            L.Dropout(0.5),
        ]
    return keras.Sequential(head + body + [L.Dense(10, activation="softmax")])


def worker_keras(model_name, data_dir, epochs, threads):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras.utils.set_random_seed(0)
    x, y = np.load(f"{data_dir}/x.npy"), np.load(f"{data_dir}/y.npy")
    xt = np.load(f"{data_dir}/xt.npy")
    model = _keras_model(keras, model_name)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    times = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    history = model.fit(
        x,
        y,
        batch_size=SEED_BATCH,
        epochs=epochs,
        verbose=0,
        shuffle=True,
        callbacks=[EpochTimer()],
    )
    predict_s = _predict_time(lambda a: model.predict(a, batch_size=SEED_BATCH, verbose=0), xt)
    try:
        from tensorflow.python.util import _pywrap_util_port

        onednn = bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        onednn = None
    return {
        "epoch_s": times,
        "loss": history.history["loss"],
        "accuracy": history.history["accuracy"],
        "predict_s": predict_s,
        "threads": {
            "tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
        "onednn": onednn,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }


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


# --- the parent: run everything, print, save -----------------------------------------------------


def _run(args, env=None, timeout=3600):
    """Run a Python child; return (seconds, the JSON of its last stdout line)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{args[:4]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def _worker(kind, model, data_dir, epochs, threads, env=None):
    load_before = os.getloadavg()[0]  # other work on the machine shows here
    _, out = _run(
        [
            "-m",
            "benchmarks.train_epoch",
            "--worker",
            kind,
            "--model",
            model,
            "--data",
            data_dir,
            "--epochs",
            str(epochs),
            "--threads",
            str(threads),
        ],
        env,
    )
    steps = -(-int(np.load(f"{data_dir}/y.npy", mmap_mode="r").shape[0]) // SEED_BATCH)
    epoch = _median_after_first(out["epoch_s"])
    out.update(
        loadavg_1min=(load_before, os.getloadavg()[0]),
        epoch_median_s=epoch,
        first_epoch_s=out["epoch_s"][0],
        steps_per_s=steps / epoch,
        predict_images_per_s=PREDICT_N / out["predict_s"],
    )
    return out


def _write_npz(path, xtr, ytr, xte, yte):
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)


def startup_and_memory(work, threads):
    """Cold and warm start of `minicnn train` (tiny run), compile/load seconds, peak RSS."""
    xtr, ytr, xte, yte, source = make_data(60_000, 10_000)
    full, tiny = f"{work}/mnist_full.npz", f"{work}/mnist_tiny.npz"
    _write_npz(full, xtr, ytr, xte, yte)
    _write_npz(tiny, xtr[:512], ytr[:512], xte[:256], yte[:256])
    cache = tempfile.mkdtemp(prefix="numba-cache-", dir=work)
    env = {"NUMBA_CACHE_DIR": cache, "NUMBA_NUM_THREADS": str(threads)}
    train = [
        "-m",
        "minicnn",
        "train",
        "--data",
        tiny,
        "--epochs",
        "1",
        "--verbose",
        "0",
        "--backend",
        "numba",
        "--seed",
        "0",
    ]
    out = {"data": source}
    out["train_cold_wall_s"], _ = _timed_train(train, env)
    out["train_warm_wall_s"], _ = _timed_train(train, env)
    _, split = _run(["-c", _STARTUP_SCRIPT], env)  # warm: the cache is filled now
    out.update({f"warm_{k}": v for k, v in split.items()})
    _, rss = _run(
        [
            "-c",
            _RSS_SCRIPT,
            "train",
            "--data",
            full,
            "--verbose",
            "0",
            "--backend",
            "numba",
            "--seed",
            "0",
        ],
        env,
    )
    out["seed_protocol"] = rss
    return out


def _timed_train(args, env):
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"minicnn train failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0, proc.stdout


def _merge_rounds(runs):
    """One result from several rounds of the same configuration: medians of the rounds."""
    out = dict(runs[-1])
    for key in ("epoch_median_s", "first_epoch_s", "steps_per_s", "predict_images_per_s"):
        out[key] = statistics.median(r[key] for r in runs)
    out["rounds"] = [{k: r[k] for k in ("epoch_s", "predict_s", "loadavg_1min")} for r in runs]
    out["loadavg_1min"] = (runs[0]["loadavg_1min"][0], runs[-1]["loadavg_1min"][1])
    return out


def run_benchmark(epochs, deep_epochs, n_train, threads, tf_configs, models_, work, rounds):
    """Train each model with each framework; the seed model's runs alternate over `rounds`
    rounds (minicnn, Keras, minicnn, Keras, ...) so that a change in the machine's speed during
    the run reaches both sides alike."""
    xtr, ytr, xte, _, source = make_data(n_train, PREDICT_N)
    x, y = _as_float(xtr, ytr)
    xt, _ = _as_float(xte, np.zeros(len(xte), int))
    for name, a in (("x", x), ("y", y), ("xt", xt)):
        np.save(f"{work}/{name}.npy", a)
    results = {}
    for model in models_:
        e = epochs if model == "seed" else deep_epochs
        runs = {"minicnn": []} | {f"keras-{cfg}": [] for cfg in tf_configs}
        for _ in range(rounds if model == "seed" else 1):
            runs["minicnn"].append(_worker("minicnn", model, work, e, threads))
            for cfg in tf_configs:
                env = {} if TF_CONFIGS[cfg] is None else {"TF_ENABLE_ONEDNN_OPTS": TF_CONFIGS[cfg]}
                runs[f"keras-{cfg}"].append(_worker("keras", model, work, e, threads, env))
        results[model] = {name: _merge_rounds(r) for name, r in runs.items()}
    return {
        "data": source,
        "n_train": n_train,
        "batch": SEED_BATCH,
        "threads": threads,
        "seed_rounds": rounds,
        "results": results,
    }


def report_lines(doc) -> list[str]:
    lines = [
        f"data: {doc['data']}, {doc['n_train']} images/epoch, batch {doc['batch']}, "
        f"{doc['threads']} threads each (Numba / TF intra-op and inter-op; minicnn's BLAS "
        f"runs on 1 thread inside fit). Epoch: median after the first (seed model: median of "
        f"{doc['seed_rounds']} alternating rounds). Load: the machine's 1-minute load average "
        f"before and after (other work shows there)."
    ]
    for model, res in doc["results"].items():
        lines.append("")
        lines.append(
            f"{model} model            epoch (s)  first (s)  steps/s  predict img/s  final loss"
            f"  load (1 min)"
        )
        for name, r in res.items():
            label = name + (
                f" (oneDNN {'on' if r.get('onednn') else 'off'})"
                if name.startswith("keras")
                else ""
            )
            lines.append(
                f"  {label:<26s} {r['epoch_median_s']:8.3f}  {r['first_epoch_s']:9.3f}"
                f"  {r['steps_per_s']:7.1f}  {r['predict_images_per_s']:13.0f}"
                f"  {r['loss'][-1]:10.4f}  {r['loadavg_1min'][0]:.1f}-{r['loadavg_1min'][1]:.1f}"
            )
        mini = res["minicnn"]
        for name, r in res.items():
            if name != "minicnn":
                epoch = mini["epoch_median_s"] / r["epoch_median_s"]
                predict = mini["predict_images_per_s"] / r["predict_images_per_s"]
                lines.append(
                    f"  minicnn / {name}: epoch time {epoch:.3f}x, "
                    f"predict throughput {predict:.2f}x"
                )
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


def _write_json(path, doc):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.train_epoch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--json", help="write every number (and the machine) to this file")
    ap.add_argument("--epochs", type=int, default=3, help="seed-model epochs (default: 3)")
    ap.add_argument(
        "--deep-epochs",
        type=int,
        default=3,
        help="deep-model epochs (default: 3; Keras's first deep epoch is often its fastest)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="alternating rounds of the seed-model runs (default: 2)",
    )
    ap.add_argument("--samples", type=int, default=20_000, help="images per epoch")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument(
        "--tf",
        default="default,onednn0,onednn1",
        help=f"TensorFlow configurations, of {sorted(TF_CONFIGS)}",
    )
    ap.add_argument("--models", default="seed,deep")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="5,000 images, 2 epochs, default TF only, no start-up/RSS runs",
    )
    ap.add_argument("--no-startup", action="store_true", help="skip cold/warm start and RSS")
    ap.add_argument("--worker", choices=["minicnn", "keras"], help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for arg in ("epochs", "deep_epochs", "samples", "threads", "rounds"):
        if getattr(args, arg) <= 0:
            ap.error(f"--{arg.replace('_', '-')} must be positive, received {getattr(args, arg)}")
    if args.worker:
        fn = worker_minicnn if args.worker == "minicnn" else worker_keras
        print(json.dumps(fn(args.model, args.data, args.epochs, args.threads)))
        return 0
    tf_configs = [c for c in args.tf.split(",") if c]
    bad = [c for c in tf_configs if c not in TF_CONFIGS]
    if bad:
        ap.error(f"unknown --tf configuration(s) {bad}; expected some of {sorted(TF_CONFIGS)}")
    if args.quick:
        args.samples, args.epochs, args.deep_epochs, args.rounds = 5000, 2, 2, 1
        tf_configs = ["default"]
    with tempfile.TemporaryDirectory(prefix="minicnn-bench-") as work:
        doc = run_benchmark(
            args.epochs,
            args.deep_epochs,
            args.samples,
            args.threads,
            tf_configs,
            args.models.split(","),
            work,
            args.rounds,
        )
        if not (args.quick or args.no_startup):
            doc["startup"] = startup_and_memory(work, args.threads)
    try:
        from benchmarks.machine import environment

        doc["machine"] = environment()
    except Exception as exc:  # noqa: BLE001 - the numbers stand without the machine block
        doc["machine"] = {"error": repr(exc)}
    doc["command"] = "python -m benchmarks.train_epoch " + " ".join(argv or sys.argv[1:])
    print("\n".join(report_lines(doc)))
    if args.json:
        _write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
