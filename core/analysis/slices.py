"""Where it fails: accuracy per slice with bootstrap intervals, and weak segments found by a
corrected search (numpy, pandas, scipy only).

Input is the slice table of ``core.images.columns.slice_columns`` (any DataFrame with a bool
``correct`` column, a ``split`` column and the columns to cut on).

Numeric columns are cut at quantile edges taken from the train split when the run has one,
else from fixed quantiles of all splits together: never from the split being judged, so the
cut points are not tuned on the data they then judge.

Weak segments: every single condition (a categorical value, a quantile bin, a bool value)
and every pair of conditions on two different columns with at least ``min_support`` images
is compared with the rest of the split by Fisher's exact test (one-sided: fewer correct than
the rest would give by chance); the p-values of
everything tried are corrected together by Benjamini-Hochberg; the significant ones whose
accuracy is below the rest are ranked by effect (points below the rest) x support.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from core.analysis import diagnostics
from core.analysis import where as where_

N_BINS = 4  # quantile bins per numeric column
BOOTSTRAP = 2000  # resamples for the 95% intervals
SEED = 0
ALPHA = 0.05  # false discovery rate
MIN_SUPPORT = 20  # images a segment needs to be tested
# Outcomes and bookkeeping, never searched: cutting on them explains errors by errors.
NOT_SEARCHED = ("split", "correct", "confidence")


@dataclass(frozen=True)
class Condition:
    """One condition on one column: ``column op value`` (op: ==, <, >=, between [lo, hi))."""

    column: str
    op: str  # "==" | "<" | ">=" | "between"
    value: Any  # the value; (lo, hi) for "between"

    def mask(self, df: pd.DataFrame) -> np.ndarray:
        """Return the (n,) bool mask of the rows of ``df`` meeting the condition (NA: False)."""
        col = df[self.column]
        if self.op == "==":
            out = col == self.value
        elif self.op == "<":
            out = col < self.value
        elif self.op == ">=":
            out = col >= self.value
        else:
            lo, hi = self.value
            out = (col >= lo) & (col < hi)
        return np.asarray(pd.Series(out).fillna(False), dtype=bool)

    def text(self) -> str:
        """Return the condition in words, e.g. ``brightness < 0.21`` or ``scanner is B``."""
        if self.op == "==":
            return f"{self.column} is {_fmt(self.value)}"
        if self.op == "between":
            lo, hi = self.value
            return f"{_fmt(lo)} ≤ {self.column} < {_fmt(hi)}"
        return f"{self.column} {'<' if self.op == '<' else '≥'} {_fmt(self.value)}"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (column, op, value)."""
        value = list(self.value) if self.op == "between" else self.value
        return {"column": self.column, "op": self.op, "value": _plain(value)}


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if v.is_integer() and abs(v) < 1e15:
            return f"{int(v):,}"
        return diagnostics.number(v)  # as the app writes numbers: 999.7 -> "1,000", not "1e+03"
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat() if value == value.normalize() else value.isoformat()
    return str(value)


# --- cut points ----------------------------------------------------------------------------------


def edge_rows(df: pd.DataFrame) -> np.ndarray:
    """Return the (n,) bool rows whose values set the quantile edges: train when present,
    else every row (fixed quantiles of all data)."""
    if "split" in df.columns and (df["split"] == "train").any():
        return (df["split"] == "train").to_numpy()
    return np.ones(len(df), dtype=bool)


def bin_edges(values: Any, n_bins: int = N_BINS) -> np.ndarray:
    """Return the distinct inner quantile edges (at most n_bins - 1) of the finite values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return np.empty(0)
    inner = np.quantile(x, np.arange(1, n_bins) / n_bins)
    return np.unique(inner)


def conditions_for(
    df: pd.DataFrame, column: str, kind: str, *, edges_from: np.ndarray | None = None
) -> list[Condition]:
    """Return the conditions that cut ``column``: one per value (categorical, bool) or one per
    quantile bin (numeric, date), edges from ``edges_from`` rows (default ``edge_rows``)."""
    col = df[column]
    if kind in ("categorical", "bool"):
        values = pd.unique(col.dropna())
        try:
            values = sorted(values)
        except TypeError:
            values = sorted(values, key=str)
        return [Condition(column, "==", v) for v in values]
    rows = edge_rows(df) if edges_from is None else edges_from
    numeric = _as_float(col)
    edges = bin_edges(numeric[rows])
    if kind == "date":  # edges are in the column's own unit (ns, us, s)
        unit = np.datetime_data(col.dtype)[0]
        to_value = lambda e: pd.Timestamp(int(e), unit=unit).as_unit(unit)  # noqa: E731
    else:
        to_value = float
    back = [to_value(e) for e in edges]
    if not back:
        return []
    out = [Condition(column, "<", back[0])]
    out += [Condition(column, "between", (lo, hi)) for lo, hi in zip(back, back[1:], strict=False)]
    out.append(Condition(column, ">=", back[-1]))
    return out


def _as_float(col: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(col):
        out = col.astype("int64").to_numpy(dtype=float)
        out[col.isna().to_numpy()] = np.nan
        return out
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)


# --- intervals and tests -------------------------------------------------------------------------


def bootstrap_interval(
    correct: int, n: int, *, resamples: int = BOOTSTRAP, seed: int = SEED
) -> tuple[float, float]:
    """Return the 95% percentile bootstrap interval of an accuracy ``correct / n``.

    Resampling n 0/1 outcomes with replacement draws the number correct from
    Binomial(n, correct / n), so the resamples are drawn that way (same distribution as
    resampling the rows, without materialising them).
    """
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    draws = rng.binomial(n, correct / n, size=resamples) / n
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(lo), float(hi)


def fewer_correct_p(k1: Any, n1: Any, k_total: Any, n_total: Any) -> np.ndarray:
    """Return one-sided exact p-values that a slice of n1 images with k1 correct is worse than
    the rest (Fisher's exact test, alternative "less"; arrays broadcast).

    Given the split's n_total images of which k_total are correct, the number correct in a
    random n1 of them is hypergeometric; p = P(X <= k1). Exact, so small slices (the pairs
    near the minimum support) do not produce the too-small p-values of the normal
    approximation.

    Summed here (as Boost's hypergeometric cdf does: from k1 down, or 1 minus the sum from
    k1 + 1 up when k1 is at or above the mode) over all slices at once, starting from a pmf
    built from three binomial pmfs: scipy's ``hypergeom.cdf`` pays a prime factorisation of
    n_total! per value when n_total is below ~10^5 (0.5-1.5 s for the 4,830 slices of a
    50,000-image search). Equal to it within 1e-9 relative (tests; ~1e-12 at 50,000 images).
    """
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (k1, n1, k_total, n_total)))
    x, n, good, total = (a.ravel() for a in arrays)
    lo, hi = np.maximum(0.0, n - (total - good)), np.minimum(n, good)
    out = np.where(x < lo, 0.0, 1.0)
    inside = (x >= lo) & (x < hi)
    below = inside & (x < np.floor((good + 1) * (n + 1) / (total + 2)))  # under the mode
    for rows, step in ((np.nonzero(below)[0], -1.0), (np.nonzero(inside & ~below)[0], 1.0)):
        tail = _hypergeom_tail(x[rows] + (step > 0), total[rows], good[rows], n[rows], step)
        out[rows] = tail if step < 0 else 1.0 - tail
    return out.reshape(arrays[0].shape)


def _hypergeom_tail(
    x: np.ndarray, total: np.ndarray, good: np.ndarray, n: np.ndarray, step: float
) -> np.ndarray:
    """Return P(X <= x) (step -1) or P(X >= x) (step +1) of hypergeometric X (n draws from
    ``total`` with ``good`` successes), summing pmf terms by their ratio until they stop
    mattering (relative to the sum going down, to 1 going up, as the result is 1 - sum)."""
    bad = total - good
    p = n / np.maximum(total, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = (
            stats.binom.pmf(x, good, p)
            * stats.binom.pmf(n - x, bad, p)
            / stats.binom.pmf(n, total, p)
        )
    term = np.nan_to_num(term)
    acc = term.copy()
    x = x.copy()
    live = np.arange(x.size)
    eps = np.finfo(float).eps
    while live.size:
        xs, g, b, m = x[live], good[live], bad[live], n[live]
        if step < 0:  # pmf(x - 1) / pmf(x); 0 at the support's lower end
            t = term[live] * xs * (b - m + xs) / ((m - xs + 1) * (g - xs + 1))
            bound = acc[live] * eps
        else:  # pmf(x + 1) / pmf(x); 0 at the upper end
            t = term[live] * (g - xs) * (m - xs) / ((xs + 1) * (b - m + xs + 1))
            bound = eps
        acc[live] += t
        term[live] = t
        x[live] = xs + step
        live = live[t > bound]
    return acc


def benjamini_hochberg(p: Any) -> np.ndarray:
    """Return Benjamini-Hochberg adjusted p-values (q-values), same order as ``p``."""
    p = np.asarray(p, dtype=float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    return out


# --- per-value table -----------------------------------------------------------------------------


def per_value(
    df: pd.DataFrame, column: str, kind: str, *, split: str | None = None, seed: int = SEED
) -> pd.DataFrame:
    """Return one row per value / quantile bin of ``column`` on ``split`` (None: all rows):
    slice, images, share, correct, accuracy, ci low, ci high (95% bootstrap), rest accuracy,
    gap (points: slice accuracy minus the rest's)."""
    conds = conditions_for(df, column, kind)
    judged = _split_rows(df, split)
    sub = df[judged]
    correct = sub["correct"].to_numpy(dtype=bool)
    total, total_ok = len(sub), int(correct.sum())
    rows = []
    for cond in conds:
        m = cond.mask(sub)
        n, k = int(m.sum()), int(correct[m].sum())
        if n == 0:
            continue
        lo, hi = bootstrap_interval(k, n, seed=seed)
        rest_n, rest_k = total - n, total_ok - k
        rest = rest_k / rest_n if rest_n else float("nan")
        rows.append(
            {
                "slice": cond.text(),
                "images": n,
                "share": n / total,
                "correct": k,
                "accuracy": k / n,
                "ci low": lo,
                "ci high": hi,
                "rest accuracy": rest,
                "gap (points)": 100 * (k / n - rest) if rest_n else float("nan"),
                "condition": cond,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "slice",
            "images",
            "share",
            "correct",
            "accuracy",
            "ci low",
            "ci high",
            "rest accuracy",
            "gap (points)",
            "condition",
        ],
    )


def _masks(df: pd.DataFrame, column: str, kind: str, conds: list[Condition]) -> np.ndarray:
    """Return the (n, len(conds)) bool masks of one column's ``conditions_for`` conditions,
    computed in one pass (codes for values, one searchsorted for bins) instead of one
    comparison per condition; equal to ``Condition.mask`` column by column."""
    if not conds:
        return np.zeros((len(df), 0), dtype=bool)
    if conds[0].op == "==":
        # factorize, then place the few distinct values (pd.Categorical over arrow strings
        # converted every row to a Python object first)
        codes, uniques = pd.factorize(df[column])
        place = pd.Index([c.value for c in conds]).get_indexer(uniques)
        codes = np.append(place, -1)[codes]  # NA (code -1) stays -1
        return codes[:, None] == np.arange(len(conds))[None, :]
    x = _as_float(df[column])
    edges = [conds[0].value] + [c.value[1] for c in conds[1:-1]]
    if kind == "date":
        edges = list(np.asarray(edges, dtype=df[column].dtype).astype("int64"))
    bins = np.searchsorted(np.asarray(edges, dtype=float), x, side="right")
    bins[np.isnan(x)] = -1
    return bins[:, None] == np.arange(len(conds))[None, :]


def _split_rows(df: pd.DataFrame, split: str | None) -> np.ndarray:
    if split is None or "split" not in df.columns:
        return np.ones(len(df), dtype=bool)
    return (df["split"] == split).to_numpy()


# --- weak segments -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A subset of the judged split whose accuracy is significantly below the rest."""

    conditions: tuple[Condition, ...]  # ANDed
    images: int  # support
    share: float  # of the judged rows
    accuracy: float
    rest_accuracy: float
    p_value: float  # raw two-proportion p
    q_value: float  # Benjamini-Hochberg adjusted over every slice tried
    tried: int  # slices tested (the correction's m)
    split: str

    @property
    def gap(self) -> float:
        """Return the points by which the segment's accuracy is below the rest's."""
        return 100 * (self.rest_accuracy - self.accuracy)

    def text(self) -> str:
        """Return the condition(s) in words."""
        return " and ".join(c.text() for c in self.conditions)

    def sentence(self, metric: str = "accuracy") -> str:
        """Return the plain finding, e.g. 'Images with brightness < 0.21 (12% of test):
        accuracy 61% vs 94% elsewhere, p < 0.001 after correcting for 212 slices tried.'"""
        p = "p < 0.001" if self.q_value < 0.001 else f"p = {self.q_value:.3f}"
        return (
            f"Images with {self.text()} ({_pct(self.share)} of {self.split}, "
            f"{self.images:,} images): {metric} {_pct(self.accuracy)} vs "
            f"{_pct(self.rest_accuracy)} elsewhere, {p} after correcting for "
            f"{self.tried:,} slice{'s' if self.tried != 1 else ''} tried."
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of the segment and its sentence."""
        return {
            "conditions": [c.to_dict() for c in self.conditions],
            "text": self.text(),
            "images": self.images,
            "share": round(self.share, 6),
            "accuracy": round(self.accuracy, 6),
            "rest_accuracy": round(self.rest_accuracy, 6),
            "gap_points": round(self.gap, 3),
            "p_value": float(self.p_value),
            "q_value": float(self.q_value),
            "tried": self.tried,
            "split": self.split,
            "sentence": self.sentence(),
        }


def _pct(x: float) -> str:
    v = 100 * x
    return f"{v:.0f}%" if v >= 1 or v == 0 else f"{v:.1g}%"


@dataclass(frozen=True)
class Search:
    """The weak-segment search: what was tried and what was found."""

    segments: tuple[Segment, ...]  # significant and below the rest, best first
    tried: int
    split: str
    images: int  # rows judged
    columns: tuple[str, ...]  # columns searched


def weak_segments(
    df: pd.DataFrame,
    kinds: Mapping[str, str],
    *,
    split: str = "test",
    target_class: str | None = None,
    min_support: int = MIN_SUPPORT,
    alpha: float = ALPHA,
    pairs: bool = True,
) -> Search:
    """Return the segments of ``split`` whose accuracy is significantly below the rest.

    kinds: {column: kind} (``columns.column_kinds``); columns in ``NOT_SEARCHED`` are skipped.
    target_class: judge that class's recall (rows whose true class it is) instead of accuracy.
    Every single condition and (with ``pairs``) every pair on two columns with at least
    ``min_support`` images is tested; BH at ``alpha`` over all of them.
    """
    judged = _split_rows(df, split)
    skip = set(NOT_SEARCHED)
    if target_class is not None:
        judged = judged & (df["true class"] == target_class).to_numpy()
        skip.add("true class")
    searched = [c for c in kinds if c not in skip and c in df.columns]
    edges_from = edge_rows(df)
    conds: list[Condition] = []
    for column in searched:
        conds += conditions_for(df, column, kinds[column], edges_from=edges_from)
    sub = df[judged]
    correct = sub["correct"].to_numpy(dtype=bool)
    n_total, k_total = len(sub), int(correct.sum())
    if not conds or n_total == 0:
        return Search((), 0, split, n_total, tuple(searched))
    masks = np.concatenate(
        [
            _masks(sub, column, kinds[column], [c for c in conds if c.column == column])
            for column in searched
        ],
        axis=1,
    )  # (n, c), columns in the order of conds
    keep = masks.sum(axis=0) >= min_support
    conds = [c for c, k in zip(conds, keep, strict=True) if k]
    masks = masks[:, keep]
    col_of = np.array([searched.index(c.column) for c in conds])
    k1 = masks[correct].sum(axis=0).astype(np.int64)
    n1 = masks.sum(axis=0).astype(np.int64)
    groups: list[tuple[int, ...]] = [(i,) for i in range(len(conds))]
    ns, ks = [n1], [k1]
    if pairs and len(conds) > 1:
        # the correct and the wrong rows apart, so each count is one product over all rows
        # (float32 sums of 0/1 are exact below 2**24 images)
        right = masks[correct].astype(np.float32)
        wrong = masks[~correct].astype(np.float32)
        both_ok = (right.T @ right).round().astype(np.int64)  # (c, c) correct in each pair
        both = both_ok + (wrong.T @ wrong).round().astype(np.int64)  # (c, c) support
        i, j = np.triu_indices(len(conds), k=1)
        ok = (col_of[i] != col_of[j]) & (both[i, j] >= min_support)
        # a pair equal to one of its conditions adds nothing: not tried twice
        ok &= (both[i, j] < n1[i]) & (both[i, j] < n1[j])
        i, j = i[ok], j[ok]
        groups += list(zip(i.tolist(), j.tolist(), strict=True))
        ns.append(both[i, j])
        ks.append(both_ok[i, j])
    n = np.concatenate(ns)
    k = np.concatenate(ks)
    rest_n, rest_k = n_total - n, k_total - k
    testable = rest_n > 0
    p = np.ones(len(n))
    p[testable] = fewer_correct_p(k[testable], n[testable], k_total, n_total)
    tried = int(testable.sum())
    q = np.ones(len(n))
    q[testable] = benjamini_hochberg(p[testable])
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = k / n
        rest = np.where(rest_n > 0, rest_k / np.maximum(rest_n, 1), np.nan)
    found = np.nonzero(testable & (q <= alpha) & (acc < rest))[0]
    found = _without_restatements(found, groups, n)
    score = (rest[found] - acc[found]) * n[found]
    order = found[np.lexsort((np.arange(len(found)), -score))]
    segments = tuple(
        Segment(
            conditions=tuple(conds[c] for c in groups[g]),
            images=int(n[g]),
            share=float(n[g] / n_total),
            accuracy=float(acc[g]),
            rest_accuracy=float(rest[g]),
            p_value=float(p[g]),
            q_value=float(q[g]),
            tried=tried,
            split=split,
        )
        for g in order
    )
    return Search(segments, tried, split, n_total, tuple(searched))


SAME_FINDING = 0.9  # a pair keeping this share of a found single condition's images restates it


def _without_restatements(
    found: np.ndarray, groups: list[tuple[int, ...]], n: np.ndarray
) -> np.ndarray:
    """Return ``found`` without pairs that keep >= SAME_FINDING of the images of one of their
    own conditions that was found alone: the same finding said with an extra clause (still
    counted among the slices tried)."""
    singles = {groups[g][0] for g in found if len(groups[g]) == 1}
    keep = []
    for g in found:
        parts = groups[g]
        if len(parts) == 2 and any(c in singles and n[g] >= SAME_FINDING * n[c] for c in parts):
            continue
        keep.append(g)
    return np.asarray(keep, dtype=np.int64)


def to_where(conditions: tuple[Condition, ...] | list[Condition]) -> where_.Where:
    """Return the slice filter (core.analysis.where) selecting the same rows as ``conditions``
    ([lo, hi) bins become ``>= lo`` and ``< hi``, as the filter's between includes hi)."""
    out: list[where_.Condition] = []
    for c in conditions:
        if c.op == "==":
            out.append(where_.Condition(c.column, "is", _plain(c.value)))
        elif c.op == "between":
            lo, hi = c.value
            out += [where_.Condition(c.column, ">=", lo), where_.Condition(c.column, "<", hi)]
        else:
            out.append(where_.Condition(c.column, c.op, c.value))
    return where_.Where(tuple(out))


def segments_table(search: Search) -> pd.DataFrame:
    """Return the segments as the table the views show (one row each, best first)."""
    return pd.DataFrame(
        [
            {
                "segment": s.text(),
                "images": s.images,
                "share": s.share,
                "accuracy": s.accuracy,
                "rest accuracy": s.rest_accuracy,
                "gap (points)": -s.gap,
                "p (corrected)": s.q_value,
            }
            for s in search.segments
        ],
        columns=[
            "segment",
            "images",
            "share",
            "accuracy",
            "rest accuracy",
            "gap (points)",
            "p (corrected)",
        ],
    )
