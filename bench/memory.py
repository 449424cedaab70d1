"""Peak memory (RSS) of opening a 50,000-image, 1,000-class run (goal < 1.5 GB).

``python -m bench.memory`` writes (or finds) the synthetic run of bench/synthetic.py, then
in a fresh subprocess per case loads it and computes what the case's pages need, and reads
the subprocess's peak resident set size: ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, and
``VmHWM`` from /proc/self/status where there is one. Linux keeps ru_maxrss across exec, so a
child forked from a big parent (``python -m bench`` after the other benchmarks) reports the
parent's size; VmHWM belongs to the new program only, so it is the figure used when present:

- ``open``: the run listed and loaded, predictions read, the Overview and Confusion data;
- ``open + probs``: the same plus ``run.probs()`` (what Thresholds, Calibration and
  Suspicious labels add), the float16 vectors widened to float32;
- ``baseline``: the same imports with no run, to show what the run itself costs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_MB = 1500.0
CASES = ("baseline", "open", "open + probs")

# Run in the child: the same imports as a page, then the case's work, then the peak RSS in MB.
CHILD = """
import resource, sys
sys.path.insert(0, {root!r})
import numpy, pandas, plotly.graph_objects, pyarrow.parquet
from core.analysis import confusion, diagnostics, tables
from core.figures import confusion as confusion_fig
from core.runs import RunStore
case = {case!r}
if case != "baseline":
    run = RunStore({store!r}).get({rid!r})
    m = run.metrics["splits"]["test"]
    t = diagnostics.Thresholds()
    diagnostics.health(m, t), tables.per_class_table(m, t), tables.failing_classes(m, t)
    res = confusion.split_results(run.predictions(), "test", run.class_names)
    confusion.most_confused_pairs(res.cm, run.class_names)
    confusion_fig.matrix_figure(res.cm, run.class_names, image=True).figure.to_json()
    if case == "open + probs":
        run.probs()
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
try:
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    print(maxrss, int(hwm.split()[1]) / 1024)
except OSError:
    print(maxrss, maxrss)
"""


def peak_mb(store: str | Path, rid: str, case: str) -> float:
    """Return the peak RSS in MB of a fresh process doing ``case`` on run ``rid`` (VmHWM,
    or ru_maxrss where /proc is missing)."""
    code = CHILD.format(root=str(ROOT), store=str(store), rid=rid, case=case)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    return float(out.stdout.strip().splitlines()[-1].split()[1])


def main(n_test: int = 50_000, n_classes: int = 1_000) -> int:
    """Print each case's peak RSS and its ratio to the 1.5 GB goal."""
    sys.path.insert(0, str(ROOT))
    from bench import synthetic

    store = Path(os.environ.get("CLASSLENS_BENCH_STORE", tempfile.mkdtemp(prefix="cl-bench-")))
    run = synthetic.write_run(store / "runs", n_test=n_test, n_classes=n_classes)
    n = run.meta["n_predictions"]
    mb = run.meta["predictions_bytes"] / 1e6
    print(f"peak RSS opening the synthetic run ({n:,} images, {n_classes:,} classes, "
          f"predictions.parquet {mb:.0f} MB), goal < {GOAL_MB:.0f} MB")  # fmt: skip
    worst = 0.0
    for case in CASES:
        peak = peak_mb(store / "runs", run.run_id, case)
        if case != "baseline":
            worst = max(worst, peak)
        print(f"  {case:<14} {peak:8.0f} MB   ratio to goal {peak / GOAL_MB:5.2f}")
    print(f"worst {worst:.0f} MB: {'meets' if worst < GOAL_MB else 'MISSES'} the goal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
