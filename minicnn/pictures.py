"""Arrays as small PNG pictures for a web page: colour scales, tile mosaics, a PNG writer.

    scale = Scale.for_values(a)                    # white at 0; Greys if a >= 0, else RdBu
    tiles = scale.indices(a)                       # uint8 palette indices, same shape as a
    png = encode_png(mosaic(tiles, cols=8), scale.palette)
    src = data_uri(png)                            # "data:image/png;base64,..."

Pictures are palette PNGs (one byte per pixel), drawn at one pixel per value; the page enlarges
them with CSS (`image-rendering: pixelated`), so a 26x26 map costs 676 bytes before zlib.
Index 255 of every palette is the grey of the gaps between tiles; values use indices 0..254, an
odd count, so that 0 on the signed scale lands exactly on the white middle entry (127).
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps

GAP = 255  # palette index of the gaps between tiles
LEVELS = 255  # palette indices 0..254 carry values
GAP_RGB = (190, 190, 190)
SIGNED_CMAP, POSITIVE_CMAP = "RdBu_r", "Greys"


def palette(cmap_name: str) -> np.ndarray:
    """(256, 3) uint8: LEVELS colours of a matplotlib colormap, then the gap grey."""
    rgb = colormaps[cmap_name](np.linspace(0, 1, LEVELS))[:, :3]
    out = np.empty((256, 3), np.uint8)
    out[:LEVELS] = np.round(rgb * 255)
    out[GAP] = GAP_RGB
    return out


@dataclass(frozen=True)
class Scale:
    """How values become colours: 'signed' maps [-limit, limit] to blue-white-red with 0 white;
    'positive' maps [0, limit] to white-black. limit > 0."""

    kind: str
    limit: float

    @classmethod
    def for_values(cls, a, signed=None) -> Scale:
        """The scale for array a: signed if a has negative values (or signed=True), the limit
        its largest |value| (1 when all are 0, so an all-zero map is white, not an error)."""
        a = np.asarray(a)
        if signed is None:
            signed = a.size > 0 and float(a.min()) < 0
        limit = float(np.max(np.abs(a))) if a.size else 0.0
        return cls("signed" if signed else "positive", limit if limit > 0 else 1.0)

    @property
    def cmap(self) -> str:
        return SIGNED_CMAP if self.kind == "signed" else POSITIVE_CMAP

    @property
    def palette(self) -> np.ndarray:
        return palette(self.cmap)

    def indices(self, a) -> np.ndarray:
        """uint8 palette indices in 0..254, same shape as a.

        signed: round((a / limit + 1) / 2 * 254), so 0 -> 127; positive: round(a / limit * 254).
        """
        t = np.asarray(a, np.float64) / self.limit
        t = (t + 1) / 2 if self.kind == "signed" else t
        return np.round(np.clip(t, 0, 1) * (LEVELS - 1)).astype(np.uint8)

    def css_gradient(self, stops=9) -> str:
        """A CSS linear-gradient drawing this scale left to right (for the legend)."""
        rgb = colormaps[self.cmap](np.linspace(0, 1, stops))[:, :3]
        colours = ", ".join(f"rgb({r:.0f},{g:.0f},{b:.0f})" for r, g, b in np.round(rgb * 255))
        return f"linear-gradient(to right, {colours})"

    def ends(self) -> tuple[float, float]:
        """The values at the left and right ends of the legend."""
        return (-self.limit if self.kind == "signed" else 0.0), self.limit


def mosaic(tiles, cols: int, gap: int = 1) -> np.ndarray:
    """Lay T tiles (T, h, w) out in rows of `cols`, `gap` pixels of index GAP between them.

    Tile t sits at row t // cols, column t % cols, its top-left pixel at
    (row * (h + gap), column * (w + gap)); the page's hover script inverts this.
    Returns: (rows * (h + gap) - gap, cols * (w + gap) - gap) uint8.
    """
    tiles = np.asarray(tiles, np.uint8)
    if tiles.ndim != 3 or len(tiles) == 0:
        raise ValueError(f"mosaic expects tiles of shape (T, h, w), T > 0. Received: "
                         f"{tiles.shape}")
    t, h, w = tiles.shape
    cols = max(1, min(cols, t))
    rows = -(-t // cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), GAP, np.uint8)
    for k in range(t):
        r, c = divmod(k, cols)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = tiles[k]
    return out


def encode_png(indices, pal) -> bytes:
    """A palette PNG (colour type 3, 8 bits) of indices (H, W) uint8 with palette pal (256, 3).

    The format (PNG spec, ISO 15948): signature, IHDR, PLTE, IDAT = zlib of the rows each
    prefixed by filter byte 0, IEND; every chunk is length, type, data, CRC-32 of type + data.
    """
    indices = np.ascontiguousarray(indices, np.uint8)
    if indices.ndim != 2 or 0 in indices.shape:
        raise ValueError(f"encode_png expects a non-empty 2-D array. Received: {indices.shape}")
    h, w = indices.shape
    raw = np.zeros((h, w + 1), np.uint8)  # (H, 1 + W): filter type 0 ("None") on every row
    raw[:, 1:] = indices

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
            + chunk(b"PLTE", np.asarray(pal, np.uint8).tobytes())
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
            + chunk(b"IEND", b""))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
