"""The Compare page's paired bootstrap: 1000 resamples of 3000 rows, 10 classes, two models.

Timed here rather than asserted in a test (a shared machine makes a timed assertion flaky);
``tests/test_compare.py`` checks the resamples against scikit-learn. Goal: under 1 s, best of
REPEATS. ``python -m bench.bootstrap [n_rows] [n_classes]``.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from core.analysis import compare

GOAL_S = 1.0
REPEATS = 3


def measure(n: int = 3000, k: int = 10, repeats: int = REPEATS) -> float:
    """Return the best time in seconds of ``compare.bootstrap`` (default 1000 resamples) on a
    90%-right and a 75%-right model over ``n`` rows of ``k`` classes."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, k, n)
    preds = np.stack([np.where(rng.random(n) < a, y, rng.integers(0, k, n)) for a in (0.9, 0.75)])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        compare.bootstrap(y, preds, n_classes=k)
        best = min(best, time.perf_counter() - start)
    return best


def main(n: int = 3000, k: int = 10) -> int:
    """Print the best bootstrap time and its ratio to the goal."""
    s = measure(n, k)
    verdict = "meets" if s < GOAL_S else "MISSES"
    print(f"bootstrap, 1000 resamples x {n:,} rows x {k} classes x 2 models: {s * 1000:.0f} ms, "
          f"ratio to the {GOAL_S:.0f} s goal {s / GOAL_S:.2f} ({verdict})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:3])))
