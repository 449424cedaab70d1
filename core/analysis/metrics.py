"""Classification metrics over integer class indices, in pure numpy.

Labels are class indices ``0..n_classes-1`` and ``n_classes`` is always explicit, so classes
absent from the data still get a row. Most functions take the confusion matrix ``cm`` so it is
counted once. Every undefined ratio (zero division) is 0.0, without warnings. Numbers agree with
scikit-learn called with ``labels=range(n_classes)`` and ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np

from core.contracts import SplitMetrics

__all__ = [
    "accuracy_score",
    "averages",
    "balanced_accuracy_score",
    "cohen_kappa_score",
    "confusion_matrix",
    "matthews_corrcoef",
    "per_class",
    "split_report",
    "top_k_accuracy_score",
]


def _check_labels(y_true: Any, y_pred: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``y_true`` and ``y_pred`` as 1-D int64 arrays, or raise ValueError saying why."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive int, got {n_classes!r}.")
    out = []
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        arr = np.asarray(y)
        if arr.ndim != 1:
            raise ValueError(
                f"{name} must be 1-D class indices, got shape {arr.shape}. "
                "Pass one label per sample (use argmax over the class axis for scores)."
            )
        if arr.size and (arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(
                f"{name} must hold integer class indices, got dtype {arr.dtype}. "
                "Map class names to indices 0..n_classes-1 first."
            )
        arr = arr.astype(np.int64, copy=False)
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(
                f"{name} has labels outside [0, {n_classes}): found min {arr.min()}, "
                f"max {arr.max()}. Pass indices into class_names, or a larger n_classes."
            )
        out.append(arr)
    if len(out[0]) != len(out[1]):
        raise ValueError(
            f"y_true and y_pred have different lengths ({len(out[0])} vs {len(out[1])}). "
            "Pass one prediction per true label."
        )
    return out[0], out[1]


def _check_cm(cm: Any) -> np.ndarray:
    """Return ``cm`` as a square 2-D int64 array, or raise ValueError."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 1:
        raise ValueError(
            f"cm must be a square (n_classes, n_classes) matrix, got shape {cm.shape}. "
            "Pass the output of confusion_matrix()."
        )
    return cm.astype(np.int64, copy=False)


def _div(num: Any, den: Any) -> Any:
    """Return ``num / den`` elementwise as float, with 0.0 wherever ``den`` is 0."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)
    return float(out) if out.ndim == 0 else out


def confusion_matrix(y_true: Any, y_pred: Any, *, n_classes: int) -> np.ndarray:
    """Return the (n_classes, n_classes) int64 count matrix; rows true, columns predicted.

    y_true, y_pred: (n,) integer class indices in [0, n_classes).
    """
    y_true, y_pred = _check_labels(y_true, y_pred, n_classes)
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64, copy=False)


def accuracy_score(cm: Any) -> float:
    """Return the fraction of samples on the diagonal of ``cm`` (0.0 when empty)."""
    cm = _check_cm(cm)
    return _div(np.trace(cm), cm.sum())


def balanced_accuracy_score(cm: Any) -> float:
    """Return mean recall over the classes with support > 0 (0.0 when empty).

    Classes with no true samples are left out of the mean, as in scikit-learn.
    """
    cm = _check_cm(cm)
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return 0.0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def per_class(cm: Any) -> dict[str, np.ndarray]:
    """Return per-class arrays, each (n_classes,): tp, fp, fn, tn, support (int64) and
    precision, recall, f1, specificity (float64, 0.0 where undefined)."""
    cm = _check_cm(cm)
    tp = np.diag(cm).copy()
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "support": tp + fn,
        "precision": _div(tp, tp + fp),
        "recall": _div(tp, tp + fn),
        # Same as 2PR/(P+R) where defined, and 0.0 (not nan) when tp+fp+fn == 0.
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "specificity": _div(tn, tn + fp),
    }


def averages(cm: Any, *, labels: Sequence[int] | None = None) -> dict[str, dict[str, float]]:
    """Return {"macro": {...}, "weighted": {...}} of precision, recall and f1.

    Macro is the plain mean over ``labels`` (default: all n_classes, classes without samples
    counting as 0.0), as scikit-learn's ``labels=``; weighted uses support as weights (0.0 when
    there are no samples).
    """
    stats = per_class(cm)
    support = stats["support"]
    keys = ("precision", "recall", "f1")
    idx = np.arange(len(support)) if labels is None else np.asarray(labels, dtype=np.int64)
    return {
        "macro": {k: float(np.mean(stats[k][idx])) if idx.size else 0.0 for k in keys},
        "weighted": {k: _div(np.dot(stats[k], support), support.sum()) for k in keys},
    }


def matthews_corrcoef(cm: Any) -> float:
    """Return the multiclass Matthews correlation coefficient in [-1, 1].

    0.0 when undefined (empty input, or all true or all predicted labels in one class), as in
    scikit-learn.
    """
    cm = _check_cm(cm).astype(np.float64)
    t, p = cm.sum(axis=1), cm.sum(axis=0)
    n, correct = cm.sum(), np.trace(cm)
    cov_tp = correct * n - t @ p
    cov_pp = n * n - p @ p
    cov_tt = n * n - t @ t
    return _div(cov_tp, np.sqrt(cov_tt * cov_pp))


def cohen_kappa_score(cm: Any) -> float:
    """Return Cohen's kappa (unweighted) between true and predicted labels.

    0.0 when undefined, i.e. chance agreement is 1 (empty input, or true and predicted labels
    all in the same single class); scikit-learn returns nan with a warning there.
    """
    cm = _check_cm(cm).astype(np.float64)
    t, p = cm.sum(axis=1), cm.sum(axis=0)
    n = cm.sum()
    # (p_o - p_e) / (1 - p_e), multiplied through by n**2 to stay exact for counts.
    return _div(n * np.trace(cm) - t @ p, n * n - t @ p)


def top_k_accuracy_score(y_true: Any, probs: Any, *, k: int) -> float:
    """Return the fraction of samples whose true class is among the k highest scores.

    y_true: (n,) class indices; probs: (n, n_classes) scores. Ties are broken like
    scikit-learn: among equal scores the higher class index ranks first. k >= n_classes gives
    1.0 and empty input 0.0.
    """
    probs = np.asarray(probs)  # no float64 copy: (50k, 1k) float32 scores stay 200 MB
    if probs.ndim != 2 or probs.shape[1] < 1 or not np.issubdtype(probs.dtype, np.number):
        raise ValueError(
            f"probs must be (n, n_classes) numeric scores, got shape {probs.shape} "
            f"({probs.dtype}). "
            "Pass one row of class scores per sample."
        )
    y_true, _ = _check_labels(y_true, y_true, probs.shape[1])
    if len(y_true) != len(probs):
        raise ValueError(
            f"y_true has {len(y_true)} samples but probs has {len(probs)} rows. "
            "Pass one score row per true label."
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}.")
    if len(y_true) == 0:
        return 0.0
    true_score = probs[np.arange(len(y_true)), y_true][:, None]
    later = np.arange(probs.shape[1])[None, :] > y_true[:, None]
    rank = np.sum((probs > true_score) | ((probs == true_score) & later), axis=1)
    return float(np.mean(rank < k))


def split_report(
    y_true: Any,
    y_pred: Any,
    *,
    class_names: Sequence[str],
    probs: Any = None,
    skipped: Iterable[str] = (),
    absent: Iterable[int] = (),
) -> SplitMetrics:
    """Return one split's entry of metrics.json, as plain JSON-serialisable python values.

    y_true, y_pred: (n,) class indices into class_names; probs: optional (n, n_classes) scores
    that add "top3_accuracy" (n_classes > 3) and "top5_accuracy" (n_classes > 5); skipped:
    paths of files that could not be read; absent: indices of classes the dataset has no
    folder for (the checkpoint names more classes than the test set holds): their entries
    get ``"absent": true`` (support 0) and macro averages are over the other classes. Empty
    input gives n=0 and 0.0 everywhere.
    """
    n_classes = len(class_names)
    cm = confusion_matrix(y_true, y_pred, n_classes=n_classes)
    stats = per_class(cm)
    gone = set(int(i) for i in absent)
    avg = averages(cm, labels=[i for i in range(n_classes) if i not in gone] if gone else None)
    report: dict[str, Any] = {
        "n": int(cm.sum()),
        "accuracy": accuracy_score(cm),
        "balanced_accuracy": balanced_accuracy_score(cm),
        "macro": avg["macro"],
        "weighted": avg["weighted"],
        "mcc": matthews_corrcoef(cm),
        "kappa": cohen_kappa_score(cm),
    }
    if probs is not None:
        for k in (3, 5):
            if n_classes > k:
                report[f"top{k}_accuracy"] = top_k_accuracy_score(y_true, probs, k=k)
    report["per_class"] = [
        {
            "class": str(name),
            "precision": float(stats["precision"][i]),
            "recall": float(stats["recall"][i]),
            "f1": float(stats["f1"][i]),
            "support": int(stats["support"][i]),
            "specificity": float(stats["specificity"][i]),
            **({"absent": True} if i in gone else {}),
        }
        for i, name in enumerate(class_names)
    ]
    report["confusion_matrix"] = cm.tolist()
    report["skipped"] = [str(s) for s in skipped]
    return cast(SplitMetrics, report)  # built key by key to keep the documented key order
