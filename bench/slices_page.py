"""The Slices page at 50,000 test images (+10,000 train) x 20 metadata columns (issue 14's
goal: page rerun < 1 s).

The synthetic run of ``bench.synthetic`` (100 classes) gains a ``metadata.csv`` of 10
categorical and 10 numeric columns keyed by each image's path, attached the way the CLI's
``--metadata`` does (``core.engine.metadata.attach``); the page is then opened through AppTest
like ``bench.dashboard`` (first open: reads the run, searches single conditions and pairs over
the metadata and the true/predicted class) and re-run ``REPEATS`` times. The synthetic run has
no image files, so image properties are not part of this figure (``bench.slices`` times them).

``python -m bench.slices_page``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 1.0
REPEATS = 3


def main(n_test: int = 50_000, n_classes: int = 100) -> int:
    """Print the Slices page's first open, median rerun (ratio to 1 s) and bytes sent."""
    sys.path.insert(0, str(ROOT))
    from bench import dashboard, synthetic
    from core.engine import metadata
    from core.images import columns

    store = Path(tempfile.mkdtemp(prefix="cl-bench-slices-"))
    run = synthetic.write_run(store / "runs", n_test=n_test, n_classes=n_classes)
    paths = columns.root_paths(run)
    rng = np.random.default_rng(0)
    data: dict[str, object] = {"path": paths}
    for i in range(10):
        data[f"cat{i}"] = rng.choice([f"v{j}" for j in range(4 + i % 5)], len(paths))
    for i in range(10):
        data[f"num{i}"] = rng.normal(size=len(paths))
    csv = store / "metadata.csv"
    pd.DataFrame(data).to_csv(csv, index=False)
    t0 = time.perf_counter()
    metadata.attach(run, csv, paths)
    attach_s = time.perf_counter() - t0
    restore = dashboard._isolate(store)
    try:
        r = dashboard.time_pages(run.run_id, ("slices",), repeats=REPEATS)["slices"]
    finally:
        restore()
    print(f"slices page, synthetic run ({n_test:,} test + {len(paths) - n_test:,} train images, "
          f"{n_classes} classes, 20 metadata columns): attach {attach_s:.2f} s, first open "
          f"{r['first']:.2f} s, median of {REPEATS} reruns {r['rerun'] * 1000:.0f} ms (ratio "
          f"{r['rerun'] / GOAL_S:.2f} to the {GOAL_S:g} s goal), "
          f"sent {r['bytes'] / 1e6:.3f} MB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
