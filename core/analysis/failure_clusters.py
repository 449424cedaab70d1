"""Failure clusters: regions of the model's embedding space where it fails together. Pure.

The judged split's images are clustered by k-means (scikit-learn) on their penultimate-layer
embeddings, with a cluster count fixed by a rule of the split's size and class count
(``default_k``) or given by the user; no label, prediction or correctness enters the
clustering, so nothing is tuned on the split it then judges. Clusters are ranked by the
lower end of the 95% Wilson interval of their error rate, which weighs error rate by size
(a 3-image cluster with 3 mistakes ranks below 60 images with 40). Each cluster reports its
accuracy inside vs outside, its commonest true → predicted pairs, what sets it apart in the
slice table (metadata, image properties) and the images nearest its centre.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.analysis.diagnostics import number

Z95 = 1.959964  # two-sided 95% normal quantile
MIN_EFFECT = 0.5  # |standardised difference| below this is not called distinguishing
NOT_DISTINGUISHING = {"split", "true class", "predicted class", "correct", "confidence"}
NEAREST = 6  # thumbnails per card


def default_k(n: int, n_classes: int) -> int:
    """Return the cluster count used unless the user picks one: one per class plus two (a
    trained model packs each class together; the spare two leave room for failure groups),
    at least 4, at most 60, and at most one per 10 images (at least 1). Two per class split
    a planted failure group across clusters (tests/test_failure_clusters.py)."""
    return max(1, min(max(4, n_classes + 2), 60, n // 10))


def cluster(emb: Any, *, k: int, seed: int = 0) -> np.ndarray:
    """Return (n,) int cluster labels of ``emb`` (n, d) by k-means (k-means++, 4 restarts,
    ``seed``); unreadable rows (all zero) get -1."""
    from sklearn.cluster import KMeans

    x = np.asarray(emb, dtype=np.float32)
    ok = np.abs(x).sum(axis=1) > 0
    labels = np.full(len(x), -1, dtype=np.int64)
    n_ok = int(ok.sum())
    if n_ok == 0:
        return labels
    k = max(1, min(int(k), n_ok))
    model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x[ok])
    labels[ok] = model.labels_
    return labels


def wilson_lower(errors: int, n: int, z: float = Z95) -> float:
    """Return the lower end of the Wilson score interval of ``errors``/``n`` (0 when n=0)."""
    if n == 0:
        return 0.0
    p = errors / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


@dataclass(frozen=True)
class Distinction:
    """One slice column on which a cluster differs from the rest of the split."""

    column: str
    inside: str  # the value inside, in words ("0.21" or "PNG 90%")
    outside: str  # the same outside
    effect: float  # standardised difference (inside - outside), in pooled SDs


@dataclass(frozen=True)
class Cluster:
    """One failure cluster of the judged split (rows index the arrays handed in)."""

    label: int  # k-means label
    rows: np.ndarray  # row positions inside the cluster
    n_wrong: int
    accuracy_outside: float  # accuracy of the split's other (readable) images; NaN if none
    score: float  # ranking key: Wilson lower bound of the error rate
    pairs: tuple[tuple[int, int, int], ...]  # (y_true, y_pred, count), commonest mistakes
    distinctions: tuple[Distinction, ...]
    nearest: np.ndarray  # row positions nearest the cluster's centre, closest first

    @property
    def size(self) -> int:
        """Images in the cluster."""
        return len(self.rows)

    @property
    def accuracy(self) -> float:
        """Share of the cluster predicted right."""
        return 1 - self.n_wrong / self.size if self.size else float("nan")


def failure_clusters(
    emb: Any,
    labels: Any,
    y_true: Any,
    y_pred: Any,
    *,
    columns: pd.DataFrame | None = None,
    top_pairs: int = 3,
) -> list[Cluster]:
    """Return the clusters ranked worst first (Wilson lower bound of the error rate, then size).

    emb: (n, d) embeddings; labels: (n,) from ``cluster`` (-1 rows are left out);
    y_true, y_pred: (n,) ints; columns: the split's slice table rows in the same order
    (core.images.columns.slice_columns), or None to skip "what distinguishes it".
    """
    x = np.asarray(emb, dtype=np.float32)
    labels = np.asarray(labels)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    wrong = y_true != y_pred
    known = labels >= 0
    out = []
    for label in np.unique(labels[known]):
        inside = labels == label
        rows = np.flatnonzero(inside)
        rest = known & ~inside
        n_wrong = int(wrong[inside].sum())
        acc_out = float(1 - wrong[rest].mean()) if rest.any() else float("nan")
        mistakes = inside & wrong
        counts = Counter(zip(y_true[mistakes].tolist(), y_pred[mistakes].tolist(), strict=True))
        pairs = tuple(
            (t, p, c) for (t, p), c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        )[:top_pairs]
        centre = x[rows].mean(axis=0)
        dist = np.linalg.norm(x[rows] - centre, axis=1)
        nearest = rows[np.argsort(dist, kind="stable")[:NEAREST]]
        out.append(
            Cluster(
                label=int(label),
                rows=rows,
                n_wrong=n_wrong,
                accuracy_outside=acc_out,
                score=wilson_lower(n_wrong, len(rows)),
                pairs=pairs,
                distinctions=distinctions(columns, inside, rest) if columns is not None else (),
                nearest=nearest,
            )
        )
    return sorted(out, key=lambda c: (-c.score, -c.size, c.label))


def distinctions(
    columns: pd.DataFrame, inside: Any, rest: Any, *, top: int = 3
) -> tuple[Distinction, ...]:
    """Return up to ``top`` slice columns on which ``inside`` rows differ most from ``rest``
    rows (|standardised difference| >= MIN_EFFECT), largest first.

    Numeric columns compare means (pooled SD); a bool or categorical column compares the share
    of its most over- or under-represented value (an indicator's standardised difference).
    """
    inside, rest = np.asarray(inside, dtype=bool), np.asarray(rest, dtype=bool)
    found = []
    for name in columns.columns:
        if name in NOT_DISTINGUISHING:
            continue
        found.extend(_column_distinction(str(name), columns[name], inside, rest))
    found = [d for d in found if abs(d.effect) >= MIN_EFFECT and math.isfinite(d.effect)]
    return tuple(sorted(found, key=lambda d: -abs(d.effect))[:top])


def _column_distinction(
    name: str, col: pd.Series, inside: np.ndarray, rest: np.ndarray
) -> list[Distinction]:
    if not inside.any() or not rest.any() or col.notna().sum() == 0:
        return []
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        a = col[inside].dropna().to_numpy(dtype=float)
        b = col[rest].dropna().to_numpy(dtype=float)
        if len(a) < 2 or len(b) < 2:
            return []
        pooled = math.sqrt(
            ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
        )
        if pooled == 0:
            return []
        return [
            Distinction(name, number(a.mean()), number(b.mean()), (a.mean() - b.mean()) / pooled)
        ]
    values = col.astype("object").where(col.notna(), None)
    if values.nunique(dropna=True) > 50:
        return []
    best = None
    for value in pd.unique(values.dropna()):
        hit = (values == value).to_numpy()
        p_in, p_out = hit[inside].mean(), hit[rest].mean()
        p_all = hit[inside | rest].mean()
        sd = math.sqrt(p_all * (1 - p_all))
        if sd == 0:
            continue
        effect = (p_in - p_out) / sd
        if best is None or abs(effect) > abs(best.effect):
            best = Distinction(name, f"{value} {p_in:.0%}", f"{value} {p_out:.0%}", effect)
    return [best] if best is not None else []


def pair_words(pairs: Sequence[tuple[int, int, int]], class_names: Sequence[str]) -> str:
    """Return "'3' → '8' (12), '5' → '3' (4)" for a cluster's commonest mistakes."""
    return ", ".join(f"'{class_names[t]}' → '{class_names[p]}' ({c})" for t, p, c in pairs)


def share_text(x: float) -> str:
    """Return an accuracy for the cards and sentences: a whole percent ("97%"), one decimal
    cut towards the middle where a whole percent would read 0% or 100% although some images
    differ ("99.7%", never "100%" beside a mistake), "–" for NaN (no images)."""
    if math.isnan(x):
        return "–"
    if 0.995 <= x < 1:
        return f"{math.floor(1000 * x) / 10:.1f}%"
    if 0 < x < 0.005:
        return f"{math.ceil(1000 * x) / 10:.1f}%"
    return f"{x:.0%}"


def worst_sentence(c: Cluster, class_names: Sequence[str], split: str) -> str:
    """Return one sentence about the worst cluster, quoting only the numbers it holds."""
    mistakes = f"; mistakes mostly {pair_words(c.pairs[:1], class_names)}" if c.pairs else ""
    if math.isnan(c.accuracy_outside):  # one cluster holds every image: nothing to compare
        return (
            f"One cluster holds all {c.size:,} {split} images, at {share_text(c.accuracy)} "
            f"accuracy: too few images to compare clusters{mistakes}."
        )
    return (
        f"The worst failure cluster holds {c.size:,} {split} images at "
        f"{share_text(c.accuracy)} accuracy ({share_text(c.accuracy_outside)} for the rest of "
        f"the split){mistakes}."
    )
