"""Reading files that may be corrupt or hostile: saved models, weights, datasets.

A file is data from outside. Before anything is allocated for it, it must prove it is what it
claims, within limits:

* only a regular file is opened (a named pipe would block forever, /dev/zero never ends), and
  only if it is no larger than the caller's limit;
* an ``.npz`` archive is read member by member without ``np.load``: each member's ``.npy``
  header is parsed with a size limit, its dtype must be a plain number type (never an object
  array, which would need pickle), and the shape it declares must account for exactly the
  member's bytes (a header claiming 400,000,000 filters in a 10 kB file is refused before a
  byte is allocated); the zip CRC of every member is checked;
* a gzip stream is decompressed up to a limit (a few kB of gzip can expand to gigabytes);
* JSON is parsed only when short enough and not nested too deep (deep nesting exhausts the
  parser's recursion).

Every failure is a ValueError that names the file (FileNotFoundError when it does not exist),
whatever the zip, zlib, NumPy or JSON layer underneath raised.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import zipfile
import zlib

import numpy as np

MiB = 1 << 20
GiB = 1 << 30
MAX_NPY_HEADER = 64 * 1024  # bytes of one member's .npy header (NumPy's own limit is 10,000)
MAX_MEMBERS = 4096  # arrays in one archive
MAX_JSON_DEPTH = 32  # nested lists/objects; minicnn's own headers use 5
# What a damaged zip member raises while it is read (a CRC mismatch, a cut deflate stream)
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, OSError)


def describe_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


@contextlib.contextmanager
def open_regular(path, max_bytes: int, what: str = "file"):
    """Open path for binary reading if it is a regular file of at most max_bytes.

    O_NONBLOCK makes opening a named pipe return at once (instead of waiting for a writer),
    so that fstat can refuse it; the descriptor's type is checked, not the path's, so the file
    cannot be swapped between the check and the read.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a folder, not a {what}") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot open ({e.strerror or e})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path}: is {describe_kind(info.st_mode)}, not a {what}")
        if info.st_size > max_bytes:
            raise ValueError(
                f"{path}: {info.st_size:,} bytes, more than the {max_bytes:,} a {what} may have"
            )
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def read_bytes(path, max_bytes: int, what: str = "file") -> bytes:
    """The whole file, if it is a regular file of at most max_bytes."""
    with open_regular(path, max_bytes, what) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while we read it
        raise ValueError(f"{os.fspath(path)}: more than the {max_bytes:,} bytes a {what} may have")
    return data


def gunzip(data: bytes, max_bytes: int, path) -> bytes:
    """Decompress gzip data (one or more members) to at most max_bytes."""
    out, total = [], 0
    try:
        while data:
            d = zlib.decompressobj(wbits=31)  # 31: gzip header and trailer
            while True:
                chunk = d.decompress(data, max_bytes + 1 - total)
                total += len(chunk)
                out.append(chunk)
                if total > max_bytes:
                    raise ValueError(
                        f"{path}: gzip data expands to more than {max_bytes:,} bytes"
                    )
                data = d.unconsumed_tail
                if d.eof or not data:
                    break
            if not d.eof:
                raise ValueError(f"{path}: corrupt or truncated gzip data (stream cut short)")
            data = d.unused_data
    except zlib.error as e:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return b"".join(out)


def read_npz(path, max_bytes: int, what: str = "file") -> dict[str, np.ndarray]:
    """Every array of an .npz file, checked as the module docstring says; writable copies.

    max_bytes bounds the file and, separately, the sum of its arrays' sizes.
    """
    path = os.fspath(path)
    with open_regular(path, max_bytes, what) as f:
        try:
            with zipfile.ZipFile(f) as zf:
                return _read_members(zf, path, max_bytes)
        except ValueError:
            raise
        except Exception as e:  # zipfile, zlib and struct raise a dozen types on bad bytes
            raise ValueError(
                f"{path}: not a {what} (not a readable .npz archive, or corrupt or truncated: "
                f"{type(e).__name__}: {e})"
            ) from None


def _read_members(zf: zipfile.ZipFile, path: str, max_bytes: int) -> dict[str, np.ndarray]:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ValueError(f"{path}: {len(infos):,} members, more than {MAX_MEMBERS:,}")
    arrays, total = {}, 0
    for info in infos:
        name = info.filename
        if not name.endswith(".npy"):
            raise ValueError(f"{path}: member {name!r} is not an .npy array")
        key = name[: -len(".npy")]
        if key in arrays:
            raise ValueError(f"{path}: member {name!r} appears twice")
        total += info.file_size
        if total > max_bytes:
            raise ValueError(f"{path}: its arrays add up to more than {max_bytes:,} bytes")
        try:
            with zf.open(info) as member:
                arrays[key] = _read_npy(member, info.file_size, f"{path}: member {name!r}")
        except _DAMAGED as e:
            raise ValueError(
                f"{path}: member {name!r} is corrupt or truncated ({type(e).__name__}: {e})"
            ) from None
    return arrays


def _read_npy(f, size: int, where: str) -> np.ndarray:
    """One .npy stream of exactly size bytes: header checked against size before reading data."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                f, max_header_size=MAX_NPY_HEADER)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                f, max_header_size=MAX_NPY_HEADER)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except _DAMAGED:
        raise
    except Exception as e:  # the header parser raises ValueError, SyntaxError, TokenError...
        raise ValueError(f"{where}: bad .npy header ({type(e).__name__}: {e})") from None
    if dtype.hasobject or dtype.kind not in "biufcU" or dtype.fields is not None:
        raise ValueError(f"{where}: dtype {dtype} is not a plain number or text type")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"{where}: bad shape {shape}")
    offset = f.tell()
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if offset + nbytes != size:
        raise ValueError(
            f"{where}: its header declares {dtype} {shape} = {nbytes:,} bytes, but the member "
            f"holds {size - offset:,}"
        )
    data = f.read(nbytes)
    if len(data) != nbytes or f.read(1):  # reading to the end also checks the zip CRC
        raise ValueError(f"{where}: truncated")
    array = np.frombuffer(bytearray(data), dtype=dtype)
    return array.reshape(shape, order="F" if fortran else "C")


def json_depth_ok(text: str, max_depth: int) -> bool:
    """True when no list/object in text nests deeper than max_depth (strings skipped)."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def parse_json(text: str, where: str, max_chars: int = MiB, max_depth: int = MAX_JSON_DEPTH):
    """json.loads with a length and a nesting limit; ValueError naming `where` on failure."""
    if len(text) > max_chars:
        raise ValueError(f"{where}: {len(text):,} characters of JSON, more than {max_chars:,}")
    if not json_depth_ok(text, max_depth):
        raise ValueError(f"{where}: JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{where}: not valid JSON ({e})") from None


def _reject_constant(name):
    # json accepts NaN, Infinity and -Infinity, which are not JSON and not valid settings
    raise ValueError(f"{name} is not allowed")
