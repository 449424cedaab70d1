"""Robustness under corruptions: the clean run against its derived (corrupted) runs, pure.

A derived run (core/images/robustness.py) holds the predictions of the run's checkpoint on
corrupted copies of some images of one split (all of them, or a stratified sample), at one
corruption and severity, with the clean run's ``path`` values. Everything here compares each
image with itself: the clean prediction is read from the clean run's row of the same path, so
every corrupted number sits beside the clean number of exactly the same images.

The score, defined once (the page's help text says the same):

    relative corruption error of corruption c, over the chosen severities S (each >= 1):
        RCE_c = (1 / |S|) * sum over s in S of (E_{c,s} - E_clean)
    mean relative corruption error: mRCE = the mean of RCE_c over the chosen corruptions.

E is the error rate (1 - accuracy) on the same images. It is ImageNet-C's relative mCE
(Hendrycks & Dietterich, 2019: sum_s (E_{c,s} - E_clean) / sum_s (E^AlexNet_{c,s} -
E^AlexNet_clean)) without the reference model's denominator, which a user's own task does not
have, and averaged over severities instead, so a corruption with one level (hflip) weighs as
much as one with five. It reads in error points: RCE 0.12 = the error is 12 points above the
clean error on average over the severities; 0 = no loss; negative = corrupted images do better.
Severity 0 (the identity) is left out of the score and of first flips.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from core.runs import Run

Key = tuple[str, int]  # (corruption, severity)
FRAME_COLUMNS = (
    "corruption",
    "severity",
    "path",
    "y_true",
    "clean_pred",
    "clean_confidence",
    "y_pred",
    "confidence",
    "row",
)


def outcomes(
    clean: pd.DataFrame, derived: Mapping[Key, pd.DataFrame], *, split: str
) -> pd.DataFrame:
    """Return one row per (corruption, severity, image): its clean and corrupted prediction.

    clean: the clean run's ``predictions()`` (split, path, y_true, y_pred, confidence).
    derived: (corruption, severity) -> that derived run's ``predictions()`` (its images are
    some of the clean run's ``split`` images, matched by ``path``).
    Columns: FRAME_COLUMNS; ``row`` is the image's row in its derived run (for its gallery).
    Raises ValueError when a derived run holds a path the clean split has not, or a path whose
    true class differs from the clean run's (it was not derived from this run).
    """
    base = clean.loc[clean["split"] == split, ["path", "y_true", "y_pred", "confidence"]]
    if base["path"].duplicated().any():
        raise ValueError(f"the clean run's {split} split lists a path twice; re-evaluate it.")
    base = base.rename(columns={"y_pred": "clean_pred", "confidence": "clean_confidence"})
    parts = []
    for (corruption, severity), df in derived.items():
        d = df[["path", "y_true", "y_pred", "confidence"]].assign(row=np.arange(len(df)))
        merged = d.merge(base, on="path", how="left", suffixes=("", "_clean"), validate="1:1")
        missing = merged["clean_pred"].isna()
        if missing.any():
            raise ValueError(
                f"the {corruption} severity {severity} run holds {int(missing.sum())} image(s) "
                f"the clean run's {split} split has not (e.g. {merged['path'][missing].iloc[0]!r})"
                ": it was derived from another run or split. Recompute it from this run."
            )
        if (merged["y_true"] != merged["y_true_clean"]).any():
            raise ValueError(
                f"the {corruption} severity {severity} run gives other true classes than the "
                "clean run for the same images: it was derived from another run. Recompute it."
            )
        parts.append(
            merged.drop(columns="y_true_clean").assign(corruption=corruption, severity=severity)
        )
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in FRAME_COLUMNS})
    frame = pd.concat(parts, ignore_index=True)[list(FRAME_COLUMNS)]
    frame["clean_pred"] = frame["clean_pred"].astype(np.int64)
    frame["severity"] = frame["severity"].astype(np.int64)
    return frame.sort_values(["corruption", "severity", "row"], kind="stable", ignore_index=True)


def from_runs(clean: Run, derived: Sequence[Run]) -> pd.DataFrame:
    """Return ``outcomes`` of derived runs (meta ``corruption``, ``severity``, one split)."""
    if not derived:
        return outcomes(clean.predictions(), {}, split="")
    splits = {s for r in derived for s in r.splits}
    if len(splits) != 1:
        raise ValueError(f"derived runs of one split expected, got splits {sorted(splits)}")
    table = {(str(r.meta["corruption"]), int(r.meta["severity"])): r.predictions() for r in derived}
    return outcomes(clean.predictions(), table, split=splits.pop())


def within(frame: pd.DataFrame, paths: Collection[str]) -> pd.DataFrame:
    """Return the rows of ``frame`` whose image is in ``paths`` (a slice of the split)."""
    return frame[frame["path"].isin(set(paths))].reset_index(drop=True)


def clean_accuracy(frame: pd.DataFrame) -> float:
    """Return the clean run's accuracy on the images of ``frame``, each image counted once
    (NaN when there is none)."""
    images = frame.drop_duplicates("path")
    if images.empty:
        return float("nan")
    return float((images["clean_pred"] == images["y_true"]).mean())


def severity_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Return one row per (corruption, severity): n, accuracy, error, clean_accuracy (the
    clean run on the same n images) and drop = clean_accuracy - accuracy, severity ascending.
    """
    f = frame.assign(
        correct=frame["y_pred"] == frame["y_true"],
        clean_correct=frame["clean_pred"] == frame["y_true"],
    )
    g = f.groupby(["corruption", "severity"], sort=True)
    out = g.agg(
        n=("correct", "size"),
        accuracy=("correct", "mean"),
        clean_accuracy=("clean_correct", "mean"),
    ).reset_index()
    out["n"] = out["n"].astype(np.int64)
    out["accuracy"] = out["accuracy"].astype(float)
    out["clean_accuracy"] = out["clean_accuracy"].astype(float)
    out["error"] = 1.0 - out["accuracy"]
    out["drop"] = out["clean_accuracy"] - out["accuracy"]
    return out[["corruption", "severity", "n", "accuracy", "error", "clean_accuracy", "drop"]]


def relative_corruption_error(frame: pd.DataFrame) -> pd.DataFrame:
    """Return one row per corruption: severities (how many, >= 1), rce (see the module
    docstring: the mean over severities of E_{c,s} - E_clean), worst (its severity of
    lowest accuracy) and that accuracy; worst rce first."""
    t = severity_table(frame)
    t = t[t["severity"] >= 1]
    if t.empty:
        return pd.DataFrame(
            {"corruption": [], "severities": [], "rce": [], "worst": [], "worst_accuracy": []}
        )
    t = t.assign(increase=t["error"] - (1.0 - t["clean_accuracy"]))
    worst = t.loc[
        t.groupby("corruption")["accuracy"].idxmin(), ["corruption", "severity", "accuracy"]
    ]
    out = (
        t.groupby("corruption")
        .agg(severities=("severity", "size"), rce=("increase", "mean"))
        .reset_index()
        .merge(worst.rename(columns={"severity": "worst", "accuracy": "worst_accuracy"}))
    )
    return out.sort_values(["rce", "corruption"], ascending=[False, True], ignore_index=True)


def mean_relative_corruption_error(frame: pd.DataFrame) -> float:
    """Return mRCE, the mean of ``relative_corruption_error``'s rce over corruptions (NaN
    when no corruption at severity >= 1 is present)."""
    rce = relative_corruption_error(frame)["rce"]
    return float(rce.mean()) if len(rce) else float("nan")


def class_drops(
    frame: pd.DataFrame, class_names: Sequence[str], *, corruption: str | None = None
) -> pd.DataFrame:
    """Return per class: support (its images in the sample), clean_recall, corrupted_recall
    (the mean over the chosen (corruption, severity) runs, severity >= 1, of its recall in
    each), drop = clean_recall - corrupted_recall, and the run where its recall is lowest
    (worst_corruption, worst_severity, worst_recall); largest drop first. Classes without an
    image in the sample are left out.

    corruption: only that corruption's severities (default: every corruption).
    """
    f = frame[frame["severity"] >= 1]
    if corruption is not None:
        f = f[f["corruption"] == corruption]
    columns = ["class", "support", "clean_recall", "corrupted_recall", "drop",
               "worst_corruption", "worst_severity", "worst_recall"]  # fmt: skip
    if f.empty:
        return pd.DataFrame({c: [] for c in columns})
    f = f.assign(correct=f["y_pred"] == f["y_true"], clean_correct=f["clean_pred"] == f["y_true"])
    per_run = (
        f.groupby(["y_true", "corruption", "severity"])
        .agg(n=("correct", "size"), recall=("correct", "mean"))
        .reset_index()
    )
    worst = per_run.loc[per_run.groupby("y_true")["recall"].idxmin()].set_index("y_true")
    images = f.drop_duplicates("path").groupby("y_true")["clean_correct"]  # each image once
    out = pd.DataFrame(
        {
            "class": [class_names[int(c)] for c in worst.index],
            "support": images.size().to_numpy(dtype=np.int64),
            "clean_recall": images.mean().to_numpy(dtype=float),
            "corrupted_recall": per_run.groupby("y_true")["recall"].mean().to_numpy(dtype=float),
            "worst_corruption": worst["corruption"].to_numpy(),
            "worst_severity": worst["severity"].astype(np.int64).to_numpy(),
            "worst_recall": worst["recall"].astype(float).to_numpy(),
        }
    )
    out["drop"] = out["clean_recall"] - out["corrupted_recall"]
    out = out.sort_values(["drop", "class"], ascending=[False, True], kind="stable")
    return out[columns].reset_index(drop=True)


def first_flips(frame: pd.DataFrame, corruption: str) -> pd.DataFrame:
    """Return the images whose prediction under ``corruption`` differs from their clean one
    at some chosen severity >= 1, one row each: path, y_true, clean_pred, clean_confidence,
    severity (the lowest at which it changed), y_pred and confidence there, row (in that
    severity's derived run), clean_correct. Order: lowest severity first, then images the
    clean run got right (a right answer lost), then the most confident clean prediction.
    """
    f = frame[(frame["corruption"] == corruption) & (frame["severity"] >= 1)]
    f = f[f["y_pred"] != f["clean_pred"]].sort_values(["path", "severity"], kind="stable")
    first = f.drop_duplicates("path", keep="first")
    first = first.assign(clean_correct=first["clean_pred"] == first["y_true"])
    first = first.sort_values(
        ["severity", "clean_correct", "clean_confidence", "path"],
        ascending=[True, False, False, True],
        kind="stable",
    )
    return first[
        [
            "path",
            "y_true",
            "clean_pred",
            "clean_confidence",
            "severity",
            "y_pred",
            "confidence",
            "row",
            "clean_correct",
        ]  # fmt: skip
    ].reset_index(drop=True)


def flip_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Return per (corruption, severity >= 1): n, and flipped, the images whose prediction
    differs from the clean one there (any direction)."""
    f = frame[frame["severity"] >= 1]
    f = f.assign(flipped=f["y_pred"] != f["clean_pred"])
    out = (
        f.groupby(["corruption", "severity"])
        .agg(n=("flipped", "size"), flipped=("flipped", "sum"))
        .reset_index()
    )
    return out.astype({"n": np.int64, "flipped": np.int64})
