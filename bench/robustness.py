"""Robustness (issue 15): what a derived run costs against the clean forward pass, how close
the page's time estimate is, and what the child process adds.

On the bundled sample's good checkpoint (test split, CPU), in one process and one run:
``inference.predict`` without a corruption, then with each corruption at ``SEVERITY`` (the
ratio says what corrupting the decoded images adds per image); ``robustness.estimate`` against
the measured ``corrupted_run`` of every corruption (the page shows the estimate before
starting); and one derived run through ``robustness_worker`` (a child process) against the
same in-process. ``python -m bench.robustness [repeats]``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from core.engine import corruptions, inference
from core.engine.evaluate import evaluate
from core.engine.sample import CHECKPOINTS, DATASET
from core.images import gallery, gradcam, robustness, robustness_worker
from core.runs import RunStore

SEVERITY = 3


def main(repeats: int = 3) -> int:
    """Print the measurements (median of ``repeats`` for the per-corruption timings)."""
    with tempfile.TemporaryDirectory(prefix="classlens-bench-") as tmp:
        store = RunStore(Path(tmp) / "runs")
        run = evaluate(CHECKPOINTS["good"], DATASET, runs_dir=store.root, device="cpu")
        df = run.predictions()
        df = df[df["split"] == "test"]
        files = [gallery.image_path(run, "test", p) for p in df["path"]]
        keys = tuple(f"test/{p}" for p in df["path"])
        y = df["y_true"].to_numpy()
        module = robustness.load_model(run.meta).module
        prep = gradcam.run_preprocessing(run.meta)
        cpu = inference.resolve_device("cpu")

        def timed(corrupt: corruptions.Corrupt | None) -> float:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                inference.predict(
                    module, files, y, prep, device=cpu, batch_size=64, corrupt=corrupt
                )
                times.append(time.perf_counter() - t0)
            return float(np.median(times))

        clean = timed(None)
        print(
            f"{len(files)} test images, clean predict {clean:.3f} s "
            f"({len(files) / clean:,.0f} img/s)"
        )
        for name in corruptions.CORRUPTIONS:
            level = min(SEVERITY, corruptions.CORRUPTIONS[name])
            t = timed(corruptions.Corrupt(name, level, keys))
            print(f"  {name:<16} s{level}: {t:.3f} s, x{t / clean:.2f} of clean")

        names = list(corruptions.CORRUPTIONS)
        n, guess = robustness.estimate(run, "test", None, names, [SEVERITY], store=store)
        t0 = time.perf_counter()
        for name in names:
            level = min(SEVERITY, corruptions.CORRUPTIONS[name])
            robustness.corrupted_run(store, run, "test", name, level)
        spent = time.perf_counter() - t0
        print(
            f"estimate {guess:.1f} s for {n:,} images; measured {spent:.1f} s "
            f"(x{spent / guess:.2f})"
        )

        mine = [("blur", 1), ("blur", 2), ("rotate", 1), ("rotate", 2)]
        theirs = [("blur", 4), ("blur", 5), ("rotate", 4), ("rotate", 5)]
        t0 = time.perf_counter()
        for name, level in mine:
            robustness.corrupted_run(store, run, "test", name, level, sample=200, seed=1)
        here = time.perf_counter() - t0
        t0 = time.perf_counter()
        robustness_worker.corrupted_runs(store, run, "test", theirs, sample=200, seed=1)
        child = time.perf_counter() - t0
        print(f"four derived runs of 200 images: in process {here:.2f} s, one child {child:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:])))
