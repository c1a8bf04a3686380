"""Fetching a file so that a half-downloaded or tampered copy is never left where it would be read.

The bytes go to a temporary file in the destination folder, are flushed to disk, checked
(sha256 and/or a caller's parser), and only then renamed over the destination with
`os.replace`, which is atomic within one filesystem. Any failure deletes the temporary file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

# Seconds allowed for the DNS lookup, the connection, and each read; offline must fail fast.
TIMEOUT_S = 5.0
_CHUNK = 1 << 20

# (realpath, size, mtime_ns, inode) -> sha256 hex; a file that has not changed is hashed once.
_sha256_cache: dict[tuple, str] = {}


class DownloadError(OSError):
    """The file could not be fetched, or what arrived failed its check; nothing was kept."""


def _key(path) -> tuple:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)


def sha256_file(path) -> str:
    """sha256 hex digest of a file, memoised per process while the file is unchanged."""
    key = _key(path)
    if key not in _sha256_cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
        _sha256_cache[key] = h.hexdigest()
    return _sha256_cache[key]


def _check_host_resolves(url: str, timeout: float) -> None:
    # urllib's timeout does not cover getaddrinfo, which can block for 30 s or more on a
    # machine with a broken resolver; look the host up in a thread we can stop waiting for.
    parts = urllib.parse.urlsplit(url)
    # Behind a proxy the proxy resolves the host, which may be unknown to the local resolver.
    if not parts.hostname or parts.scheme in urllib.request.getproxies():
        return
    host = parts.hostname
    error: list[BaseException] = []

    def lookup():
        try:
            socket.getaddrinfo(host, None)
        except OSError as e:
            error.append(e)

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise DownloadError(f"DNS lookup of {host} took longer than {timeout:g} s")
    if error:
        raise DownloadError(f"cannot resolve {host} ({error[0]})")


def fetch(url: str, dest, *, sha256: str | None = None, check=None, timeout=TIMEOUT_S) -> Path:
    """Download `url` to `dest`, keeping it only if it passes `sha256` and `check(tmp_path)`.

    `check` is a callable that raises ValueError on a bad file (e.g. a format parser).
    Returns `dest`; raises DownloadError (with `dest` left untouched) on any failure.
    """
    dest = Path(dest)
    try:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as e:
        raise DownloadError(f"cannot write to {dest.parent} ({e})") from e
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            _check_host_resolves(url, timeout)
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                expected = resp.headers.get("Content-Length")
                received = 0
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(chunk)
                    h.update(chunk)
                    received += len(chunk)
            # http.client returns a short body without complaint when the server hangs up
            # early, so an interrupted transfer is only visible by counting.
            if expected is not None and received != int(expected):
                raise DownloadError(
                    f"interrupted transfer from {url}: got {received:,} of {int(expected):,} bytes"
                )
            out.flush()
            os.fsync(out.fileno())
        if sha256 is not None and h.hexdigest() != sha256:
            raise DownloadError(
                f"sha256 mismatch for {url}: expected {sha256}, got {h.hexdigest()}"
            )
        if check is not None:
            try:
                check(tmp)
            except ValueError as e:
                raise DownloadError(f"{url} is not a valid file: {e}") from e
        os.replace(tmp, dest)
    except BaseException as e:
        # BaseException so that Ctrl-C mid-download cleans up too.
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, DownloadError):
            raise
        # URLError, HTTPError and timeouts are OSErrors; a cut-short chunked body or a garbled
        # status line raise http.client.HTTPException.
        if isinstance(e, (OSError, ValueError, http.client.HTTPException)):
            raise DownloadError(f"cannot download {url} ({e})") from e
        raise
    _sha256_cache[_key(dest)] = h.hexdigest()
    return dest
