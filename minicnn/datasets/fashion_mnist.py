"""Fashion-MNIST, returned exactly as `keras.datasets.fashion_mnist.load_data()` returns it.

Where it looks, in order:
  1. `path=`: an npz with Keras's four keys, or a folder with `fashion-mnist/` or the IDX files;
  2. `$MINICNN_DATA`: the same;
  3. Keras's cache, `$KERAS_HOME/datasets/fashion-mnist/` (default `~/.keras/datasets/`);
  4. Debian's `dataset-fashion-mnist` package, `/usr/share/datasets/fashion-mnist/`;
  5. a download of Keras's four gzipped IDX files into Keras's cache.
There is no offline sample: if all of these fail, DatasetNotFoundError says what to install.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import _download, _files, _keras_cache
from ._dataset import CorruptFileWarning, Dataset, DatasetNotFoundError, warn
from ._idx import read_idx

NAME = "fashion_mnist"
SUBDIR = "fashion-mnist"
# Both from keras/src/datasets/fashion_mnist.py. Keras checks no hash for these files, and
# Debian's copies are recompressed (different bytes), so a download is checked by parsing it.
FASHION_MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)
URL_ENV_VAR = "MINICNN_FASHION_MNIST_URL"  # overrides the base URL, e.g. for a local mirror
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FOLDER_CANDIDATES = (SUBDIR, ".")
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def load_data(path=None):
    """Load Fashion-MNIST as Keras does: `(x_train, y_train), (x_test, y_test)`.

    Args:
        path: optional npz file or folder (see the module docstring); None searches.

    Returns:
        x_train: (60000, 28, 28) uint8, pixels 0..255;  y_train: (60000,) uint8, labels 0..9
        (names in CLASS_NAMES);  x_test: (10000, 28, 28) uint8;  y_test: (10000,) uint8.
    """
    return load(path).as_keras_tuples()


def _read(path) -> Dataset:
    return Dataset(*_files.read_source(path), name=NAME, source=str(path))


def _try_folder(folder: Path, tried: list[str]) -> Dataset | None:
    """Read the IDX files in `folder`; None (with a warning if corrupt) when unusable."""
    try:
        if _files.idx_files(folder) is None:
            tried.append(f"{folder}: not there")
            return None
        return _read(folder)
    except FileNotFoundError as e:  # only some of the four files
        tried.append(str(e))
    except ValueError as e:
        warn(f"{e}; ignoring {folder}", CorruptFileWarning)
        tried.append(f"{folder}: corrupt ({e})")
    return None


def load(path=None) -> Dataset:
    """Load Fashion-MNIST as a `Dataset` that also records where it came from.

    Shapes as `load_data`: x_* (N, 28, 28) uint8, y_* (N,) uint8.
    Raises FileNotFoundError/ValueError naming the file if `path` or `$MINICNN_DATA` is
    missing or malformed, and DatasetNotFoundError if nothing at all is found.
    """
    if path is not None:
        return _read(_files.from_user_path(path, FOLDER_CANDIDATES))
    tried: list[str] = []
    found = _files.from_env(FOLDER_CANDIDATES, tried)
    if found is not None:
        return _read(found)

    for folder in [d / SUBDIR for d in _keras_cache.dataset_dirs()] + [DEBIAN_DIR]:
        dataset = _try_folder(folder, tried)
        if dataset is not None:
            return dataset

    base = (os.environ.get(URL_ENV_VAR) or FASHION_MNIST_URL).rstrip("/") + "/"
    try:
        dest = _keras_cache.download_dir(SUBDIR)
        for name in FILES:
            ndim = 3 if "images" in name else 1
            _download.fetch(base + name, dest / name, check=lambda p, n=ndim: read_idx(p, n))
        return _read(dest)
    except OSError as e:  # DownloadError, or the cache folder cannot be created
        tried.append(f"download: {e}")
    raise DatasetNotFoundError(
        "fashion_mnist: no copy of Fashion-MNIST found and the download failed. Tried:\n  - "
        + "\n  - ".join(tried)
        + "\nFix: `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, installs "
        f"{DEBIAN_DIR}/), or put Keras's four files ({', '.join(FILES)}) in "
        f"{_keras_cache.dataset_dirs()[0] / SUBDIR}{os.sep}, or pass path= / set MINICNN_DATA."
    )
