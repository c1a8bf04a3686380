"""The conv shapes the benchmark times, their FLOP counts, inputs, and reduced twins.

A Problem is one conv layer applied to one batch: x (N, H, W, C), w (KH, KW, C, F), stride,
'valid' or 'same' padding, and a (2, 2) max-pool after it for the fused passes. Every pass is
credited with the dense conv work 2*N*Ho*Wo*F*KH*KW*C FLOPs (one multiply and one add per
kernel tap), whatever an implementation actually executes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from minicnn.kernels.geometry import window_2d

PASSES = ("forward", "backward_input", "backward_weights", "fused_forward", "fused_backward")
POOL = (2, 2)  # the seed model's MaxPooling2D, the pool of the fused passes


@dataclass(frozen=True)
class Problem:
    """One conv layer on one batch.  x (N, H, W, C), w (KH, KW, C, F) -> out (N, Ho, Wo, F)."""

    name: str
    N: int
    H: int
    W: int
    C: int
    F: int
    KH: int = 3
    KW: int = 3
    padding: str = "valid"
    strides: tuple[int, int] = (1, 1)
    note: str = ""

    @property
    def geometry(self):
        """((Ho, Wo), (pad_top, pad_bottom, pad_left, pad_right)), Keras's rules."""
        return window_2d((self.H, self.W), (self.KH, self.KW), self.strides, self.padding)

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.geometry[0]

    @property
    def pads(self) -> tuple[int, int, int, int]:
        return self.geometry[1]

    @property
    def pooled_hw(self) -> tuple[int, int]:
        """(Hp, Wp) of the 2x2/2 'valid' max-pool after the conv: floor(Ho / 2)."""
        ho, wo = self.out_hw
        return ho // POOL[0], wo // POOL[1]

    def flops(self) -> int:
        """2*N*Ho*Wo*F*KH*KW*C: the dense conv work, the same for every pass."""
        ho, wo = self.out_hw
        return 2 * self.N * ho * wo * self.F * self.KH * self.KW * self.C

    def label(self) -> str:
        """A short description: 'N=128 28x28 1->32 3x3 valid'."""
        s = "" if self.strides == (1, 1) else f" s{self.strides[0]}"
        return (
            f"N={self.N} {self.H}x{self.W} {self.C}->{self.F} {self.KH}x{self.KW} {self.padding}{s}"
        )

    def as_dict(self) -> dict:
        (ho, wo), pads = self.geometry
        d = asdict(self)
        d.update(
            Ho=ho,
            Wo=wo,
            pads=list(pads),
            strides=list(self.strides),
            flops=self.flops(),
            label=self.label(),
        )
        return d


def _pair(name, N, H, C, F, note):
    return [
        Problem(f"{name}-valid", N, H, H, C, F, padding="valid", note=note),
        Problem(f"{name}-same", N, H, H, C, F, padding="same", note=note),
    ]


# The tiny shapes are for --quick and the tests: every code path (C > 1, padding, odd sizes)
# at a cost the naive loops can afford.
TINY = [
    Problem("tiny-valid", 4, 8, 9, 3, 4, padding="valid", note="smoke test"),
    Problem("tiny-same", 3, 7, 7, 2, 5, padding="same", note="smoke test"),
]
FULL = [
    *_pair("seed", 128, 28, 1, 32, "the seed model's conv layer"),
    *_pair("deep2", 128, 26, 32, 64, "the deep variant's second conv"),
    Problem("seed-b1", 1, 28, 28, 1, 32, note="batch-1 latency, seed layer"),
    Problem("deep2-b1", 1, 26, 26, 32, 64, note="batch-1 latency, deep layer"),
    *_pair("large", 16, 56, 64, 64, "a larger layer"),
]
QUICK = [*TINY, FULL[0]]
ALL = {p.name: p for p in TINY + FULL}


def make_inputs(p: Problem, seed: int = 0, dtype=np.float32) -> dict:
    """Random float32 inputs of every pass, Glorot-scaled so values stay O(1).

    Returns x (N, H, W, C), w (KH, KW, C, F), b (F,), dout (N, Ho, Wo, F), dpool (N, Hp, Wp, F).
    """
    rng = np.random.default_rng(seed)
    ho, wo = p.out_hw
    hp, wp = p.pooled_hw
    scale = np.sqrt(6.0 / (p.KH * p.KW * (p.C + p.F)))
    return {
        "x": rng.standard_normal((p.N, p.H, p.W, p.C)).astype(dtype),
        "w": rng.uniform(-scale, scale, (p.KH, p.KW, p.C, p.F)).astype(dtype),
        "b": rng.uniform(-0.1, 0.1, p.F).astype(dtype),
        "dout": rng.standard_normal((p.N, ho, wo, p.F)).astype(dtype),
        "dpool": rng.standard_normal((p.N, hp, wp, p.F)).astype(dtype),
    }


def reduced(p: Problem, max_flops: float, min_n: int = 1) -> Problem:
    """The largest twin of p within max_flops: fewer samples first, then a smaller image.

    Channels, kernel, stride and padding are kept, so the twin runs the same code paths.
    The image never shrinks below what gives a 2x2 pooled output (it may then exceed the
    budget).
    """
    q = replace(p, N=max(min(p.N, min_n), 1))
    n = p.N
    while n > q.N and replace(p, N=n).flops() > max_flops:
        n = max(q.N, n // 2)
    q = replace(p, N=n)
    while q.flops() > max_flops:
        smaller = replace(q, H=q.H - 1, W=q.W - 1)
        if min(smaller.pooled_hw) < 2 or min(smaller.H, smaller.W) < max(p.KH, p.KW):
            break  # the smallest twin with a 2x2 pooled output: over budget, but it must do
        q = smaller
    if q != p:
        q = replace(q, name=f"{p.name}@N{q.N}-{q.H}x{q.W}")
    return q


def crop_inputs(inputs: dict, q: Problem) -> dict:
    """The inputs of reduced twin q: the first q.N samples and the top-left q.H x q.W pixels.

    dout and dpool are cropped to the twin's own output sizes (new random numbers are not
    needed: any values exercise the same arithmetic).
    """
    ho, wo = q.out_hw
    hp, wp = q.pooled_hw
    return {
        "x": np.ascontiguousarray(inputs["x"][: q.N, : q.H, : q.W]),
        "w": inputs["w"],
        "b": inputs["b"],
        "dout": np.ascontiguousarray(inputs["dout"][: q.N, :ho, :wo]),
        "dpool": np.ascontiguousarray(inputs["dpool"][: q.N, :hp, :wp]),
    }
