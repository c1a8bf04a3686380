"""Atomic file writes: readers see the old file or the new one, never a part.

    atomic_write("model.npz", lambda f: f.write(data))

The bytes go to a temp file beside the target (same folder, so the final rename stays on one
filesystem), are flushed and fsync'd, and the temp file is renamed over the target with
``os.replace``, which POSIX makes atomic. On any error the temp file is removed.

A process killed mid-write (SIGKILL, power loss) cannot remove its temp file. Its name carries
the writer's process id, ``.<name>.<pid>.<random>.tmp``, so the next write to the same path
removes the temp files whose writer is no longer alive; those of a live writer (another process
saving to the same path right now) are left alone.

This module imports nothing from minicnn, so the model, saving, callbacks, viz and the commands
may all import it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path


def atomic_write(path, write) -> None:
    """Call ``write(f)`` on a temp file beside ``path``, fsync it, then rename it over ``path``.

    Args:
        path: the file to create or replace; its folder must exist.
        write: a callable taking a binary file object open for writing.

    The new file gets the usual permissions (0666 & ~umask), as ``open(path, 'wb')`` would.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"Cannot write {path}: folder {folder} does not exist.")
    if path.is_dir():
        raise IsADirectoryError(f"Cannot write {path}: it is a folder.")
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def temp_files(path) -> list[Path]:
    """The temp files a write to ``path`` may have left: ``.<name>.*.tmp`` beside it."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(.+)\.tmp$")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    return [path.parent / n for n in names if pattern.match(n)]


def remove_stale_temps(path) -> list[Path]:
    """Remove the temp files of writes to ``path`` whose writer process is gone.

    Returns the files removed. A temp file without a process id in its name (minicnn 0.1's
    ``.<name>.<random>.tmp``) counts as stale.
    """
    removed = []
    prefix = f".{Path(path).name}."
    for tmp in temp_files(path):
        pid_text = tmp.name[len(prefix) :].split(".", 1)[0]
        if pid_text.isdigit() and _alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        # our own temp files are removed by atomic_write's except clause; one still here
        # belongs to a write in another thread of this process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists but is not ours (or an absurd number: leave it alone)
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every OS/filesystem, and not needed
    # for atomicity, so failures are ignored.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_writable(path, what: str = "output") -> Path:
    """Raise a clear OSError/ValueError now if ``path`` cannot be written later.

    Creates and removes a temp file in the folder, which is the only test that tells the truth
    for root (``os.access`` says yes to nearly everything), read-only mounts and /proc.
    Returns the path. Nothing is left behind.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give a file name")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{what} cannot write {path}: {folder} is not a folder")
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist (for {path})")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=f".{path.name}.probe."):
            pass
    except OSError as e:
        raise PermissionError(
            f"{what} cannot write in folder {folder} ({e.strerror or e}), so not {path}"
        ) from e
    return path


def check_folder_writable(folder, what: str = "output folder") -> Path:
    """Raise now if files cannot be written in ``folder``, which may not exist yet: then its
    nearest existing ancestor must be a folder we can write in (to create it)."""
    path = Path(folder).absolute()
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"{what} {folder}: {probe} is not a folder")
    check_writable(probe / ".minicnn-probe", what)
    return path
