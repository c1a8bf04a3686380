"""Statistical parity of the seed protocol: minicnn and Keras each trained from their *own*
random initialisations (and their own dropout masks and shuffles) over several seeds, then the
test accuracy and losses compared as distributions.

Nothing here can match bit for bit: Keras's random streams are not reproducible in NumPy. The
question is whether the two libraries' results are draws from the same distribution, answered
with Welch's t-test (unequal variances): a row passes when the difference of the means is
smaller than the one that would be significant at level ``tolerances.ALPHA``.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import stats

import minicnn
from minicnn import architectures
from minicnn.utils import to_categorical
from reference import tolerances
from reference._keras import keras, minicnn_loss
from reference.report import Row
from reference.tables import METRICS, statistics_lines  # noqa: F401 - re-exported
from reference.twin import to_keras


def protocol_data(ds, n_train: int = 20_000):
    """The seed tutorial's preprocessing: first n_train images, /255, (N, 28, 28, 1), one-hot.

    Returns: x_train (n_train, 28, 28, 1) float32, y_train (n_train, 10) float32, x_test,
    y_test likewise.
    """

    def prep(x):
        return x[..., None].astype(np.float32) / np.float32(255)

    return (
        prep(ds.x_train[:n_train]),
        to_categorical(ds.y_train[:n_train], 10),
        prep(ds.x_test),
        to_categorical(ds.y_test, 10),
    )


def train_minicnn(name: str, seed: int, data, epochs: int, batch_size: int) -> dict:
    """Build, compile and fit minicnn's model `name` from its own seeded initialisation."""
    x, y = data[0], data[1]
    minicnn.set_random_seed(seed)
    model = architectures.build(name, input_shape=x.shape[1:], num_classes=y.shape[1])
    return _fit_and_score(model, data, epochs, batch_size, seed, {"seed": seed}, minicnn_loss())


def train_keras(name: str, seed: int, data, epochs: int, batch_size: int) -> dict:
    """The same with Keras: its own Glorot initialisation, Dropout and shuffling, seeded."""
    x, y = data[0], data[1]
    keras.utils.set_random_seed(seed)
    spec = architectures.build(name, input_shape=x.shape[1:], num_classes=y.shape[1])
    kmodel = to_keras(spec, dropout="keras", copy_weights=False)
    return _fit_and_score(kmodel, data, epochs, batch_size, seed, {}, "categorical_crossentropy")


def _fit_and_score(model, data, epochs: int, batch_size: int, seed: int, fit_kwargs, loss) -> dict:
    """Compile, fit and evaluate a minicnn or Keras model (the same API) the protocol's way;
    fit_kwargs: what only one library's fit takes (minicnn's shuffle seed); loss: minicnn's
    in the form of this Keras backend, or Keras's name."""
    x, y, xt, yt = data
    model.compile(loss=loss, optimizer="adam", metrics=["accuracy"])
    t0 = time.perf_counter()
    hist = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, **fit_kwargs)
    seconds = time.perf_counter() - t0
    test_loss, test_acc = model.evaluate(xt, yt, batch_size=1000, verbose=0)
    return {
        "seed": seed,
        "test_accuracy": float(test_acc),
        "test_loss": float(test_loss),
        "train_loss": float(hist.history["loss"][-1]),
        "fit_seconds": seconds,
    }


def welch(a, b, alpha: float) -> dict:
    """Welch's t-test of mean(a) == mean(b), and the smallest |difference| significant at alpha.

    Shapes: a (n_a,), b (n_b,), each n >= 2.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    if se == 0:  # identical constant samples: no spread to test against
        return {"t": 0.0, "p": 1.0, "df": float("nan"), "se": 0.0, "critical_diff": 0.0}
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    res = stats.ttest_ind(a, b, equal_var=False)
    crit = float(stats.t.ppf(1 - alpha / 2, df)) * se
    return {
        "t": float(res.statistic),
        "p": float(res.pvalue),
        "df": float(df),
        "se": se,
        "critical_diff": crit,
    }


def statistics_rows(
    name: str,
    ds,
    seeds,
    epochs: int = 6,
    batch_size: int = 128,
    n_train: int = 20_000,
    section: str = "statistics",
    log=print,
) -> tuple[list[Row], dict]:
    """Train both libraries once per seed and compare the metric distributions.

    Rows (one per metric): max abs = |mean_minicnn - mean_keras|; max rel = that / mean_keras;
    tolerance = the difference Welch's test would call significant at ALPHA, as a relative
    number; ok = p >= ALPHA.
    """
    seeds = list(seeds)
    if len(seeds) < 2:
        raise ValueError(f"Statistical parity needs at least 2 seeds, received {len(seeds)}.")
    data = protocol_data(ds, n_train)
    runs = {"minicnn": [], "keras": []}
    for seed in seeds:
        for lib, fn in (("minicnn", train_minicnn), ("keras", train_keras)):
            r = fn(name, seed, data, epochs, batch_size)
            runs[lib].append(r)
            log(
                f"  [statistics] {lib:7s} seed {seed}: test accuracy {r['test_accuracy']:.4f}, "
                f"test loss {r['test_loss']:.4f}, final training loss {r['train_loss']:.4f} "
                f"({r['fit_seconds']:.1f} s)"
            )
    rows, summary = [], {}
    for label, key in METRICS:
        a = [r[key] for r in runs["minicnn"]]
        b = [r[key] for r in runs["keras"]]
        w = welch(a, b, tolerances.ALPHA)
        diff = abs(float(np.mean(a)) - float(np.mean(b)))
        scale = abs(float(np.mean(b)))
        rows.append(
            Row(
                section,
                f"{label} (mean of {len(seeds)} seeds)",
                f"({len(seeds)},) vs ({len(seeds)},)",
                diff,
                diff / scale,
                w["critical_diff"] / scale,
                w["p"] >= tolerances.ALPHA,
                f"Welch p = {w['p']:.2f}",
            )
        )
        summary[key] = {
            "minicnn_mean": float(np.mean(a)),
            "minicnn_sd": float(np.std(a, ddof=1)),
            "keras_mean": float(np.mean(b)),
            "keras_sd": float(np.std(b, ddof=1)),
            **w,
        }
    extras = {
        "model": name,
        "dataset": ds.describe(),
        "is_sample": ds.is_sample,
        "seeds": seeds,
        "epochs": epochs,
        "batch_size": batch_size,
        "n_train": min(n_train, len(ds.y_train)),
        "n_test": len(ds.y_test),
        "alpha": tolerances.ALPHA,
        "runs": runs,
        "summary": summary,
    }
    return rows, extras
