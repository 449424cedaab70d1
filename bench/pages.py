"""Server-side time of a rerun of each dashboard page on a cached sample run (goal < 1 s).

``python -m bench.pages`` evaluates the bundled sample into a private store (cached after
the first time), opens each page once through Streamlit's AppTest to warm caches, then times
REPEATS reruns of it and prints the median, and its ratio to the 1 s goal.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = (
    "overview", "confusion", "per_class", "mistakes", "overfitting", "compare", "thresholds",
    "calibration", "leakage", "suspicious", "runs",
)  # fmt: skip
REPEATS = 5
GOAL_S = 1.0


def main() -> int:
    """Print one line per page: median rerun seconds and the ratio to the goal."""
    store = Path(os.environ.get("CLASSLENS_BENCH_STORE", tempfile.mkdtemp(prefix="cl-bench-")))
    os.environ["CLASSLENS_RUNS_DIR"] = str(store / "runs")
    os.environ["CLASSLENS_CACHE_DIR"] = str(store / "cache")
    sys.path.insert(0, str(ROOT))
    from streamlit.testing.v1 import AppTest

    from core.engine.sample import ensure_sample_runs

    run = ensure_sample_runs(store / "runs")["good"]
    print(f"page rerun time, median of {REPEATS}, sample run {run.run_id} (goal < {GOAL_S} s)")
    worst = 0.0
    for page in PAGES:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.query_params["run"] = run.run_id
        at.run()
        if page != "overview":
            at.switch_page(f"pages/{page}.py")
        at.run()  # warm: first open of the page reads the run
        times = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t0)
        if at.exception:
            print(f"{page:<12} raised: {at.exception[0].message}")
            return 1
        med = statistics.median(times)
        worst = max(worst, med)
        print(f"{page:<12} {med * 1000:7.1f} ms   ratio to goal {med / GOAL_S:5.2f}")
    print(f"worst page {worst * 1000:.1f} ms: {'meets' if worst < GOAL_S else 'MISSES'} the goal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
