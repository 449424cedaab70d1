"""Suspicious labels: images whose given label the model confidently disputes.

The rule is the *confident joint* of confident learning (Northcutt, Jiang & Chuang, "Confident
Learning: Estimating Uncertainty in Dataset Labels", JAIR 2021), without cleanlab:

1. Per-class threshold ``t_c`` = the mean of ``probs[:, c]`` over the images labelled ``c``
   (the model's average self-confidence on class ``c``). A class no image is labelled with
   gets ``t_c = inf``: nothing can be confidently assigned to it.
2. For each image, the classes ``j`` with ``probs[j] >= t_j`` are its *confident* classes; the
   one with the highest ``probs[j]`` (lowest index on ties) is its suggested label.
3. The image is *suspicious* when it has a suggested label and that label differs from the
   given one.

Suspicious images are ranked by the margin ``probs[suggested] - probs[given]``, largest first
(ties: the lower row first); ``order="self_confidence"`` ranks by ``probs[given]``, lowest
first. Thresholds are computed over the rows handed in (typically one split), so a split is
judged by its own class averages. The probabilities are the model's in-sample ones, not the
cross-validated ones the paper asks for: treat the list as images to review, not as errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

# The model disputes a label *confidently* only when it gives the suggested class at least this
# probability (more than all other classes together). The confident-joint threshold alone can
# be low: a class the model is unsure of has a low average self-confidence.
CONFIDENT_PROB = 0.5

OrderKey = Literal["margin", "self_confidence"]
ORDER_LABELS: dict[str, str] = {
    "margin": "Largest margin first (suggested − given)",
    "self_confidence": "Lowest self-confidence first",
}
COLUMNS = (
    "row",  # index into run.predictions() / run.probs()
    "split",
    "path",
    "y_true",  # the given label (class index)
    "y_suggested",  # the confident-joint label (class index)
    "given",  # class names of the two
    "suggested",
    "self_confidence",  # probs[given]
    "suggested_confidence",  # probs[suggested]
    "margin",  # suggested_confidence - self_confidence, > 0 unless tied
)


def _check(probs: Any, y_true: Any) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs)
    if not np.issubdtype(probs.dtype, np.floating):
        probs = probs.astype(np.float64)
    # float32 stays float32: comparisons with the float64 thresholds are exact either way,
    # and a float64 copy of 50,000 x 1,000 probabilities is 400 MB.
    y_true = np.asarray(y_true)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (n, n_classes), got shape {probs.shape}.")
    if y_true.shape != (probs.shape[0],):
        raise ValueError(
            f"y_true must have one label per probs row: got shape {y_true.shape} for "
            f"{probs.shape[0]} rows."
        )
    if y_true.size and (y_true.min() < 0 or y_true.max() >= probs.shape[1]):
        raise ValueError(
            f"labels must lie in [0, {probs.shape[1]}) for {probs.shape[1]} classes, found "
            f"{y_true.min()}..{y_true.max()}."
        )
    return probs, y_true.astype(np.int64)


def class_thresholds(probs: Any, y_true: Any) -> np.ndarray:
    """Return (n_classes,) thresholds: the mean probs[:, c] over rows labelled c (inf if none).

    probs: (n, n_classes); y_true: (n,) given labels.
    """
    probs, y_true = _check(probs, y_true)
    k = probs.shape[1]
    counts = np.bincount(y_true, minlength=k)
    sums = np.zeros(k)
    np.add.at(sums, y_true, probs[np.arange(len(y_true)), y_true])
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)


def suggested_labels(probs: Any, y_true: Any) -> np.ndarray:
    """Return (n,) confident-joint labels: each row's most probable class among those at or
    above their class threshold, or -1 when no class is; probs (n, n_classes)."""
    probs, y_true = _check(probs, y_true)
    above = probs >= class_thresholds(probs, y_true)[None, :]
    masked = np.where(above, probs, -np.inf)
    best = masked.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    return np.where(above.any(axis=1), best, -1).astype(np.int64)


def suspicious_labels(
    predictions: pd.DataFrame,
    probs: Any,
    *,
    class_names: Sequence[str],
    splits: Sequence[str] | None = None,
    order: OrderKey = "margin",
) -> pd.DataFrame:
    """Return the suspicious rows (the module's rule), ranked, with the COLUMNS above.

    predictions: ``run.predictions()`` (split, path, y_true, ...); probs: ``run.probs()``,
    (n, n_classes), same rows. splits: the splits to judge (None or empty: all), thresholds
    computed over those rows only.
    """
    if order not in ORDER_LABELS:
        raise ValueError(f"order must be one of {', '.join(ORDER_LABELS)}, got {order!r}.")
    probs = np.asarray(probs)
    if len(probs) != len(predictions):
        raise ValueError(
            f"probs has {len(probs)} rows but predictions has {len(predictions)}; pass "
            "run.predictions() with run.probs()."
        )
    keep = np.ones(len(predictions), dtype=bool)
    if splits:
        keep = predictions["split"].isin(list(splits)).to_numpy()
    rows = np.flatnonzero(keep)
    block = len(rows) and rows[-1] - rows[0] + 1 == len(rows)  # one block, as runs are written
    p = probs[rows[0] : rows[-1] + 1] if block else probs[rows]  # a view there, not a copy
    given = predictions["y_true"].to_numpy()[rows].astype(np.int64)
    suggested = suggested_labels(p, given)
    flag = (suggested >= 0) & (suggested != given)
    rows, p, given, suggested = rows[flag], p[flag], given[flag], suggested[flag]
    own = p[np.arange(len(rows)), given].astype(np.float64)
    other = p[np.arange(len(rows)), suggested].astype(np.float64)
    names = np.asarray(list(class_names), dtype=object)
    out = pd.DataFrame(
        {
            "row": predictions.index.to_numpy()[rows],
            "split": predictions["split"].to_numpy()[rows].astype(str),
            "path": predictions["path"].to_numpy()[rows].astype(str),
            "y_true": given,
            "y_suggested": suggested,
            "given": names[given],
            "suggested": names[suggested],
            "self_confidence": own,
            "suggested_confidence": other,
            "margin": other - own,
        },
        columns=list(COLUMNS),
    )
    key = (-out["margin"]) if order == "margin" else out["self_confidence"]
    ranked = np.lexsort((out["row"].to_numpy(), key.to_numpy()))
    return out.iloc[ranked].reset_index(drop=True)


def to_csv(table: pd.DataFrame) -> bytes:
    """Return a suspicious_labels table as UTF-8 CSV bytes (no index; probabilities as is;
    text cells that start like a formula neutralised, as in every download)."""
    from core.analysis.exports import csv_bytes

    return csv_bytes(table)


def dispute_sentence(table: pd.DataFrame) -> str:
    """Return how many rows of a suspicious_labels table the model disputes confidently, i.e.
    with ``suggested_confidence >= CONFIDENT_PROB``, and the probabilities of the others
    (markdown; "" for an empty table)."""
    n = len(table)
    if not n:
        return ""
    p = table["suggested_confidence"].to_numpy(np.float64)
    sure = p >= CONFIDENT_PROB
    k = int(sure.sum())
    rule = f"the suggested class gets at least {CONFIDENT_PROB:.0%}"
    if k == n:
        low = f" (lowest {p.min():.0%})" if n > 1 else f" ({p.min():.0%})"
        every = "it" if n == 1 else f"all {n:,}"
        return f"The model disputes {every} **confidently**: {rule}{low}."
    weak = p[~sure]
    lo, hi = f"{weak.min():.0%}", f"{weak.max():.0%}"
    span = lo if lo == hi else f"{lo} to {hi}"
    hint = (
        f"the suggested class gets only {span}: it reaches that class's average "
        "self-confidence, yet the model is not sure. Treat these as weak hints"
    )
    if k == 0:
        what = "it" if n == 1 else "any of them"
        return f"The model does not dispute {what} confidently (that takes {rule}); {hint}."
    return (
        f"**{k:,}** of {n:,} are **confident** disputes ({rule}); for the other {n - k:,}, {hint}."
    )
