"""Time to compute every page's data for a 50,000-image, 1,000-class run, against sklearn.

``python -m bench.analysis`` writes (or finds) the synthetic run of bench/synthetic.py, loads
it, then times the same core functions each page calls (figures excluded: they only draw
these numbers) and scikit-learn's ``classification_report`` + ``confusion_matrix`` on the
same test-split arrays. Each figure is the median of REPEATS; goals: the metrics faster than
scikit-learn, and the label-based pages' data under 0.5 s in all. Probability views
(thresholds, calibration, suspicious labels) read all 50 million probabilities and are
reported on their own lines.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPEATS = 3
GOAL_S = 0.5


def _median(fn: Callable[[], Any], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def page_work(run: Any, split: str = "test") -> dict[str, Callable[[], Any]]:
    """Return {page: a function computing that page's data} for ``run``, as the pages do."""
    from core.analysis import (  # fmt: skip
        calibration,
        confusion,
        diagnostics,
        metrics,
        suspicious,
        tables,
    )
    from core.analysis import thresholds as th
    from core.figures import confusion_image
    from core.images import gallery

    t = diagnostics.Thresholds()
    names = run.class_names
    m = run.metrics["splits"][split]
    other = "test" if "test" in run.splits else split

    def overview() -> Any:
        verdict = diagnostics.health(m, t), diagnostics.imbalance_warning(m, t)
        heads = tables.headline_table(run.metrics)
        return verdict, heads, tables.failing_classes(m, t), tables.per_class_table(m, t)

    def confusion_page() -> Any:
        res = confusion.split_results(run.predictions(), split, names)
        pairs = confusion.most_confused_pairs(res.cm, names)
        targets = confusion_image.target_cells(res.cm, range(len(names)))
        i, j = (pairs["true_idx"].iloc[0], pairs["pred_idx"].iloc[0]) if len(pairs) else (0, 0)
        z = confusion_image.intensity(confusion.normalize_cm(res.cm), None, float(res.cm.max()))
        return pairs, targets, res.cell_rows(int(i), int(j)), z

    def per_class() -> Any:
        table = tables.per_class_table(m, t)
        return tables.class_view(table, sort="f1"), tables.averages_table(m)

    def mistakes() -> Any:
        rows = gallery.filter_mistakes(run.predictions(), splits=[split])
        return gallery.sort_rows(rows, "confidence")

    def overfitting() -> Any:
        if "train" not in run.splits:
            return None
        ov = diagnostics.overfitting(run.metrics, t, other=other)
        return (tables.split_comparison(run.metrics, ov), tables.recall_by_split(run.metrics, ov),
                tables.outcome_stats(run.predictions(), "loss"))  # fmt: skip

    def metrics_report() -> Any:
        df = run.predictions()
        part = df[df["split"] == split]
        return metrics.split_report(part["y_true"].to_numpy(), part["y_pred"].to_numpy(),
                                    class_names=names)  # fmt: skip

    def thresholds_page() -> Any:
        rows, probs = th.split_rows(run.predictions(), run.probs(), split)
        y = rows["y_true"].to_numpy()
        return th.class_curves(y, probs, 0), th.class_table(y, probs, names)

    def calibration_page() -> Any:
        rows, _ = th.split_rows(run.predictions(), run.probs(), split)
        cols = (rows[c].to_numpy() for c in ("y_true", "y_pred", "confidence"))
        return calibration.top_label(*cols)

    def suspicious_page() -> Any:
        return suspicious.suspicious_labels(
            run.predictions(), run.probs(), class_names=names, splits=[split]
        )

    return {
        "metrics (split_report)": metrics_report,
        "overview": overview,
        "confusion": confusion_page,
        "per_class": per_class,
        "mistakes": mistakes,
        "overfitting": overfitting,
        "calibration": calibration_page,
        "suspicious": suspicious_page,
        "thresholds": thresholds_page,
    }


PROBABILITY_PAGES = ("suspicious", "thresholds")  # read every probability, not only labels


def sklearn_work(run: Any, split: str = "test") -> Callable[[], Any]:
    """Return scikit-learn's classification_report + confusion_matrix on the split's labels."""
    from sklearn.metrics import classification_report, confusion_matrix

    df = run.predictions()
    part = df[df["split"] == split]
    y_true, y_pred = part["y_true"].to_numpy(), part["y_pred"].to_numpy()
    labels = np.arange(len(run.class_names))

    def work() -> Any:
        report = classification_report(
            y_true, y_pred, labels=labels, output_dict=True, zero_division=0
        )
        return report, confusion_matrix(y_true, y_pred, labels=labels)

    return work


def measure(run: Any, repeats: int = REPEATS) -> dict[str, float]:
    """Return median seconds per page's data and for "sklearn" on the loaded ``run``."""
    run.predictions(), run.probs()  # loading is bench/memory's subject, not this one's
    out = {page: _median(fn, repeats) for page, fn in page_work(run).items()}
    out["sklearn"] = _median(sklearn_work(run), repeats)
    return out


def main(n_test: int = 50_000, n_classes: int = 1_000) -> int:
    """Print each page's data time, the label-based total, and the ratios to the goals."""
    from bench import synthetic

    store = Path(os.environ.get("CLASSLENS_BENCH_STORE", tempfile.mkdtemp(prefix="cl-bench-")))
    run = synthetic.write_run(store / "runs", n_test=n_test, n_classes=n_classes)
    n = run.metrics["splits"]["test"]["n"]
    print(f"page data on the synthetic run ({n:,} test images, {n_classes:,} classes), "
          f"median of {REPEATS}")  # fmt: skip
    t = measure(run)
    for page, s in t.items():
        print(f"  {page:<24} {s * 1000:8.1f} ms")
    label_pages = [p for p in t if p not in (*PROBABILITY_PAGES, "sklearn")]
    total = sum(t[p] for p in label_pages)
    ratio = t["metrics (split_report)"] / t["sklearn"]
    print(f"metrics vs sklearn classification_report+confusion_matrix: ratio {ratio:.3f} "
          f"({'faster' if ratio < 1 else 'SLOWER'})")  # fmt: skip
    print(f"label-based pages in all {total * 1000:.1f} ms: ratio to the {GOAL_S} s goal "
          f"{total / GOAL_S:.2f} ({'meets' if total < GOAL_S else 'MISSES'})")  # fmt: skip
    everything = total + sum(t[p] for p in PROBABILITY_PAGES)
    verdict = "meets" if everything < GOAL_S else "MISSES"
    print(f"every page incl. probability views {everything * 1000:.1f} ms: ratio to the goal "
          f"{everything / GOAL_S:.2f} ({verdict})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
