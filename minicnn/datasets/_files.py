"""Reading a dataset from a local file or folder: a Keras-format `.npz` or four IDX files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from minicnn import untrusted

from ._dataset import check_arrays
from ._idx import MAX_BYTES, read_idx

ENV_VAR = "MINICNN_DATA"
KEYS = ("x_train", "y_train", "x_test", "y_test")
# The names LeCun and Zalando use; each may also end in `.gz`.
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def read_npz(path) -> tuple[np.ndarray, ...]:
    """Read a Keras-format npz: `(x_train, y_train, x_test, y_test)`, uint8, checked.

    Shapes: (N_train, 28, 28), (N_train,), (N_test, 28, 28), (N_test,).
    Read with minicnn.untrusted's limits: a regular file of at most 1 GiB, no pickled arrays,
    every member's declared shape checked against its bytes before anything is allocated.
    """
    arrays = untrusted.read_npz(path, MAX_BYTES, what="Keras-format dataset .npz")
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise ValueError(
            f"{path}: npz is missing key(s) {missing}; a Keras-format npz has "
            f"{list(KEYS)}. Found: {sorted(arrays)[:8]}"
        )
    arrays = tuple(arrays[k] for k in KEYS)
    check_arrays(*arrays, where=path)
    return arrays


def idx_files(folder) -> dict[str, Path] | None:
    """The four IDX files in `folder` by key, None if there are none, ValueError if only some."""
    folder = Path(folder)
    found = {}
    for key, name in IDX_NAMES.items():
        # Prefer the raw file when both exist: it needs no decompression.
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
    if not found:
        return None
    if len(found) < len(IDX_NAMES):
        missing = [IDX_NAMES[k] + "[.gz]" for k in IDX_NAMES if k not in found]
        raise FileNotFoundError(f"{folder}: has some IDX files but is missing {missing}")
    return found


def read_idx_folder(folder) -> tuple[np.ndarray, ...]:
    """Read the four IDX files in `folder`: `(x_train, y_train, x_test, y_test)`, uint8, checked."""
    files = idx_files(folder)
    if files is None:
        raise FileNotFoundError(
            f"{folder}: no IDX files; expected {[n + '[.gz]' for n in IDX_NAMES.values()]}"
        )
    arrays = tuple(read_idx(files[k], ndim=3 if k.startswith("x") else 1) for k in KEYS)
    check_arrays(*arrays, where=folder)
    return arrays


def read_source(path) -> tuple[np.ndarray, ...]:
    """Read `path`, a folder of IDX files or an npz file; see `read_npz` for the shapes."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return read_idx_folder(path) if path.is_dir() else read_npz(path)


def find_in_folder(folder, candidates) -> Path | None:
    """The first of `candidates` (names inside `folder`) that is an npz file or an IDX folder.

    `"."` stands for `folder` itself. Returns None when none of them is there.
    """
    folder = Path(folder)
    for name in candidates:
        path = folder / name
        if path.is_file() and path.suffix == ".npz":
            return path
        if path.is_dir() and idx_files(path) is not None:
            return path
    return None


def from_env(candidates, tried: list[str]) -> Path | None:
    """The file, or the first of `candidates` inside the folder, that `$MINICNN_DATA` names.

    Returns None (and notes why in `tried`) when the variable is unset. Raises
    FileNotFoundError when it names something that does not exist or a folder that holds none
    of `candidates`: a setting made on purpose that finds nothing is an error, not a reason to
    fall back quietly to other data.
    """
    value = os.environ.get(ENV_VAR)
    if not value:
        tried.append(f"${ENV_VAR}: not set")
        return None
    path = Path(value).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{ENV_VAR}={value}: no such file or folder")
    if not path.is_dir():
        return path
    found = find_in_folder(path, candidates)
    if found is None:
        raise FileNotFoundError(
            f"{ENV_VAR}={value}: the folder holds none of {list(candidates)} ('.' = the four "
            f"IDX files {[n + '[.gz]' for n in IDX_NAMES.values()]} in the folder itself); "
            f"unset {ENV_VAR} to let minicnn search elsewhere"
        )
    return found


def from_user_path(path, candidates) -> Path:
    """The npz file, or the first of `candidates` inside the folder, that the caller passed."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if not path.is_dir():
        return path  # a file, or something else that read_source will refuse by name
    found = find_in_folder(path, candidates)
    if found is None:
        raise FileNotFoundError(
            f"{path}: found none of {list(candidates)} there ('.' = the four IDX files "
            f"{[n + '[.gz]' for n in IDX_NAMES.values()]} in the folder itself)"
        )
    return found
