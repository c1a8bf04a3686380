"""Output sizes and padding of sliding-window ops, with Keras's rules: the one formula.

A window of size k slid with stride s over n pixels padded by (before, after) fits

    out = (before + n + after - k) // s + 1                       (out_size)

times. Keras's two paddings choose the pads:

'valid': no padding, so out = floor((n - k) / s) + 1 (an error if k > n).
'same':  out = ceil(n / s); total padding max((out - 1) * s + k - n, 0), and the odd
         pixel goes after (bottom/right), as in TensorFlow.

``ConvGeometry`` carries every size a batched kernel needs (the input, the conv's strides and
pads, the pool behind it, and the sizes that follow from them), computed here once, so no
kernel computes an output size of its own.
"""

from __future__ import annotations

from typing import NamedTuple


def out_size(n: int, k: int, s: int, before: int = 0, after: int = 0) -> int:
    """How many windows of size k, stride s, fit n pixels padded by (before, after)."""
    return (before + n + after - k) // s + 1


def window_1d(n: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """Return (out, pad_before, pad_after) for one spatial axis of length n."""
    if padding == "valid":
        if k > n:
            raise ValueError(
                f"Window of size {k} does not fit an input of size {n} with padding='valid'."
            )
        return out_size(n, k, s), 0, 0
    if padding == "same":
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        return out, total // 2, total - total // 2  # and out_size(n, k, s, ...) == out
    raise ValueError(
        f"Invalid value for argument padding. Expected 'valid' or 'same'. "
        f"Received: padding={padding!r}"
    )


def window_2d(
    hw: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int], padding: str
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Return ((H_out, W_out), (pad_top, pad_bottom, pad_left, pad_right))."""
    ho, pt, pb = window_1d(hw[0], kernel[0], strides[0], padding)
    wo, pl, pr = window_1d(hw[1], kernel[1], strides[1], padding)
    return (ho, wo), (pt, pb, pl, pr)


def out_hw(hw, kernel, strides, pads) -> tuple[int, int]:
    """(H_out, W_out) of a window op on an (H, W) image with explicit pads (t, b, l, r)."""
    (H, W), (KH, KW), (sh, sw), (pt, pb, pl, pr) = hw, kernel, strides, pads
    return out_size(H, KH, sh, pt, pb), out_size(W, KW, sw, pl, pr)


class ConvGeometry(NamedTuple):
    """Every size of a conv [+ max-pool] on one (H, W) image, for the batched kernels.

    The conv: kernel KH x KW, strides (sh, sw), pads (pt, pb, pl, pr) on the input, giving the
    padded input Hp x Wp and the output Ho x Wo. The 'valid' max-pool behind it (PH x PW
    windows, strides (psh, psw); 1x1 with strides 1: none) gives Hq x Wq.
    Numba passes it to a kernel as a tuple of ints whose fields it reads by name.
    """

    H: int
    W: int
    KH: int
    KW: int
    sh: int
    sw: int
    pt: int
    pb: int
    pl: int
    pr: int
    Hp: int
    Wp: int
    Ho: int
    Wo: int
    PH: int
    PW: int
    psh: int
    psw: int
    Hq: int
    Wq: int

    @property
    def padded(self) -> bool:
        return self.Hp != self.H or self.Wp != self.W


def conv_geometry(hw, kernel, strides, pads, pool=(1, 1), pool_strides=(1, 1)) -> ConvGeometry:
    """The ConvGeometry of a conv with these sizes, and the 'valid' pool behind it (if any)."""
    (H, W), (KH, KW), (sh, sw), (pt, pb, pl, pr) = hw, kernel, strides, pads
    Ho, Wo = out_hw((H, W), (KH, KW), (sh, sw), (pt, pb, pl, pr))
    (PH, PW), (psh, psw) = pool, pool_strides
    Hq, Wq = out_hw((Ho, Wo), (PH, PW), (psh, psw), (0, 0, 0, 0))
    return ConvGeometry(H, W, KH, KW, sh, sw, pt, pb, pl, pr, pt + H + pb, pl + W + pr,
                        Ho, Wo, PH, PW, psh, psw, Hq, Wq)
