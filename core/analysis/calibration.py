"""Calibration: does a confidence of 80% mean right 80% of the time? Pure: numpy and pandas
(core.figures.calibration draws these numbers).

Reliability bins are equal-width over [0, 1], 15 by default, as torchmetrics'
``CalibrationError(norm="l1")``: a confidence ``x`` falls in bin
``clamp(bucketize(x, edges, right=True) - 1, 0, n_bins - 1)``, i.e. bins are **[lo, hi)**
(a confidence exactly on an edge goes to the bin above it) and the last bin is closed, [lo, 1].
ECE is the count-weighted mean of |accuracy - mean confidence| over the bins, MCE its maximum
over non-empty bins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

N_BINS = 15


@dataclass(frozen=True)
class Reliability:
    """Equal-width reliability bins of (confidence, outcome) pairs."""

    edges: np.ndarray  # (n_bins + 1,) from 0 to 1
    count: np.ndarray  # (n_bins,) rows per bin
    confidence: np.ndarray  # (n_bins,) mean confidence per bin; NaN when empty
    accuracy: np.ndarray  # (n_bins,) share of correct outcomes per bin; NaN when empty
    rows: tuple[np.ndarray, ...]  # per bin, the positions (0..n-1) of its rows, ascending

    @property
    def gap(self) -> np.ndarray:
        """Return |accuracy - confidence| per bin, (n_bins,); NaN when empty."""
        return np.abs(self.accuracy - self.confidence)

    @property
    def ece(self) -> float:
        """Return the expected calibration error (count-weighted L1); NaN without rows."""
        n = self.count.sum()
        if n == 0:
            return float("nan")
        return float(np.nansum(self.gap * self.count) / n)

    @property
    def mce(self) -> float:
        """Return the maximum calibration error over non-empty bins; NaN without rows."""
        return float(np.nanmax(self.gap)) if self.count.any() else float("nan")


def _check(confidence: Any, correct: Any, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct)
    if confidence.ndim != 1 or correct.shape != confidence.shape:
        raise ValueError(
            "confidence and correct must be (n,) arrays of the same length, got shapes "
            f"{confidence.shape} and {correct.shape}."
        )
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}.")
    if len(confidence) and (np.nanmin(confidence) < 0 or np.nanmax(confidence) > 1):
        raise ValueError("confidence must be probabilities in [0, 1]; pass softmax outputs.")
    return confidence, correct.astype(bool)


def bin_index(confidence: Any, *, n_bins: int = N_BINS) -> np.ndarray:
    """Return each confidence's bin, (n,) in 0..n_bins-1, bins [lo, hi) and the last [lo, 1]."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.searchsorted(edges, np.asarray(confidence, dtype=np.float64), side="right") - 1
    return np.clip(idx, 0, n_bins - 1)


def outcome_counts(
    y_true: Any, y_pred: Any, confidence: Any, *, n_bins: int = 20
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (edges (n_bins + 1,), correct (n_bins,), wrong (n_bins,)): the predictions per
    equal-width confidence bin (:func:`bin_index`), split by outcome.

    y_true, y_pred: (n,) class indices; confidence: (n,) the predicted class's probability.
    """
    confidence, correct = _check(confidence, np.asarray(y_true) == np.asarray(y_pred), n_bins)
    idx = bin_index(confidence, n_bins=n_bins)
    return (
        np.linspace(0.0, 1.0, n_bins + 1),
        np.bincount(idx[correct], minlength=n_bins),
        np.bincount(idx[~correct], minlength=n_bins),
    )


def reliability(confidence: Any, correct: Any, *, n_bins: int = N_BINS) -> Reliability:
    """Return the reliability bins of ``confidence`` (n,) in [0, 1] and ``correct`` (n,) bool."""
    confidence, correct = _check(confidence, correct, n_bins)
    idx = bin_index(confidence, n_bins=n_bins)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=confidence, minlength=n_bins) / count
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
    order = np.argsort(idx, kind="stable")
    rows = tuple(np.split(order, np.cumsum(count)[:-1]))
    return Reliability(np.linspace(0.0, 1.0, n_bins + 1), count, conf, acc, rows)


def top_label(y_true: Any, y_pred: Any, confidence: Any, *, n_bins: int = N_BINS) -> Reliability:
    """Return the reliability of the predictions: confidence (max prob), correct y_pred == y_true.

    y_true, y_pred: (n,) class indices; confidence: (n,) the predicted class's probability.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {y_true.shape} vs {y_pred.shape}.")
    return reliability(confidence, y_true == y_pred, n_bins=n_bins)


def per_class(y_true: Any, probs: Any, *, n_bins: int = N_BINS) -> list[Reliability]:
    """Return one-vs-rest reliability per class: confidence probs[:, c], outcome y_true == c."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true)
    return [reliability(probs[:, c], y_true == c, n_bins=n_bins) for c in range(probs.shape[1])]


def class_table(
    y_true: Any, probs: Any, class_names: Sequence[str], *, n_bins: int = N_BINS
) -> pd.DataFrame:
    """Return one row per class: class, support, mean P(class), share of the class, ECE, MCE."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs)
    columns = ["class", "support", "mean_prob", "frequency", "ece", "mce"]
    if probs.ndim != 2 or len(class_names) != probs.shape[1] or not len(probs):
        rows = [
            {"class": str(name), "support": int((y_true == c).sum()), "mean_prob": float("nan"),
             "frequency": float("nan"), "ece": rel.ece, "mce": rel.mce}
            for c, (name, rel) in enumerate(
                zip(class_names, per_class(y_true, probs, n_bins=n_bins), strict=True)
            )
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=columns)
    count, conf_sum, hits = _class_bins(y_true, probs, n_bins)
    n, k = probs.shape
    support = np.bincount(y_true.astype(np.int64), minlength=k)[:k]
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.abs(hits - conf_sum) / count  # NaN in empty bins
    ece = np.nansum(gap * count, axis=1) / n
    mce = np.where(count.any(axis=1), np.nanmax(np.where(count > 0, gap, -np.inf), axis=1), np.nan)
    return pd.DataFrame(
        {"class": [str(c) for c in class_names], "support": support.astype(int),
         "mean_prob": conf_sum.sum(axis=1) / n, "frequency": support / n, "ece": ece,
         "mce": mce},
        columns=columns,
    )  # fmt: skip


CHUNK_ROWS = 2048  # rows binned at a time: bounds the (rows, n_classes) temporaries


def _class_bins(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return per class and bin (n_classes, n_bins): rows, sum of P(class) and rows of the
    class, the one-vs-rest reliability bins of every class at once (:func:`reliability`
    class by class is 1,000 passes over 50,000 rows at ImageNet size)."""
    n, k = probs.shape
    _check(np.zeros(0), np.zeros(0, bool), n_bins)
    offsets = (np.arange(k, dtype=np.int64) * n_bins)[None, :]
    count = np.zeros(k * n_bins, np.int64)
    conf_sum = np.zeros(k * n_bins)
    hits = np.zeros(k * n_bins)
    y = y_true.astype(np.int64)
    for lo in range(0, n, CHUNK_ROWS):
        p = probs[lo : lo + CHUNK_ROWS].astype(np.float64)
        if np.nanmin(p) < 0 or np.nanmax(p) > 1:
            raise ValueError("confidence must be probabilities in [0, 1]; pass softmax outputs.")
        flat = (offsets + bin_index(p, n_bins=n_bins)).ravel()
        count += np.bincount(flat, minlength=k * n_bins)
        conf_sum += np.bincount(flat, weights=p.ravel(), minlength=k * n_bins)
        own = flat.reshape(p.shape)[np.arange(len(p)), y[lo : lo + CHUNK_ROWS]]
        hits += np.bincount(own, minlength=k * n_bins)
    return (count.reshape(k, n_bins), conf_sum.reshape(k, n_bins), hits.reshape(k, n_bins))


def worst_bin(rel: Reliability) -> int:
    """Return the bin that adds most to the ECE (count x gap); 0 when there are no rows."""
    weight = np.nan_to_num(rel.gap * rel.count, nan=-1.0)
    return int(np.argmax(weight)) if rel.count.any() else 0


def bin_labels(rel: Reliability) -> list[str]:
    """Return one label per bin: "0.60–0.67 · 23 images · accuracy 52%"."""
    out = []
    for i, n in enumerate(rel.count):
        span = f"{rel.edges[i]:.2f}–{rel.edges[i + 1]:.2f}"
        noun = "image" if n == 1 else "images"
        acc = f" · accuracy {rel.accuracy[i]:.0%}" if n else ""
        out.append(f"{span} · {n:,} {noun}{acc}")
    return out


CALIBRATED_ECE = 0.02  # below this ECE the model reads as well calibrated
# A direction (over- or underconfident) is named beside the other only when its bins add at
# least this share of the ECE and at least MIXED_MIN_POINTS to it: one noisy bin is not a lean.
MIXED_MIN_SHARE = 0.10
MIXED_MIN_POINTS = 0.005


@dataclass(frozen=True)
class Region:
    """Adjacent non-empty bins that lean the same way (accuracy above or below confidence)."""

    lo: float  # lower edge of the first bin
    hi: float  # upper edge of the last bin
    direction: str  # "over" (accuracy < confidence) or "under" (accuracy > confidence)
    count: int  # images in the region's bins
    confidence: float  # their mean confidence
    accuracy: float  # their accuracy
    ece: float  # what the region adds to the ECE: sum of count x |gap| over all images


@dataclass(frozen=True)
class Direction:
    """Which way the confidence errs, from the reliability bins."""

    direction: str  # "none" (no rows) | "calibrated" | "over" | "under" | "mixed"
    over: float  # ECE share from bins with accuracy < confidence (over + under == ECE)
    under: float  # ECE share from bins with accuracy > confidence
    regions: tuple[Region, ...]  # runs of same-direction bins, by confidence


def confidence_direction(rel: Reliability) -> Direction:
    """Return whether the model is over- or underconfident, derived bin by bin.

    Each bin's signed gap accuracy - confidence, weighted by its images, goes to ``over``
    (negative gaps) or ``under`` (positive); ``over + under`` is the ECE. The model is
    "calibrated" below CALIBRATED_ECE, "mixed" when both sides pass MIXED_MIN_SHARE of the
    ECE and MIXED_MIN_POINTS, else the larger side. Regions group adjacent non-empty bins of
    one sign (empty bins do not break a region; bins with no gap join their neighbours).
    """
    n = int(rel.count.sum())
    if n == 0:
        return Direction("none", float("nan"), float("nan"), ())
    signed = np.where(rel.count > 0, rel.accuracy - rel.confidence, 0.0)
    weight = rel.count * np.abs(signed) / n
    over, under = float(weight[signed < 0].sum()), float(weight[signed > 0].sum())
    regions: list[list[int]] = []
    for b in np.flatnonzero(rel.count):
        sign = np.sign(signed[b])
        if regions and (sign == 0 or sign == regions[-1][0] or regions[-1][0] == 0):
            regions[-1][0] = regions[-1][0] or sign
            regions[-1].append(int(b))
        else:
            regions.append([sign, int(b)])
    out = []
    for sign, *bins in regions:
        c = rel.count[bins]
        out.append(
            Region(
                lo=float(rel.edges[bins[0]]),
                hi=float(rel.edges[bins[-1] + 1]),
                direction="over" if sign < 0 else "under",
                count=int(c.sum()),
                confidence=float((rel.confidence[bins] * c).sum() / c.sum()),
                accuracy=float((rel.accuracy[bins] * c).sum() / c.sum()),
                ece=float(weight[bins].sum()),
            )
        )
    ece = over + under
    if ece < CALIBRATED_ECE:
        kind = "calibrated"
    elif min(over, under) >= max(MIXED_MIN_SHARE * ece, MIXED_MIN_POINTS):
        kind = "mixed"
    else:
        kind = "over" if over > under else "under"
    return Direction(kind, over, under, tuple(out))


def _region_text(r: Region) -> str:
    word = "**overconfident**" if r.direction == "over" else "**underconfident**"
    noun = "image" if r.count == 1 else "images"
    return (
        f"{word} from {r.lo:.0%} to {r.hi:.0%} confidence ({r.count:,} {noun}: it says "
        f"{r.confidence:.0%} and is right {r.accuracy:.0%})"
    )


def reading(rel: Reliability) -> str:
    """Return a plain-language reading of the ECE and of which way the confidence errs
    (markdown), from :func:`confidence_direction` of the same bins."""
    n = int(rel.count.sum())
    if n == 0:
        return "No predictions to calibrate."
    conf = float(np.nansum(rel.confidence * rel.count) / n)
    acc = float(np.nansum(rel.accuracy * rel.count) / n)
    d = confidence_direction(rel)
    head = (
        f"On average the model says {conf:.1%} and is right {acc:.1%}; bin by bin its "
        f"confidence is off by {rel.ece:.1%} (ECE)."
    )
    if d.direction == "calibrated":
        lean = (
            f"well calibrated (ECE below {CALIBRATED_ECE:.0%}): its confidence can be read as "
            "a probability of being right"
        )
    elif d.direction == "over":
        lean = "**overconfident**: bin by bin it is right less often than it claims"
    elif d.direction == "under":
        lean = "**underconfident**: bin by bin it is right more often than it claims"
    else:
        floor = max(MIXED_MIN_SHARE * rel.ece, MIXED_MIN_POINTS)
        main = [r for r in d.regions if r.ece >= floor] or list(d.regions)
        return (
            f"{head} It errs both ways: "
            + "; ".join(_region_text(r) for r in main)
            + f". Of the ECE, {100 * d.over:.1f} points come from overconfident bins and "
            f"{100 * d.under:.1f} from underconfident ones."
        )
    return f"{head} The model is {lean}."
