"""One-vs-rest decision thresholds: precision-recall and ROC curves per class, and what a
threshold on ``P(class)`` buys ("predict c when P(c) >= t"). Pure: numpy and pandas only
(core.figures.thresholds draws the curves).

For class ``c`` the positives are the rows with ``y_true == c`` and the score is
``probs[:, c]``. Curves follow scikit-learn's conventions (``precision_recall_curve``,
``roc_curve``), so :attr:`ClassCurves.average_precision` and :attr:`ClassCurves.roc_auc` equal
``average_precision_score`` and ``roc_auc_score``. A class with no positives (or, for ROC, no
negatives) has no defined AP / AUC: both are NaN here, without a warning (scikit-learn warns
and returns 0.0 for AP and NaN for AUC).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.analysis.diagnostics import plural


def _check(y_true: Any, scores: Any, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (positives (n,) bool, class scores (n,) float64) after checking shapes."""
    y_true = np.asarray(y_true)
    scores = np.asarray(scores)  # only column c becomes float64: (50k, 1k) would be 400 MB
    if scores.ndim != 2:
        raise ValueError(f"scores must be (n, n_classes) probabilities, got shape {scores.shape}.")
    if y_true.ndim != 1 or len(y_true) != len(scores):
        raise ValueError(
            f"y_true must be (n,) with n = {len(scores)} rows of scores, got shape {y_true.shape}."
        )
    if not 0 <= c < scores.shape[1]:
        raise ValueError(f"class index {c} is out of range: scores have {scores.shape[1]} columns.")
    return y_true == c, scores[:, c].astype(np.float64)


@dataclass(frozen=True)
class ClassCurves:
    """Cumulative counts at every distinct score of one class, highest score first."""

    thresholds: np.ndarray  # (m,) distinct scores, decreasing: "predict c when P(c) >= t"
    tp: np.ndarray  # (m,) positives with score >= threshold
    fp: np.ndarray  # (m,) negatives with score >= threshold
    n_pos: int  # rows of the class (support)
    n_neg: int  # rows of the other classes

    @property
    def recall(self) -> np.ndarray:
        """Return recall, (m + 1,), starting at 0 (nothing flagged); NaN without positives."""
        if self.n_pos == 0:
            return np.full(len(self.tp) + 1, np.nan)
        return np.concatenate([[0.0], self.tp / self.n_pos])

    @property
    def precision(self) -> np.ndarray:
        """Return precision, (m + 1,), starting at 1 (nothing flagged), as scikit-learn."""
        flagged = self.tp + self.fp
        return np.concatenate([[1.0], self.tp / np.maximum(flagged, 1)])

    @property
    def fpr(self) -> np.ndarray:
        """Return the false-positive rate, (m + 1,), starting at 0; NaN without negatives."""
        if self.n_neg == 0:
            return np.full(len(self.fp) + 1, np.nan)
        return np.concatenate([[0.0], self.fp / self.n_neg])

    @property
    def tpr(self) -> np.ndarray:
        """Return the true-positive rate (recall), (m + 1,), starting at 0."""
        return self.recall

    @property
    def average_precision(self) -> float:
        """Return AP = sum of (recall step) x precision, as scikit-learn; NaN without positives."""
        if self.n_pos == 0:
            return float("nan")
        return float(np.sum(np.diff(self.recall) * self.precision[1:]))

    @property
    def roc_auc(self) -> float:
        """Return the area under the ROC curve (trapezoids); NaN without both outcomes."""
        if self.n_pos == 0 or self.n_neg == 0:
            return float("nan")
        return float(np.trapezoid(self.tpr, self.fpr))


def split_rows(
    predictions: pd.DataFrame, probs: Any, split: str
) -> tuple[pd.DataFrame, np.ndarray]:
    """Return the rows of ``split`` (index kept) and their probabilities, (m, n_classes).

    predictions, probs: ``run.predictions()`` and ``run.probs()``, aligned by row.
    """
    keep = (predictions["split"] == split).to_numpy()
    idx = np.flatnonzero(keep)
    if len(idx) and idx[-1] - idx[0] + 1 == len(idx):  # one block of rows (as runs are
        return predictions[keep], np.asarray(probs)[idx[0] : idx[-1] + 1]  # written): a view
    return predictions[keep], np.asarray(probs)[keep]


def class_curves(y_true: Any, scores: Any, c: int) -> ClassCurves:
    """Return the one-vs-rest counts of class ``c`` at every distinct score.

    y_true: (n,) class indices; scores: (n, n_classes) probabilities.
    """
    pos, s = _check(y_true, scores, c)
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], pos[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.array([], int)
    tp = np.cumsum(pos)[last]
    fp = (last + 1) - tp
    n_pos = int(pos.sum())
    return ClassCurves(s[last], tp, fp, n_pos, len(s) - n_pos)


def average_precision_score(y_true: Any, scores: Any, c: int) -> float:
    """Return class ``c``'s one-vs-rest average precision (NaN when it has no rows)."""
    return class_curves(y_true, scores, c).average_precision


def roc_auc_score(y_true: Any, scores: Any, c: int) -> float:
    """Return class ``c``'s one-vs-rest ROC AUC (NaN when it has no rows, or only its rows)."""
    return class_curves(y_true, scores, c).roc_auc


@dataclass(frozen=True)
class ThresholdPoint:
    """What "predict class c when P(c) >= threshold" gives, one-vs-rest."""

    threshold: float
    precision: float  # tp / (tp + fp); NaN when nothing is flagged
    recall: float  # tp / (tp + fn); NaN when the class has no rows
    tp: int  # class rows flagged
    fp: int  # other rows flagged (false alarms)
    fn: int  # class rows missed
    tn: int  # other rows correctly left out

    @property
    def flagged(self) -> int:
        """Return how many rows are flagged (tp + fp)."""
        return self.tp + self.fp


def _point(threshold: float, tp: int, fp: int, n_pos: int, n_neg: int) -> ThresholdPoint:
    flagged = tp + fp
    return ThresholdPoint(
        threshold=float(threshold),
        precision=tp / flagged if flagged else float("nan"),
        recall=tp / n_pos if n_pos else float("nan"),
        tp=int(tp),
        fp=int(fp),
        fn=int(n_pos - tp),
        tn=int(n_neg - fp),
    )


def at_threshold(y_true: Any, scores: Any, c: int, threshold: float) -> ThresholdPoint:
    """Return precision, recall and counts of "predict ``c`` when P(c) >= ``threshold``"."""
    pos, s = _check(y_true, scores, c)
    flag = s >= threshold
    tp, fp = int((flag & pos).sum()), int((flag & ~pos).sum())
    return _point(threshold, tp, fp, int(pos.sum()), int((~pos).sum()))


def threshold_for_recall(y_true: Any, scores: Any, c: int, target: float) -> ThresholdPoint | None:
    """Return the highest threshold (a score of the data) whose recall for ``c`` is at least
    ``target``, with the precision it costs; None when class ``c`` has no rows.

    target: in (0, 1]. Lowering the threshold only adds flagged rows, so the highest such
    threshold is also the one with the fewest false alarms.
    """
    if not 0 < target <= 1:
        raise ValueError(f"target recall must be in (0, 1], got {target}.")
    curves = class_curves(y_true, scores, c)
    if curves.n_pos == 0:
        return None
    i = int(np.argmax(curves.tp / curves.n_pos >= target))  # recall reaches 1 at the end
    return _point(curves.thresholds[i], curves.tp[i], curves.fp[i], curves.n_pos, curves.n_neg)


def class_table(y_true: Any, scores: Any, class_names: Sequence[str]) -> pd.DataFrame:
    """Return one row per class: class, support, average precision, ROC AUC (NaN if undefined).

    scores: (n, n_classes) probabilities, columns in ``class_names`` order.
    """
    columns = ["class", "support", "average_precision", "roc_auc"]
    hist = _float16_histograms(y_true, scores, len(class_names))
    if hist is not None:
        support, ap, auc = _from_histograms(*hist)
        return pd.DataFrame(
            {"class": [str(n) for n in class_names], "support": support,
             "average_precision": ap, "roc_auc": auc},
            columns=columns,
        )  # fmt: skip
    rows = []
    for c, name in enumerate(class_names):
        cur = class_curves(y_true, scores, c)
        rows.append(
            {
                "class": str(name),
                "support": cur.n_pos,
                "average_precision": cur.average_precision,
                "roc_auc": cur.roc_auc,
            }
        )
    return pd.DataFrame(rows, columns=columns)


F16_BINS = 0x3C01  # float16 bit patterns of 0.0 .. 1.0 (0x3C00): ordered as the values are


def _float16_histograms(
    y_true: Any, scores: Any, n_classes: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Return (positives, all) counts per class and float16 score, each (n_classes, F16_BINS),
    or None unless every score is an exact float16 value in [0, 1] (stored runs' probs are).

    With at most 15,361 distinct scores a class's curve is a counting sort: one bincount per
    class instead of an argsort, ~20x faster at 50,000 images x 1,000 classes.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] != n_classes or n_classes == 0 or not len(scores):
        return None
    _check(y_true, scores, 0)  # the shape and label checks, with their messages
    half = scores.astype(np.float16)
    codes = half.view(np.uint16)
    if not np.array_equal(half, scores) or codes.max() >= F16_BINS:  # -0.0 is 0x8000
        return None
    y = np.asarray(y_true, dtype=np.int64)
    if y.min() < 0 or y.max() >= n_classes:
        return None
    every = np.empty((n_classes, F16_BINS), np.int64)
    for lo in range(0, n_classes, 64):  # transposed in blocks: one contiguous row per class
        block = np.ascontiguousarray(codes[:, lo : lo + 64].T)
        for c, row in enumerate(block, start=lo):
            every[c] = np.bincount(row, minlength=F16_BINS)
    own = codes[np.arange(len(y)), y].astype(np.int64)
    pos = np.bincount(y * F16_BINS + own, minlength=n_classes * F16_BINS)
    return pos.reshape(n_classes, F16_BINS), every


def _from_histograms(
    pos: np.ndarray, every: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return support, AP and ROC AUC per class from :func:`_float16_histograms`' counts,
    equal to :class:`ClassCurves`' (empty score bins add nothing to either sum)."""
    k = len(pos)
    support = pos.sum(axis=1)
    ap, auc = np.full(k, np.nan), np.full(k, np.nan)
    for c in range(k):
        p, a = pos[c, ::-1].astype(np.float64), every[c, ::-1]  # highest score first
        n_pos = support[c]
        n_neg = int(a.sum()) - int(n_pos)
        if n_pos == 0:
            continue
        tp = np.cumsum(p)
        flagged = np.cumsum(a)
        ap[c] = float(np.sum(p * (tp / np.maximum(flagged, 1)))) / n_pos
        if n_neg:
            fp_step = (a - p) / n_neg
            auc[c] = float(np.sum(fp_step * (2 * tp - p))) / (2 * n_pos)
    return support, ap, auc


def recall_sentence(point: ThresholdPoint | None, class_name: str, target: float) -> str:
    """Return the target-recall answer as one plain sentence (markdown)."""
    if point is None:
        return f"There are no '{class_name}' images in this split, so no recall can be reached."
    return (
        f"To find {target:.0%} of '{class_name}' images, flag every image with "
        f"P('{class_name}') ≥ {point.threshold:.3g}; it then finds {point.recall:.1%} of them "
        f"({point.tp:,} of {point.tp + point.fn:,}), and "
        + (
            f"the 1 flagged image is {'' if point.tp else 'not '}really '{class_name}'."
            if point.flagged == 1
            else f"{point.precision:.0%} of the {point.flagged:,} flagged images are really "
            f"'{class_name}'."
        )
    )


def counts_sentence(point: ThresholdPoint, class_name: str, n: int, split: str) -> str:
    """Return the one-vs-rest counts at ``point`` over the ``n`` images of ``split`` as one
    sentence (``class_name`` as it should appear, e.g. markdown-escaped)."""
    q = f"'{class_name}'"
    return (
        f"Counts one-vs-rest over {plural(n, f'{split} image')}: {plural(point.tp, f'{q} image')} "
        f"flagged, {plural(point.fp, 'other')} flagged, {point.fn:,} {q} missed, "
        f"{plural(point.tn, 'other')} correctly left out."
    )


@dataclass(frozen=True)
class ArgmaxRecall:
    """A class's recall counted two ways: most likely class (argmax) and P(c) >= threshold."""

    threshold: float
    n_classes: int
    n_pos: int  # images of the class
    tp_argmax: int  # of them, those whose most likely class is c (Overview's recall)
    tp_threshold: int  # of them, those with P(c) >= threshold (this page's recall)
    lost: int  # named c by argmax but P(c) below the threshold
    gained: int  # P(c) at or above the threshold although another class is more likely

    @property
    def differs(self) -> bool:
        """Return whether the two recalls differ."""
        return self.tp_argmax != self.tp_threshold


def argmax_recall(y_true: Any, y_pred: Any, scores: Any, c: int, threshold: float) -> ArgmaxRecall:
    """Return class ``c``'s recall by argmax and at ``threshold``, and what separates them.

    y_true, y_pred: (n,) true and predicted (most likely) classes; scores: (n, n_classes).
    """
    pos, score = _check(y_true, scores, c)
    named = np.asarray(y_pred) == c
    above = score >= threshold
    return ArgmaxRecall(
        threshold=float(threshold),
        n_classes=int(np.shape(scores)[1]),
        n_pos=int(pos.sum()),
        tp_argmax=int((pos & named).sum()),
        tp_threshold=int((pos & above).sum()),
        lost=int((pos & named & ~above).sum()),
        gained=int((pos & ~named & above).sum()),
    )


def argmax_sentence(r: ArgmaxRecall, class_name: str) -> str:
    """Return both recalls of ``r`` and why they differ, plain text ("" without the class)."""
    if not r.n_pos:
        return ""
    q, t = f"'{class_name}'", f"{r.threshold:.3g}"
    text = (
        f"Overview and Per-class metrics count an image as {q} when {q} is its most likely "
        f"class (argmax): recall {r.tp_argmax / r.n_pos:.1%} ({r.tp_argmax:,} of {r.n_pos:,}). "
        f"Here an image is flagged when P({q}) ≥ {t}, one class at a time: recall "
        f"{r.tp_threshold / r.n_pos:.1%} ({r.tp_threshold:,} of {r.n_pos:,})."
    )
    why = []
    if r.lost:
        has = "has" if r.lost == 1 else "have"
        why.append(
            f"{plural(r.lost, f'{q} image')} the model names {q} {has} P({q}) below {t}: among "
            f"{r.n_classes} classes the most likely one can win with less"
        )
    if r.gained:
        reach = "reaches" if r.gained == 1 else "reach"
        why.append(
            f"{plural(r.gained, f'{q} image')} {reach} {t} although another class is more likely"
        )
    return text + (" " + "; ".join(why) + "." if why else "")
