"""Reader for the IDX format LeCun's MNIST and Zalando's Fashion-MNIST ship in, gzipped or not.

Layout: two zero bytes, a type byte (0x08 = unsigned byte), a byte giving the number of
dimensions, one big-endian uint32 per dimension, then the values in C order.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from minicnn import untrusted

_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE = 0x08
# The largest dataset file minicnn reads, packed or unpacked: MNIST's and Fashion-MNIST's
# training images are 47 MB; this leaves room for larger sets in the same format.
MAX_BYTES = untrusted.GiB


def read_bytes(path) -> bytes:
    """The file's contents, un-gzipped when it starts with the gzip magic number.

    The magic number, not the `.gz` suffix, decides: downloads and copies get renamed. Only a
    regular file is read, and neither it nor its unpacked contents may exceed MAX_BYTES.
    """
    path = Path(path)
    raw = untrusted.read_bytes(path, MAX_BYTES, what="dataset file")
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    return untrusted.gunzip(raw, MAX_BYTES, path)


def read_idx(path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file with `ndim` dimensions.

    Returns:
        A writable uint8 array: (N,) for labels (ndim=1), (N, rows, cols) for images (ndim=3).

    Raises ValueError naming the file on a bad magic number, a header that disagrees with the
    payload length (truncated or padded file), or a gzip stream that is cut short.
    """
    data = read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: only {len(data)} bytes; too short for an IDX header")
    zero0, zero1, dtype, got_ndim = data[:4]
    if zero0 or zero1 or dtype != _UBYTE or got_ndim != ndim:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{data[:4].hex()}; expected "
            f"0x000008{ndim:02x} (unsigned bytes, {ndim} dimension{'s' * (ndim > 1)})"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape)  # Python ints: a hostile header cannot overflow it
    payload = len(data) - header
    if payload != expected:
        what = "truncated" if payload < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX data {what}: header says shape {shape} = {expected:,} bytes, "
            f"but the file holds {payload:,}"
        )
    # copy(): frombuffer over bytes is read-only, and Keras's npz arrays are writable.
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()
