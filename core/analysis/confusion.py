"""Confusion-matrix analysis that keeps the path to the pixels.

:class:`ConfusionResults` holds one split's counts together with the prediction rows behind
every cell (as FiftyOne's results do), so any count on screen can be opened as its images.
Normalised views, the ranked most-confused pairs and the default class filter for large
label sets are plain functions over the count matrix; core.figures.confusion draws it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from core.analysis import metrics
from core.analysis.diagnostics import plural

Normalize = Literal["true", "pred"] | None
# The heatmap's views: name -> (what the selector says, the normalisation it applies).
VIEWS: dict[str, tuple[str, Normalize]] = {
    "count": ("Counts", None),
    "true": ("% of true class (recall)", "true"),
    "pred": ("% of predicted class (precision)", "pred"),
}
PAIRS_FROM = 30  # from this many classes on, the heatmap opens on the most confused classes
PAIR_COLUMNS = ["true", "predicted", "count", "share_of_true", "true_idx", "pred_idx"]


@dataclass(frozen=True)
class ConfusionResults:
    """One split's confusion matrix and the prediction rows behind each of its cells."""

    class_names: tuple[str, ...]  # label order of both axes
    cm: np.ndarray  # (n_classes, n_classes) int64 counts; rows true, columns predicted
    y_true: np.ndarray  # (n,) int64 class indices
    y_pred: np.ndarray  # (n,) int64 class indices
    rows: np.ndarray  # (n,) int64 row labels of the samples, e.g. run.predictions().index

    @property
    def n_classes(self) -> int:
        """Return the number of classes (the matrix side)."""
        return len(self.class_names)

    def cell_rows(self, true_idx: int, pred_idx: int) -> np.ndarray:
        """Return the row labels of the samples of true class ``true_idx`` predicted
        ``pred_idx``, in their original order; its length is ``cm[true_idx, pred_idx]``."""
        for name, idx in (("true_idx", true_idx), ("pred_idx", pred_idx)):
            if not 0 <= idx < self.n_classes:
                raise ValueError(
                    f"{name} must be a class index in [0, {self.n_classes}), got {idx}."
                )
        return self.rows[(self.y_true == true_idx) & (self.y_pred == pred_idx)]


def confusion_results(
    y_true: Any, y_pred: Any, *, class_names: Sequence[str], rows: Any = None
) -> ConfusionResults:
    """Return the confusion results of one split.

    y_true, y_pred: (n,) class indices into class_names; rows: (n,) labels that identify each
    sample (default 0..n-1), e.g. ``df.index`` of the split's slice of ``run.predictions()``.
    """
    n_classes = len(class_names)
    cm = metrics.confusion_matrix(y_true, y_pred, n_classes=n_classes)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    rows = np.arange(len(y_true)) if rows is None else np.asarray(rows, dtype=np.int64)
    if rows.shape != y_true.shape:
        raise ValueError(
            f"rows must label each of the {len(y_true)} samples, got shape {rows.shape}. "
            "Pass the index of the predictions the labels came from."
        )
    return ConfusionResults(tuple(str(c) for c in class_names), cm, y_true, y_pred, rows)


def split_results(
    predictions: pd.DataFrame, split: str, class_names: Sequence[str]
) -> ConfusionResults:
    """Return the :class:`ConfusionResults` of ``split`` from a run's predictions table,
    keeping the table's index as the rows behind each cell."""
    part = predictions[predictions["split"] == split]
    return confusion_results(
        part["y_true"].to_numpy(),
        part["y_pred"].to_numpy(),
        class_names=class_names,
        rows=part.index.to_numpy(),
    )


def normalize_cm(cm: Any, normalize: Normalize = None) -> np.ndarray:
    """Return ``cm`` as float64: raw counts, or divided by the true-class totals (``"true"``,
    rows sum to 1) or the predicted-class totals (``"pred"``, columns sum to 1).

    An empty row or column stays 0.0, as scikit-learn's ``confusion_matrix(normalize=...)``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if normalize is None:
        return cm
    if normalize not in ("true", "pred"):
        raise ValueError(f"normalize must be None, 'true' or 'pred', got {normalize!r}.")
    totals = cm.sum(axis=1, keepdims=True) if normalize == "true" else cm.sum(axis=0)
    return np.divide(cm, totals, out=np.zeros_like(cm), where=totals != 0)


def most_confused_pairs(
    cm: Any, class_names: Sequence[str], *, top: int | None = None
) -> pd.DataFrame:
    """Return the off-diagonal cells with at least one sample, most frequent first.

    A DataFrame with columns true, predicted (names), count, share_of_true (count over the
    true class's support) and true_idx, pred_idx; ties keep the class order. ``top`` keeps the
    first rows only.
    """
    cm = np.asarray(cm, dtype=np.int64)
    if cm.shape != (len(class_names), len(class_names)):
        raise ValueError(
            f"cm is {cm.shape} but there are {len(class_names)} class names. "
            "Pass the class names of the matrix's axes."
        )
    off = cm.copy()
    np.fill_diagonal(off, 0)
    ti, pi = np.nonzero(off)  # row-major: class order breaks ties below
    counts = off[ti, pi]
    order = np.argsort(-counts, kind="stable")
    if top is not None:
        order = order[:top]
    ti, pi, counts = ti[order], pi[order], counts[order]
    support = cm.sum(axis=1)
    return pd.DataFrame(
        {
            "true": [str(class_names[int(i)]) for i in ti],
            "predicted": [str(class_names[int(j)]) for j in pi],
            "count": counts.astype(np.int64),
            "share_of_true": counts / support[ti] if len(ti) else np.zeros(0),
            "true_idx": ti.astype(np.int64),
            "pred_idx": pi.astype(np.int64),
        },
        columns=PAIR_COLUMNS,
    )


def pairs_of_class(pairs: pd.DataFrame, c: int) -> pd.DataFrame:
    """Return the rows of :func:`most_confused_pairs` that class ``c`` is in, as true or as
    predicted class, in the same order (most frequent first)."""
    return pairs[(pairs["true_idx"] == c) | (pairs["pred_idx"] == c)]


def listed_pairs(pairs: pd.DataFrame, found: int | None, *, limit: int) -> tuple[pd.DataFrame, int]:
    """Return (the pairs a view lists, how many more exist than it lists): every pair of the
    searched class ``found``, else the ``limit`` most frequent pairs."""
    if found is not None:
        return pairs_of_class(pairs, found), 0
    return pairs.head(limit), max(0, len(pairs) - limit)


def opening_cell(pairs: pd.DataFrame, c: int | None = None) -> tuple[int, int]:
    """Return the (true, predicted) cell a view opens on, from :func:`most_confused_pairs`.

    Without ``c``: the most confused pair, (0, 0) when nothing is confused. With class ``c``:
    its most frequent mistake as true class, else as predicted class, else its own diagonal
    cell (all its images right, and nothing taken for it).
    """
    if c is None:
        rows = pairs
    else:
        rows = pairs[pairs["true_idx"] == c]
        if rows.empty:
            rows = pairs[pairs["pred_idx"] == c]
    if rows.empty:
        return (0, 0) if c is None else (c, c)
    return int(rows["true_idx"].iloc[0]), int(rows["pred_idx"].iloc[0])


def focus_classes(cm: Any, *, n_pairs: int = 10) -> list[int]:
    """Return the class indices in the ``n_pairs`` most confused pairs, in class order
    (every class when nothing is confused), the default class filter for large label sets."""
    cm = np.asarray(cm)
    pairs = most_confused_pairs(cm, [str(i) for i in range(len(cm))], top=n_pairs)
    if pairs.empty:
        return list(range(len(cm)))
    return sorted(set(pairs["true_idx"]) | set(pairs["pred_idx"]))


def _percent(share: float) -> str:
    if share == 0:
        return "0%"
    if share < 0.01:
        return "<1%"
    if share > 0.99 and share < 1:
        return ">99%"
    return f"{share:.0%}"


def cell_text(cm: Any, normalize: Normalize = None) -> np.ndarray:
    """Return the (n, n) labels written in the cells: counts, or percentages of the chosen
    normalisation; empty cells are blank so the mistakes stand out."""
    cm = np.asarray(cm, dtype=np.int64)
    shares = normalize_cm(cm, normalize)
    text = np.full(cm.shape, "", dtype=object)
    for i, j in zip(*np.nonzero(cm), strict=True):
        text[i, j] = str(cm[i, j]) if normalize is None else _percent(shares[i, j])
    return text


def cell_heading(n_images: int, true_name: str, pred_name: str) -> str:
    """Return the heading over one cell's images, names as they are to be shown:
    "1 image: true 'cat' predicted 'dog'", "1,200 images: ..."."""
    return f"{plural(n_images, 'image')}: true '{true_name}' predicted '{pred_name}'"
