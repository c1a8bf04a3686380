"""The per-epoch log line in Keras 3's format (keras/src/utils/progbar.py).

    157/157 ━━━━━━━━━━━━━━━━━━━━ 3s 6ms/step - accuracy: 0.9512 - loss: 0.1610

On a terminal the line redraws in place as batches finish; in a log file (not a TTY) only the
finished line is written, so logs stay one line per epoch.
"""

from __future__ import annotations

import sys
import time

WIDTH = 20


def format_value(v: float) -> str:
    """Keras prints |v| > 1e-3 as .4f, smaller ones as .4e."""
    return f"{v:.4f}" if abs(v) > 1e-3 else f"{v:.4e}"


def format_time_per_step(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


class Progbar:
    """Progress over `target` steps; update(current, values) with values a dict of means."""

    def __init__(self, target: int, verbose: int = 1, stream=None, interval: float = 0.05):
        self.target, self.verbose = target, verbose
        self.stream = stream or sys.stdout
        self.dynamic = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval
        self.start = self._last = time.perf_counter()
        self._prev_width = 0

    def line(self, current: int, values: dict, now: float) -> str:
        count = f"{current:>{len(str(self.target))}d}/{self.target}"
        per_step = (now - self.start) / max(current, 1)
        metrics = "".join(f" - {k}: {format_value(v)}" for k, v in sorted(values.items()))
        if self.verbose == 2:  # one plain line per epoch
            return f"{count} - {now - self.start:.0f}s - {format_time_per_step(per_step)}{metrics}"
        filled = int(WIDTH * current / self.target)
        if self.dynamic:  # green for done, grey for to do, as Keras draws it
            bar = f"\x1b[32m{'━' * filled}\x1b[0m\x1b[37m{'━' * (WIDTH - filled)}\x1b[0m"
        else:
            bar = "━" * WIDTH
        if current < self.target:
            eta = per_step * (self.target - current)
            clock = f"{eta:.0f}s" if eta < 60 else f"{int(eta // 60)}:{int(eta % 60):02d}"
        else:
            clock = f"{now - self.start:.0f}s"
        return f"{count} {bar} {clock} {format_time_per_step(per_step)}{metrics}"

    def update(self, current: int, values: dict, finalize: bool | None = None) -> None:
        if self.verbose == 0:
            return
        finalize = current >= self.target if finalize is None else finalize
        now = time.perf_counter()
        if not finalize and (not self.dynamic or now - self._last < self.interval):
            return
        self._last = now
        text = self.line(current, values, now)
        pad = " " * max(self._prev_width - len(text), 0)
        self._prev_width = len(text)
        prefix = "\r" if self.dynamic else ""
        self.stream.write(prefix + text + pad + ("\n" if finalize else ""))
        self.stream.flush()
