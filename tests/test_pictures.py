"""minicnn.pictures: the PNG writer read back by an independent decoder (Pillow), the colour
scales on known values, the mosaic's tile positions."""

import io

import numpy as np
import pytest
from PIL import Image

from minicnn.pictures import GAP, Scale, data_uri, encode_png, mosaic, palette


def _decode(png):
    """(palette indices, RGB) as Pillow reads them."""
    im = Image.open(io.BytesIO(png))
    im.load()
    return np.asarray(im), np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (26, 215), (1, 5408)])
def test_png_round_trips_through_pillow(shape):
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 256, shape, dtype=np.uint8)
    pal = palette("RdBu_r")
    indices, rgb = _decode(encode_png(idx, pal))
    assert indices.shape == shape
    np.testing.assert_array_equal(indices, idx)
    np.testing.assert_array_equal(rgb, pal[idx])


def test_png_rejects_what_it_cannot_draw():
    with pytest.raises(ValueError, match=r"non-empty 2-D array. Received: \(2, 2, 3\)"):
        encode_png(np.zeros((2, 2, 3), np.uint8), palette("Greys"))
    with pytest.raises(ValueError, match=r"Received: \(0, 4\)"):
        encode_png(np.zeros((0, 4), np.uint8), palette("Greys"))


def test_signed_scale_puts_zero_on_white_and_the_ends_on_the_limit():
    a = np.array([-2.0, -1.0, 0.0, 0.5, 2.0])
    s = Scale.for_values(a)
    assert (s.kind, s.limit) == ("signed", 2.0)
    np.testing.assert_array_equal(s.indices(a), [0, 64, 127, 159, 254])  # (a/2 + 1)/2 * 254
    rgb = s.palette[s.indices(a)]
    assert rgb[2].min() >= 245, "0 is (near-)white on RdBu"
    assert rgb[0, 2] > rgb[0, 0] and rgb[-1, 0] > rgb[-1, 2], "negative blue, positive red"
    assert s.ends() == (-2.0, 2.0)


def test_positive_scale_runs_white_to_black():
    a = np.array([0.0, 0.25, 1.0])
    s = Scale.for_values(a)
    assert (s.kind, s.limit) == ("positive", 1.0)
    np.testing.assert_array_equal(s.indices(a), [0, 64, 254])
    assert tuple(s.palette[0]) == (255, 255, 255) and tuple(s.palette[254]) == (0, 0, 0)
    assert Scale.for_values(a, signed=True).kind == "signed"


def test_all_zero_map_is_white_not_a_division_by_zero():
    s = Scale.for_values(np.zeros(4))
    assert s.limit == 1.0 and set(s.indices(np.zeros(4))) == {0}


def test_mosaic_places_tile_t_at_row_t_div_cols():
    tiles = np.arange(5 * 2 * 3, dtype=np.uint8).reshape(5, 2, 3)  # 5 tiles of 2x3
    m = mosaic(tiles, cols=2)
    assert m.shape == (3 * 3 - 1, 2 * 4 - 1)
    for t in range(5):
        r, c = divmod(t, 2)
        np.testing.assert_array_equal(m[r * 3: r * 3 + 2, c * 4: c * 4 + 3], tiles[t])
    assert (m[2, :] == GAP).all() and (m[:, 3] == GAP).all()
    assert (m[6:, 4:] == GAP).all(), "the missing 6th tile is gap"


def test_data_uri():
    png = encode_png(np.zeros((1, 1), np.uint8), palette("Greys"))
    assert data_uri(png).startswith("data:image/png;base64,iVBORw0KGgo")
