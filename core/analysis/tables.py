"""Tables the views show, as pandas DataFrames built from metrics.json. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from core.analysis import provenance
from core.analysis.diagnostics import Overfitting, SplitMetrics, Thresholds, class_levels, level_of
from core.contracts import MetricsJson
from core.runs import Run

METRIC_COLUMNS = ("precision", "recall", "f1", "specificity")
SPLIT_ORDER = ("test", "val", "train")  # held-out first: the numbers that matter lead
HEADLINE = {  # metrics.json key path -> label shown in the UI
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro F1",
}


VERDICT_MARK = {"pass": "🟢", "attention": "🟠", "fail": "🔴"}  # core.analysis.health levels


def ordered_splits(splits: Iterable[str]) -> list[str]:
    """Return ``splits`` test first, then val, then train, then any other in given order."""
    splits = list(splits)
    rank = {s: i for i, s in enumerate(SPLIT_ORDER)}
    return sorted(splits, key=lambda s: (rank.get(s, len(rank)), splits.index(s)))


def headline_metric(metrics: MetricsJson) -> str:
    """Return a run's headline number for pickers: the first split's accuracy in test, val,
    train order, "test acc 98.7%" ("no images" when no split has any)."""
    splits = metrics.get("splits", {})
    for split in ordered_splits(splits):
        if splits[split].get("n"):
            return f"{split} acc {splits[split]['accuracy']:.1%}"
    return "no images"


def runs_table(
    runs: Iterable[Run], verdicts: dict[tuple[str, str], tuple[str, str]] | None = None
) -> pd.DataFrame:
    """Return one row per (run, split) with the headline metrics; with ``verdicts``
    {(run_id, split): (level, headline)} (core.analysis.health's), a "verdict" column leads."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        for split, m in run.metrics["splits"].items():
            verdict = (verdicts or {}).get((run.run_id, split))
            rows.append(
                {
                    **({"verdict": f"{VERDICT_MARK[verdict[0]]} {verdict[1]}"} if verdict else {}),
                    "run": run.run_id,
                    "checkpoint": run.meta["checkpoint"]["name"],
                    "architecture": run.meta["architecture"],
                    "dataset": Path(run.meta["dataset"]["root"]).name,
                    "split": split,
                    "images": m["n"],
                    "accuracy": m["accuracy"],
                    "balanced accuracy": m["balanced_accuracy"],
                    "macro F1": m["macro"]["f1"],
                    "worst class recall": min(
                        (c["recall"] for c in m["per_class"] if c["support"]), default=0.0
                    ),
                    "skipped files": len(m["skipped"]),
                    "created": run.meta.get("created", ""),
                }
            )
    return pd.DataFrame(rows)


def headline_table(metrics: MetricsJson) -> pd.DataFrame:
    """Return one row per split, test first: split, n, accuracy, balanced_accuracy, macro_f1."""
    splits = metrics["splits"]
    return pd.DataFrame(
        [
            {
                "split": s,
                "n": int(splits[s]["n"]),
                "accuracy": splits[s]["accuracy"],
                "balanced_accuracy": splits[s]["balanced_accuracy"],
                "macro_f1": splits[s]["macro"]["f1"],
            }
            for s in ordered_splits(splits)
        ],
        columns=["split", "n", *HEADLINE],
    )


def class_status(row: dict[str, Any] | pd.Series, t: Thresholds) -> str:
    """Return "bad", "needs attention" or "good" for one class's precision and recall.

    Without the confusion matrix a class is taken as predicted when it has support or a
    non-zero precision (see :func:`core.analysis.diagnostics.class_levels`).
    """
    entry = {k: row[k] for k in ("class", "precision", "recall", "support")}
    return class_levels(cast(SplitMetrics, {"per_class": [entry]}), t)[0]  # reads per_class only


def per_class_table(m: SplitMetrics, t: Thresholds = Thresholds()) -> pd.DataFrame:
    """Return one row per class (class, precision, recall, f1, specificity, support, status)."""
    df = pd.DataFrame(m["per_class"])
    if df.empty:
        return pd.DataFrame(columns=["class", *METRIC_COLUMNS, "support", "status"])
    df = df[["class", *METRIC_COLUMNS, "support"]].copy()
    df["status"] = class_levels(m, t)
    return df


CLASS_SORTS = {  # sort key of class_view -> (what the selector says, ascending)
    "f1": ("worst F1 first", True),
    "recall": ("worst recall first", True),
    "precision": ("worst precision first", True),
    "support": ("most images first", False),
    "class": ("class name", True),
}


def class_view(table: pd.DataFrame, *, query: str = "", sort: str = "f1") -> pd.DataFrame:
    """Return the rows of a per_class_table whose class name contains ``query`` (any case),
    sorted by ``sort`` (a :data:`CLASS_SORTS` key; ties keep class order), index kept."""
    if sort not in CLASS_SORTS:
        raise ValueError(f"sort must be one of {', '.join(CLASS_SORTS)}, got {sort!r}.")
    q = query.strip().lower()
    rows = table[table["class"].str.lower().str.contains(q, regex=False)] if q else table
    return rows.sort_values(sort, ascending=CLASS_SORTS[sort][1], kind="stable")


def averages_table(m: SplitMetrics) -> pd.DataFrame:
    """Return the macro and weighted average rows (class = "macro avg" / "weighted avg")."""
    rows = [
        {"class": f"{kind} avg", **{k: m[kind][k] for k in ("precision", "recall", "f1")},
         "support": m["n"]}
        for kind in ("macro", "weighted")
    ]  # fmt: skip
    return pd.DataFrame(rows)


def failing_classes(m: SplitMetrics, t: Thresholds = Thresholds()) -> pd.DataFrame:
    """Return the classes whose status is not "good", worst first.

    Columns: class, status, weakest (the failing metric's name), score (its value),
    precision, recall, support.
    """
    df = per_class_table(m, t)
    df = df[df["status"] != "good"].copy()
    cols = ["class", "status", "weakest", "score", "precision", "recall", "support"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    recall_first = (df["recall"] <= df["precision"]) & (df["support"] > 0)
    df["weakest"] = np.where(recall_first, "recall", "precision")
    df["score"] = np.where(recall_first, df["recall"], df["precision"])
    return df.sort_values("score", kind="stable")[cols].reset_index(drop=True)


def per_class_csv(m: SplitMetrics, t: Thresholds = Thresholds()) -> bytes:
    """Return the per-class table as UTF-8 CSV (full precision), averages rows appended."""
    from core.analysis.exports import csv_bytes  # the one CSV writer (formula cells neutralised)

    table = pd.concat([per_class_table(m, t), averages_table(m)], ignore_index=True)
    return csv_bytes(table)


def split_comparison(metrics: MetricsJson, ov: Overfitting) -> pd.DataFrame:
    """Return the headline metrics per split side by side, train first, and the gap.

    Index: "accuracy", "balanced accuracy", "macro F1"; columns: train, [val], test (those
    present) and "gap" (train minus ``ov.other``).
    """
    head = headline_table(metrics).set_index("split")[list(HEADLINE)]
    head.columns = list(HEADLINE.values())
    table = head.T[[s for s in reversed(SPLIT_ORDER) if s in head.index]]
    table["gap"] = table["train"] - table[ov.other]
    return table


def recall_by_split(metrics: dict[str, Any], ov: Overfitting) -> pd.DataFrame:
    """Return per-class recall per split with the train-minus-held-out gap, largest gap first.

    Columns: class, train, [val], [test], gap; rows follow ``ov.class_gaps``.
    """
    splits = metrics["splits"]
    present = [s for s in reversed(SPLIT_ORDER) if s in splits]
    recall = {
        s: {c["class"]: c["recall"] for c in splits[s]["per_class"] if c["support"] > 0}
        for s in present
    }
    rows = [
        {"class": g.name, **{s: recall[s].get(g.name, np.nan) for s in present}, "gap": g.gap}
        for g in ov.class_gaps
    ]
    return pd.DataFrame(rows, columns=["class", *present, "gap"])


def outcome_stats(predictions: pd.DataFrame, column: str) -> pd.DataFrame:
    """Return box-plot statistics of ``column`` per split and outcome (correct / wrong).

    predictions: one row per image with split, y_true, y_pred and ``column``. Columns: split,
    outcome, n, mean, q1, median, q3, lowerfence, upperfence (Tukey whiskers: the most
    extreme values within 1.5 IQR of the quartiles), min, max. Splits are test first; empty
    groups are left out.
    """
    correct = predictions["y_true"].to_numpy() == predictions["y_pred"].to_numpy()
    rows = []
    for split in ordered_splits(predictions["split"].unique()):
        in_split = predictions["split"].to_numpy() == split
        for outcome, mask in (("correct", correct), ("wrong", ~correct)):
            x = predictions.loc[in_split & mask, column].to_numpy(dtype=np.float64)
            if x.size == 0:
                continue
            q1, med, q3 = np.percentile(x, [25, 50, 75])
            iqr = q3 - q1
            rows.append(
                {
                    "split": split,
                    "outcome": outcome,
                    "n": int(x.size),
                    "mean": float(x.mean()),
                    "q1": float(q1),
                    "median": float(med),
                    "q3": float(q3),
                    "lowerfence": float(x[x >= q1 - 1.5 * iqr].min()),
                    "upperfence": float(x[x <= q3 + 1.5 * iqr].max()),
                    "min": float(x.min()),
                    "max": float(x.max()),
                }
            )
    cols = ["split", "outcome", "n", "mean", "q1", "median", "q3", "lowerfence", "upperfence"]
    return pd.DataFrame(rows, columns=[*cols, "min", "max"])


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{int(s // 60)} min {int(s % 60):02d} s"


def image_counts(meta: dict[str, Any], metrics: dict[str, Any]) -> pd.DataFrame:
    """Return per split, test first: found (image files the scan kept, the dataset card's
    count), evaluated (metrics.json's n, the headline count), unreadable (found but not
    evaluated: failed to decode) and set_aside (other skipped files: not images, hidden, ...)."""
    found = meta.get("dataset", {}).get("splits", {})
    if "slice" in meta:  # Run.subset: its images are those kept, none skipped (not unreadable)
        found = meta["slice"].get("n_by_split", {})
    rows = []
    for split in ordered_splits(metrics.get("splits", {})):
        m = metrics["splits"][split]
        n_found = int(found.get(split, m["n"]))
        unreadable = n_found - int(m["n"])
        rows.append(
            {"split": split, "found": n_found, "evaluated": int(m["n"]),
             "unreadable": unreadable, "set_aside": len(m.get("skipped", [])) - unreadable}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=["split", "found", "evaluated", "unreadable", "set_aside"])


def count_note(meta: dict[str, Any], metrics: dict[str, Any], split: str) -> str:
    """Return why ``split``'s headline image count is what it is when files were skipped:
    evaluated of found, and the files set aside by the scan ("" when nothing was skipped)."""
    counts = image_counts(meta, metrics).set_index("split")
    if split not in counts.index:
        return ""
    c = counts.loc[split]
    parts = []
    if c.unreadable:
        noun = "file" if c.unreadable == 1 else "files"
        parts.append(
            f"{c.evaluated:,} of the {c.found:,} {split} images found were evaluated: "
            f"{c.unreadable:,} {noun} could not be read"
        )
    if c.set_aside > 0:
        noun = "file was" if c.set_aside == 1 else "files were"
        parts.append(
            f"{c.set_aside:,} other {noun} not counted as images (not an image, hidden or "
            "outside a class folder)"
        )
    return "; ".join(parts) + ". Every one is listed under Skipped files." if parts else ""


def _classes_text(meta: dict[str, Any]) -> str:
    """Return "10", or "10 (2 not in the dataset: cat, dog)" when the test set holds a subset."""
    n = len(meta.get("class_names", []))
    absent = meta.get("absent_classes") or []
    if not absent:
        return str(n)
    shown = ", ".join(absent[:5]) + (", ..." if len(absent) > 5 else "")
    where = "with no image in this slice" if "slice" in meta else "not in the dataset"
    return f"{n} ({len(absent)} {where}: {shown})"


def _root_text(root: str | None, server_paths: bool) -> str:
    if not root:
        return "–"
    return root if server_paths else (Path(root).name or "–")


def run_facts(
    meta: dict[str, Any], metrics: dict[str, Any] | None = None, *, server_paths: bool = True
) -> dict[str, list[tuple[str, str]]]:
    """Return the run's facts as {section: [(label, text), ...]} from meta.json, formatted.

    Sections: Checkpoint, Model, Dataset, Evaluation. Missing fields read "–". With
    ``metrics`` a split whose evaluated count differs from the files found reads
    "599 evaluated of 600 found", as the headline shows the evaluated count.
    ``server_paths=False`` (hosted mode) gives the dataset root as its folder name only: a
    visitor learns nothing of the server's file system.
    """
    ck = meta.get("checkpoint", {})
    ds = meta.get("dataset", {})
    tm = meta.get("timings", {})
    counts = ds.get("splits", {})
    seconds = sum(tm.get(k, 0.0) for k in ("load_s", "scan_s", "inference_s"))

    evaluated = {s: m["n"] for s, m in (metrics or {}).get("splits", {}).items()}

    def _found(split: str) -> str:
        n = evaluated.get(split, counts[split])
        if "slice" in meta:  # the dataset's count, then the slice's (none were unreadable)
            return f"{counts[split]:,} ({evaluated.get(split, 0):,} in this slice)"
        return (
            f"{counts[split]:,}"
            if n == counts[split]
            else f"{n:,} evaluated of {counts[split]:,} found"
        )

    return {
        "Checkpoint": [
            ("file", ck.get("name", "–")),
            ("sha256", ck.get("sha256", "")[:12] or "–"),
            ("format", ck.get("format", "–")),
            ("trusted", "yes" if ck.get("trusted") else "no (safe load)"),
        ],
        "Model": [
            ("architecture", meta.get("architecture", "–")),
            ("classes", _classes_text(meta)),
            # each setting with where it came from: "64px (probed on train)", "(declared)"
            ("input", provenance.input_text(meta)),
            ("mean / std", provenance.normalisation_text(meta)),
        ],
        "Dataset": [
            ("root", _root_text(ds.get("root"), server_paths)),
            *((f"{s} images", _found(s)) for s in ordered_splits(counts)),
            ("skipped files", str(len(meta.get("skipped", [])))),
        ],
        "Evaluation": [
            ("device", meta.get("device", "–")),
            ("time taken", _seconds(seconds) if tm else "–"),
            ("speed", f"{tm['images_per_s']:,.0f} images/s" if "images_per_s" in tm else "–"),
            ("created", meta.get("created", "–")),
        ],
    }


def skipped_table(meta: dict[str, Any]) -> pd.DataFrame:
    """Return the files the evaluation skipped: split, path, reason (one row each)."""
    return pd.DataFrame(meta.get("skipped", []), columns=["split", "path", "reason"])


CELL_COLORS = {  # translucent, so the text stays readable in light and dark themes
    "bad": "background-color: rgba(214, 39, 40, 0.28)",
    "needs attention": "background-color: rgba(255, 159, 28, 0.30)",
    "good": "background-color: rgba(44, 160, 44, 0.20)",
}


def cell_styles(table: pd.DataFrame, t: Thresholds = Thresholds()) -> pd.DataFrame:
    """Return CSS per cell of a per_class_table: score cells colored by their own level
    (core.analysis.diagnostics.level_of), the status cell by the class's status, others blank.

    Recall is blank for classes without images (undefined), as is precision for classes
    never predicted (score 0 and status not driven by it).
    """
    css = pd.DataFrame("", index=table.index, columns=table.columns)
    for col in ("precision", "recall", "f1", "specificity"):
        if col in table:
            css[col] = [CELL_COLORS[level_of(v, t)] for v in table[col]]
    if "recall" in table:
        css.loc[table["support"] == 0, "recall"] = ""
    if "status" in table:
        css["status"] = [CELL_COLORS[s] for s in table["status"]]
    return css


def styled_per_class(table: pd.DataFrame, t: Thresholds = Thresholds()) -> Any:
    """Return a pandas Styler of a per_class_table: percentages and threshold colors."""
    pct_cols = [c for c in METRIC_COLUMNS if c in table]
    return (
        table.style.apply(lambda _: cell_styles(table, t), axis=None)
        .format("{:.1%}", subset=pct_cols)
        .format("{:,}", subset=["support"])
    )


def styled_failing(failing: pd.DataFrame) -> Any:
    """Return a pandas Styler of a failing_classes table: the status and score cells colored
    by the class's status, the score as a percentage."""
    css = pd.DataFrame("", index=failing.index, columns=failing.columns)
    for col in ("status", "score"):
        if col in failing:
            css[col] = [CELL_COLORS[s] for s in failing["status"]]
    return failing.style.apply(lambda _: css, axis=None).format("{:.1%}", subset=["score"])


def points_delta(before: float, after: float, *, digits: int = 1) -> str | None:
    """Return the change between two shares as shown, ``f"{x:.{digits}%}"``, in signed points,
    "+1.2 pts", or None when both show the same: a delta arrow only for a visible change."""
    shown = [float(f"{x:.{digits}%}".rstrip("%")) for x in (before, after)]
    d = round(shown[1] - shown[0], digits)
    return None if d == 0 else f"{d:+.{digits}f} pts"


def count_delta(before: int, after: int) -> str | None:
    """Return ``after - before`` signed, "-11", or None when equal (no metric delta arrow)."""
    return None if after == before else f"{after - before:+,}"
