"""A text progress bar for stderr: images/s and time left, redrawn in place on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressBar:
    """Callable as ``bar(done, total)``; on a pipe it prints a line every 10% instead."""

    def __init__(self, label: str = "evaluating", stream: TextIO | None = None) -> None:
        self.label, self.stream = label, stream or sys.stderr
        self.start = time.perf_counter()
        self.tty = self.stream.isatty()
        self._last_decile = -1

    def __call__(self, done: int, total: int) -> None:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = done / elapsed
        left = (total - done) / rate if rate > 0 else 0.0
        frac = done / total if total else 1.0
        line = (
            f"{self.label} {done}/{total} [{'#' * int(frac * 30):<30}] "
            f"{rate:,.0f} img/s, {_clock(left)} left"
        )
        if self.tty:
            self.stream.write("\r" + line + ("\n" if done >= total else ""))
            self.stream.flush()
        elif int(frac * 10) > self._last_decile or done >= total:
            self._last_decile = int(frac * 10)
            print(line, file=self.stream, flush=True)
