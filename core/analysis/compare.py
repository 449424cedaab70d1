"""Compare runs of one dataset on the same images: paired bootstrap intervals, McNemar's exact
test, the images one model gets right and the other wrong, and the conclusion in plain words.

Every model is scored on the same rows, and every bootstrap resample uses the same row indices
for every model (a paired bootstrap), so the interval of a difference reflects only how the
models disagree, not which images each happened to draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from core.errors import ClassLensError
from core.runs import Run

OVERALL = ("accuracy", "balanced_accuracy", "macro_f1")  # one number per model
PER_CLASS = ("recall", "precision", "f1")  # one number per model and class
LABELS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro F1"}
EXACT_MAX_N = 5000  # above this many disagreements the binomial CDF comes from scipy


@dataclass(frozen=True)
class Aligned:
    """Predictions of several runs on the images present in all of them, in the same order."""

    run_ids: tuple[str, ...]  # the compared runs, in the order given
    class_names: tuple[str, ...]  # shared by every run
    split: str | None  # the split compared (None: every split)
    y_true: np.ndarray  # (n,) int64 true classes, the same in every run
    y_pred: np.ndarray  # (m, n) int64 predicted classes, one row per run
    rows: np.ndarray  # (m, n) int64 index of each aligned image in each run's predictions()
    dropped: tuple[int, ...]  # per run: its images missing from some other run, left out


@dataclass(frozen=True)
class Bootstrap:
    """Paired bootstrap of every metric: the point values and one value per resample."""

    n_resamples: int  # B
    seed: int  # of np.random.default_rng, so a rerun gives the same intervals
    point: dict[str, np.ndarray]  # metric -> (m,) overall or (m, k) per class, on all rows
    samples: dict[str, np.ndarray]  # metric -> (B, m) or (B, m, k), same resampled rows per model


@dataclass(frozen=True)
class Estimate:
    """A point value with its percentile bootstrap interval; arrays of one shape."""

    value: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @property
    def excludes_zero(self) -> np.ndarray:
        """Return where the interval lies entirely above or below 0."""
        return (self.low > 0) | (self.high < 0)


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test of two models on the same images."""

    a: int  # index of model A among the compared runs
    b_model: int  # index of model B
    b: int  # images A gets right and B wrong
    c: int  # images A gets wrong and B right
    p_value: float  # two-sided exact binomial p-value


@dataclass(frozen=True)
class Finding:
    """The comparison of one model with the baseline, in words."""

    model: int  # index of the model compared with the baseline
    direction: int  # +1 better than the baseline, -1 worse, 0 no significant difference
    text: str  # the overall sentence
    class_lines: tuple[str, ...]  # per-class differences whose interval excludes 0


def model_names(runs: Sequence[Run]) -> list[str]:
    """Return a short name per run: its checkpoint's file stem, with the run id when shared."""
    stems = [run.meta["checkpoint"]["name"].rsplit(".", 1)[0] for run in runs]
    return [
        f"{s} ({r.run_id[:6]})" if stems.count(s) > 1 else s
        for s, r in zip(stems, runs, strict=True)
    ]


def default_runs(chosen: Run, runs: Sequence[Run]) -> list[str]:
    """Return the run ids Compare opens on: ``chosen`` and the oldest other run of its dataset
    (same fingerprint), when there is one (for the bundled sample: good, then overfit)."""
    fingerprint = chosen.meta["dataset"]["fingerprint"]
    same = [
        r
        for r in runs
        if r.run_id != chosen.run_id and r.meta["dataset"]["fingerprint"] == fingerprint
    ]
    same.sort(key=lambda r: r.meta.get("created", ""))
    return [chosen.run_id, *[r.run_id for r in same[:1]]]


def check_same_dataset(runs: Sequence[Run]) -> None:
    """Raise ClassLensError unless there are 2+ runs, all of one dataset and class list."""
    if len(runs) < 2:
        raise ClassLensError(f"pick at least two runs to compare, got {len(runs)}.")
    ref, names = runs[0], model_names(runs)
    fp = ref.meta["dataset"]["fingerprint"]
    for name, run in zip(names[1:], runs[1:], strict=True):
        other = run.meta["dataset"]["fingerprint"]
        if other != fp:
            raise ClassLensError(
                f"run {name} was evaluated on a different dataset (fingerprint {other[:12]}, "
                f"not {fp[:12]} as {names[0]}); compare runs of the same dataset."
            )
        if run.class_names != ref.class_names:
            raise ClassLensError(
                f"run {name} has different class names ({len(run.class_names)} classes, "
                f"{names[0]} has {len(ref.class_names)}); compare runs of the same dataset."
            )


def align(runs: Sequence[Run], *, split: str | None = None) -> Aligned:
    """Return the runs' predictions on the (split, path) rows present in every run.

    split: keep only this split (None: all). Raises ClassLensError when the runs are of
    different datasets or disagree on an image's true class.
    """
    check_same_dataset(runs)
    keys = ["split", "path"]
    tables = []
    for i, run in enumerate(runs):
        df = run.predictions()
        if split is not None:
            df = df[df["split"] == split]
        df = df.drop_duplicates(keys)
        tables.append(
            pd.DataFrame(
                {
                    "split": df["split"].to_numpy(),
                    "path": df["path"].to_numpy(),
                    f"t{i}": df["y_true"].to_numpy(np.int64),
                    f"p{i}": df["y_pred"].to_numpy(np.int64),
                    f"r{i}": df.index.to_numpy(np.int64),
                }
            )
        )
    merged = tables[0]
    for table in tables[1:]:
        merged = merged.merge(table, on=keys, how="inner", sort=False)
    m = len(runs)
    y_true = merged["t0"].to_numpy(np.int64)
    for i in range(1, m):
        if not np.array_equal(merged[f"t{i}"].to_numpy(np.int64), y_true):
            raise ClassLensError(
                f"run {model_names(runs)[i]} gives some images another true class than "
                f"{model_names(runs)[0]}; re-evaluate both on the same dataset."
            )
    return Aligned(
        run_ids=tuple(r.run_id for r in runs),
        class_names=tuple(runs[0].class_names),
        split=split,
        y_true=y_true,
        y_pred=np.stack([merged[f"p{i}"].to_numpy(np.int64) for i in range(m)]).reshape(m, -1),
        rows=np.stack([merged[f"r{i}"].to_numpy(np.int64) for i in range(m)]).reshape(m, -1),
        dropped=tuple(len(t) - len(merged) for t in tables),
    )


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Return num / den as float64, 0.0 where den is 0 (as core.analysis.metrics does)."""
    return np.divide(num, den, out=np.zeros(num.shape), where=den != 0)


def _scores(y_true: np.ndarray, y_pred: np.ndarray, idx: np.ndarray, k: int) -> dict:
    """Return every metric per resample: (B,) or (B, k), for resampled rows idx (B, n)."""
    n_res = idx.shape[0]
    # Class counts of every resample in one bincount each: resample r's labels offset by r*k.
    offset = (np.arange(n_res, dtype=np.int64) * k)[:, None]
    yt, yp = y_true[idx] + offset, y_pred[idx] + offset
    size = n_res * k
    support = np.bincount(yt.ravel(), minlength=size).reshape(n_res, k)
    predicted = np.bincount(yp.ravel(), minlength=size).reshape(n_res, k)
    tp = np.bincount(yt[yt == yp], minlength=size).reshape(n_res, k)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * tp, support + predicted)
    present = support > 0
    n_present = present.sum(axis=1)
    return {
        "accuracy": _ratio(tp.sum(axis=1), support.sum(axis=1)),
        "balanced_accuracy": _ratio((recall * present).sum(axis=1), n_present),
        "macro_f1": f1.mean(axis=1),
        "recall": recall,
        "precision": _ratio(tp, predicted),
        "f1": f1,
    }


def bootstrap(
    y_true: Any, y_pred: Any, *, n_classes: int, n_resamples: int = 1000, seed: int = 0
) -> Bootstrap:
    """Return the paired bootstrap of every metric in OVERALL and PER_CLASS.

    y_true: (n,) true classes; y_pred: (m, n) predictions of m models on the same rows. One
    (n_resamples, n) index matrix is drawn and used for every model.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.atleast_2d(np.asarray(y_pred, dtype=np.int64))
    if y_pred.shape[1] != len(y_true):
        raise ValueError(
            f"y_pred must be (m, {len(y_true)}) to match y_true, got shape {y_pred.shape}."
        )
    if len(y_true) == 0:
        raise ValueError("no images to compare: y_true is empty.")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}.")
    n = len(y_true)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    everything = np.arange(n)[None, :]
    per_model = [_scores(y_true, yp, idx, n_classes) for yp in y_pred]
    points = [_scores(y_true, yp, everything, n_classes) for yp in y_pred]
    metrics = OVERALL + PER_CLASS
    return Bootstrap(
        n_resamples=n_resamples,
        seed=seed,
        point={k: np.stack([p[k][0] for p in points]) for k in metrics},
        samples={k: np.stack([s[k] for s in per_model], axis=1) for k in metrics},
    )


def estimate(
    boot: Bootstrap, metric: str, *, baseline: int | None = None, level: float = 0.95
) -> Estimate:
    """Return the Estimate of ``metric`` per model, or of model minus ``baseline`` when given.

    Percentile interval at ``level``; shapes (m,) or (m, k); the baseline's own delta is 0.
    """
    value, samples = boot.point[metric], boot.samples[metric]
    if baseline is not None:
        value, samples = value - value[baseline], samples - samples[:, [baseline]]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    return Estimate(value=value, low=low, high=high)


def mcnemar_p(b: int, c: int) -> float:
    """Return McNemar's exact two-sided p-value: min(1, 2 * BinomCDF(min(b, c); b + c, 1/2))."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    if n <= EXACT_MAX_N:  # exact integers, no rounding before the final division
        return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
    from scipy.stats import binom

    return float(min(1.0, 2 * binom.cdf(k, n, 0.5)))


def mcnemar(y_true: Any, y_pred: Any) -> list[McNemar]:
    """Return McNemar's test for every pair (i < j) of the m models in y_pred (m, n)."""
    correct = np.atleast_2d(np.asarray(y_pred)) == np.asarray(y_true)[None, :]
    out = []
    for i, j in combinations(range(len(correct)), 2):
        b = int(np.sum(correct[i] & ~correct[j]))
        c = int(np.sum(~correct[i] & correct[j]))
        out.append(McNemar(a=i, b_model=j, b=b, c=c, p_value=mcnemar_p(b, c)))
    return out


def flips(y_true: Any, pred_a: Any, pred_b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (A right & B wrong, A wrong & B right) as positions into the aligned rows."""
    y_true = np.asarray(y_true)
    right_a, right_b = np.asarray(pred_a) == y_true, np.asarray(pred_b) == y_true
    return np.flatnonzero(right_a & ~right_b), np.flatnonzero(~right_a & right_b)


def p_text(p: float) -> str:
    """Return a p-value for sentences: "p < 0.001" or "p = 0.021"."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def conclude(
    boot: Bootstrap,
    tests: Sequence[McNemar],
    *,
    names: Sequence[str],
    class_names: Sequence[str],
    baseline: int = 0,
    alpha: float = 0.05,
) -> list[Finding]:
    """Return one Finding per model other than ``baseline``: accuracy difference, McNemar,
    and the per-class recall and precision differences whose 95% interval excludes 0."""
    acc = estimate(boot, "accuracy", baseline=baseline)
    per = {m: estimate(boot, m, baseline=baseline) for m in ("recall", "precision")}
    by_pair = {frozenset((t.a, t.b_model)): t for t in tests}
    base = names[baseline]
    findings = []
    for i, name in enumerate(names):
        if i == baseline:
            continue
        p = by_pair[frozenset((baseline, i))].p_value
        d, lo, hi = 100 * acc.value[i], 100 * acc.low[i], 100 * acc.high[i]
        if d == 0:
            head = f"{name} and {base} have the same accuracy [{lo:+.1f}, {hi:+.1f} points]"
        else:
            word = "better" if d > 0 else "worse"
            lo, hi = (lo, hi) if d > 0 else (-hi, -lo)
            head = (
                f"{name} is {word} than {base} on accuracy by {abs(d):.1f} points "
                f"[{lo:.1f}, {hi:.1f}]"
            )
        significant = p < alpha
        tail = (
            "the difference is significant."
            if significant
            else "the difference is not significant (it could be chance)."
        )
        lines = []
        for metric, est in per.items():
            for c in np.flatnonzero(est.excludes_zero[i]):
                v, lo, hi = est.value[i, c], est.low[i, c], est.high[i, c]
                who, (lo, hi) = (name, (lo, hi)) if v > 0 else (base, (-hi, -lo))
                lines.append(
                    f"{who}'s {metric} on '{class_names[int(c)]}' is higher by "
                    f"{100 * abs(v):.1f} points [{100 * lo:.1f}, {100 * hi:.1f}]"
                )
        findings.append(
            Finding(
                model=i,
                direction=int(np.sign(d)) if significant else 0,
                text=f"{head}; McNemar {p_text(p)} — {tail}",
                class_lines=tuple(lines),
            )
        )
    return findings


def _signed(x: float, digits: int) -> str:
    """Return ``x`` with its sign, "+9.6" / "-2.0", and a bare "0.0" where it rounds to 0."""
    text = f"{x:+.{digits}f}"
    return text[1:] if float(text) == 0 else text


def ci_text(low: float, high: float, *, scale: float = 1.0, digits: int = 1) -> str:
    """Return an interval for tables, signed: "[+9.6, +14.4]" (values times ``scale``)."""
    return f"[{_signed(scale * low, digits)}, {_signed(scale * high, digits)}]"


def overall_table(boot: Bootstrap, *, names: Sequence[str], baseline: int = 0) -> pd.DataFrame:
    """Return one row per model: each OVERALL metric, then per metric its delta vs the
    baseline and the delta's 95% interval in points (NaN and "" on the baseline's row)."""
    table = pd.DataFrame({"model": list(names)})
    for metric in OVERALL:
        table[LABELS[metric]] = boot.point[metric]
    others = [i != baseline for i in range(len(names))]
    for metric in OVERALL:
        label, est = LABELS[metric], estimate(boot, metric, baseline=baseline)
        table[f"Δ {label}"] = np.where(others, est.value, np.nan)
        table[f"Δ {label} 95% CI"] = [
            ci_text(lo, hi, scale=100) if keep else ""
            for lo, hi, keep in zip(est.low, est.high, others, strict=True)
        ]
    return table


def class_table(
    boot: Bootstrap,
    *,
    names: Sequence[str],
    class_names: Sequence[str],
    baseline: int = 0,
    metric: str = "recall",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (table, significant): per class, ``metric`` of each model then, per other
    model, its delta vs the baseline (a share) and the delta's 95% interval in points, as
    :func:`overall_table`; ``significant`` is an int
    frame of the same shape: +1 / -1 on the deltas whose interval lies above / below 0."""
    est = estimate(boot, metric, baseline=baseline)
    table = pd.DataFrame({"class": list(class_names)})
    for i, name in enumerate(names):
        table[f"{metric} {name}"] = boot.point[metric][i]
    flags = pd.DataFrame(0, index=table.index, columns=table.columns)
    for i, name in enumerate(names):
        if i == baseline:
            continue
        col = f"Δ {name}"
        table[col] = est.value[i]
        table[f"{col} 95% CI"] = [
            ci_text(lo, hi, scale=100) for lo, hi in zip(est.low[i], est.high[i], strict=True)
        ]
        flags[col] = flags[f"{col} 95% CI"] = (np.sign(est.value[i]) * est.excludes_zero[i]).astype(
            int
        )
    return table, flags


def points(delta: float) -> str:
    """Return a difference of two shares in points for tables: "+12.5 pts", "0.0 pts" when it
    rounds to nothing, "–" when NaN."""
    return "–" if math.isnan(delta) else f"{_signed(100 * delta, 1)} pts"


def flip_labels(
    aligned: Aligned,
    positions: Any,
    *,
    confidence: Sequence[Any],
    names: Sequence[str],
    models: Sequence[int],
    sep: str = " · ",
) -> list[str]:
    """Return per aligned position: the true class and each of ``models``' prediction with
    its confidence and whether it is right, "true '3' · good '3' 98% ✓ · overfit '8' 41% ✗"
    (class names quoted for md_names).

    confidence: per compared run, its predictions()["confidence"] (indexed by aligned.rows).
    """
    positions = np.asarray(positions, dtype=np.int64)
    cls = aligned.class_names
    out = []
    for p in positions:
        truth = int(aligned.y_true[p])
        parts = [f"true '{cls[truth]}'"]
        for m in models:
            pred = int(aligned.y_pred[m, p])
            conf = float(np.asarray(confidence[m])[aligned.rows[m, p]])
            mark = "✓" if pred == truth else "✗"
            parts.append(f"{names[m]} '{cls[pred]}' {conf:.0%} {mark}")
        out.append(sep.join(parts))
    return out


def mcnemar_table(tests: Sequence[McNemar], *, names: Sequence[str]) -> pd.DataFrame:
    """Return one row per pair: A, B, b (A right, B wrong), c (A wrong, B right), p-value."""
    return pd.DataFrame(
        {
            "A": [names[t.a] for t in tests],
            "B": [names[t.b_model] for t in tests],
            "b: A right, B wrong": [t.b for t in tests],
            "c: A wrong, B right": [t.c for t in tests],
            "p-value": [t.p_value for t in tests],
        }
    )
