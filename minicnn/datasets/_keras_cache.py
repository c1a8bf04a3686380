"""Where Keras keeps downloaded datasets, worked out the way Keras 3 does it.

`keras/src/backend/config.py`: `$KERAS_HOME`, else `~/.keras`, else `/tmp/.keras` when the
home folder is not writable. `keras/src/utils/file_utils.py` (`get_file`): if that folder is
not writable either, `/tmp/.keras`; files go in its `datasets/` subfolder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def keras_home() -> Path:
    """Keras's base folder: `$KERAS_HOME`, `~/.keras`, or `/tmp/.keras`."""
    if "KERAS_HOME" in os.environ:
        return Path(os.path.expanduser(os.environ["KERAS_HOME"]))
    home = os.path.expanduser("~")
    return Path(home if os.access(home, os.W_OK) else "/tmp") / ".keras"


def _tmp_keras() -> Path:
    return Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()) / ".keras"


def dataset_dirs() -> list[Path]:
    """Folders where a Keras-downloaded dataset may already sit, most likely first."""
    home = keras_home()
    dirs = [home / "datasets"]
    # get_file() falls back to /tmp/.keras when the home folder cannot be written to.
    if not os.access(home, os.W_OK) and _tmp_keras() != home:
        dirs.append(_tmp_keras() / "datasets")
    return dirs


def download_dir(subdir: str = "") -> Path:
    """The folder `keras.utils.get_file` would download into, created if needed."""
    home = keras_home()
    try:
        # Importing Keras creates its home folder; do the same so a fresh machine picks
        # ~/.keras rather than falling through to /tmp/.keras.
        home.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    base = home if os.access(home, os.W_OK) else _tmp_keras()
    folder = base / "datasets" / subdir
    folder.mkdir(parents=True, exist_ok=True)
    return folder
