"""Output sizes and padding of sliding-window ops, with Keras's rules.

'valid': out = floor((n - k) / s) + 1, no padding.
'same':  out = ceil(n / s), total padding max((out - 1) * s + k - n, 0), and the odd
         pixel goes after (bottom/right), as in TensorFlow.
"""

from __future__ import annotations


def window_1d(n: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """Return (out, pad_before, pad_after) for one spatial axis of length n."""
    if padding == "valid":
        if k > n:
            raise ValueError(
                f"Window of size {k} does not fit an input of size {n} with padding='valid'."
            )
        return (n - k) // s + 1, 0, 0
    if padding == "same":
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        return out, total // 2, total - total // 2
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
