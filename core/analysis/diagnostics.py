"""Verdicts in plain words: health, the accuracy paradox, overfitting. Pure, no I/O.

Input is the metrics.json contract (``metrics["splits"][split]`` dicts), so the CLI, the
dashboard and a CI gate reach the same verdict from the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from core.contracts import ClassMetrics, MetricsJson
from core.contracts import SplitMetrics as SplitMetrics  # its home is core.contracts

LEVELS = ("good", "needs attention", "bad")
MAX_LISTED = 3  # failing class scores given a reason line each, per level; more share a line
MAX_NAMED = 10  # class scores named in that shared line
Judged = Literal["recall", "precision"]  # the per-class scores a verdict judges


@dataclass(frozen=True)
class Thresholds:
    """Where "good" ends and "bad" begins; defaults from the reference article."""

    good_accuracy: float = 0.90  # good: accuracy above this ...
    good_class: float = 0.85  # ... and every class's precision and recall above this
    bad_accuracy: float = 0.60  # bad: accuracy at or below this ("around 50%")
    bad_class: float = 0.60  # bad: any class's precision or recall below this
    imbalance_ratio: float = 3.0  # largest / smallest class support that warns of the paradox
    overfit_gap: float = 0.05  # train minus test accuracy (or class recall) worth flagging

    def __post_init__(self) -> None:
        for name in ("good_accuracy", "good_class", "bad_accuracy", "bad_class", "overfit_gap"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}.")
        if self.bad_accuracy > self.good_accuracy or self.bad_class > self.good_class:
            raise ValueError(
                "a 'bad' threshold is above its 'good' one (accuracy: bad "
                f"{self.bad_accuracy:g} vs good {self.good_accuracy:g}; class: bad "
                f"{self.bad_class:g} vs good {self.good_class:g}). Lower the bad threshold."
            )
        if self.imbalance_ratio < 1.0:
            raise ValueError(f"imbalance_ratio must be at least 1, got {self.imbalance_ratio!r}.")


@dataclass(frozen=True)
class ClassIssue:
    """One class failing one threshold."""

    name: str
    metric: str  # "precision" or "recall"
    value: float
    support: int


@dataclass(frozen=True)
class Verdict:
    """The health verdict of one split."""

    level: str  # one of LEVELS
    headline: str  # one sentence, naming the worst class when one fails
    reasons: tuple[str, ...]  # every reason, most serious first
    failing: tuple[ClassIssue, ...]  # classes below the good threshold, worst first


def pct(x: float, digits: int = 1) -> str:
    """Return ``x`` (a fraction) as a percentage with ``digits`` decimals: 0.9123 -> "91.2%"."""
    return f"{100 * x:.{digits}f}%"


def pct_brief(x: float) -> str:
    """Return a percentage for sentences: whole when it is, else one decimal ("12%", "91.3%")."""
    return f"{100 * x:.0f}%" if abs(100 * x - round(100 * x)) < 1e-6 else f"{100 * x:.1f}%"


def plural(n: int, noun: str, many: str | None = None) -> str:
    """Return the count with its noun in the right number: (1, "image") -> "1 image",
    (1_200, "image") -> "1,200 images"; ``many`` for irregular plurals."""
    return f"{n:,} {noun if n == 1 else many or noun + 's'}"


def number(x: float) -> str:
    """Return ``x`` for sentences as the app writes numbers: three significant digits, thousands
    separators, never an exponent: 1243.7 -> "1,244", 720.0 -> "720", 12.34 -> "12.3", 0.4567 ->
    "0.457", 999.7 -> "1,000", 0.0000123 -> "0.0000123"."""
    x = float(x)
    if not math.isfinite(x) or x == 0:
        return "0" if x == 0 else str(x)
    decimals = max(0, 2 - math.floor(math.log10(abs(x))))
    text = f"{x:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


_pct = pct_brief


def level_of(value: float, thresholds: Thresholds = Thresholds()) -> str:
    """Return the level of one class score: "bad" below bad_class, "needs attention" below
    good_class, else "good"."""
    if value < thresholds.bad_class:
        return "bad"
    if value < thresholds.good_class:
        return "needs attention"
    return "good"


_COLUMN_SUMS: list[tuple[Any, list[int]]] = []  # (cm, its column sums), newest first


def _column_sums(cm: Any) -> list[int]:
    """Return the predicted-class totals of a metrics.json confusion matrix (nested lists).

    At 1,000 classes summing a million list items takes ~60 ms and a page asks several
    times per rerun; metrics.json is read once per run and never changed, so the sums are
    kept for the last few matrices, matched by identity (the reference held keeps ids unique).
    """
    for ref, sums in _COLUMN_SUMS:
        if ref is cm:
            return sums
    sums = np.asarray(cm, dtype=np.int64).reshape(len(cm), -1).sum(axis=0).tolist()
    _COLUMN_SUMS.insert(0, (cm, sums))
    del _COLUMN_SUMS[8:]
    return sums


def _judged(m: SplitMetrics) -> list[tuple[ClassMetrics, tuple[Judged, ...]]]:
    """Return each per-class entry with the metrics that are defined for it.

    Recall needs true images of the class (support > 0); precision needs predictions of it.
    Predictions are counted from the confusion matrix when present; without it a class is
    taken as predicted when it has support or a non-zero precision. A class marked
    ``"absent"`` (not in the dataset at all) is not judged.
    """
    cm = m.get("confusion_matrix")
    col_sums = _column_sums(cm) if cm else None
    out = []
    for k, c in enumerate(m["per_class"]):
        predicted = col_sums[k] > 0 if col_sums else c["support"] > 0 or c["precision"] > 0
        recall: tuple[Judged, ...] = ("recall",) if c["support"] > 0 else ()
        precision: tuple[Judged, ...] = ("precision",) if predicted else ()
        metrics = recall + precision
        # a class the dataset has no folder for: its predictions are already counted as
        # misses of the true classes, so its own precision (0) would blame it twice
        out.append((c, () if c.get("absent") else metrics))
    return out


def class_issues(m: SplitMetrics, threshold: float) -> list[ClassIssue]:
    """Return (class, metric) pairs below ``threshold``, worst first (recall before precision
    on ties). Recall is judged only for classes with images, precision only for classes the
    model predicted at least once; an undefined ratio is not a failure."""
    issues = [
        ClassIssue(c["class"], metric, float(c[metric]), int(c["support"]))
        for c, metrics in _judged(m)
        for metric in metrics
        if c[metric] < threshold
    ]
    return sorted(issues, key=lambda i: (i.value, i.metric != "recall"))


def class_levels(m: SplitMetrics, thresholds: Thresholds = Thresholds()) -> list[str]:
    """Return one level per class (in ``per_class`` order) from its worst judged score among
    precision and recall; a class with neither images nor predictions is "good"."""
    return [
        level_of(min((c[k] for k in metrics), default=1.0), thresholds) for c, metrics in _judged(m)
    ]


def imbalance_ratio(m: SplitMetrics) -> float:
    """Return the largest class support over the smallest non-zero one (1.0 when balanced)."""
    supports = [c["support"] for c in m["per_class"] if c["support"] > 0]
    return max(supports) / min(supports) if supports else 1.0


def imbalance_warning(m: SplitMetrics, thresholds: Thresholds = Thresholds()) -> str | None:
    """Return the accuracy-paradox warning when classes are unbalanced, else None."""
    ratio = imbalance_ratio(m)
    if ratio < thresholds.imbalance_ratio:
        return None
    big = max(m["per_class"], key=lambda c: c["support"])
    small = min((c for c in m["per_class"] if c["support"] > 0), key=lambda c: c["support"])
    return (
        f"Classes are unbalanced: '{big['class']}' has {big['support']} images and "
        f"'{small['class']}' {small['support']} ({ratio:.1f}x). Accuracy "
        f"({_pct(m['accuracy'])}) is dominated by the large classes; judge the model by "
        f"balanced accuracy ({_pct(m['balanced_accuracy'])}) and per-class recall."
    )


def health(m: SplitMetrics, thresholds: Thresholds = Thresholds()) -> Verdict:
    """Return the good / needs attention / bad verdict for one split, with its reasons.

    Good: accuracy above ``good_accuracy`` and every class's precision and recall at or above
    ``good_class``. Bad: accuracy at or below ``bad_accuracy`` or any class below
    ``bad_class``. Anything between needs attention. Class imbalance does not change the
    level (a model good on every class is good); :func:`imbalance_warning` says it apart.
    """
    t = thresholds
    if m["n"] == 0:
        return Verdict("bad", "No images were evaluated in this split.", (), ())
    acc = m["accuracy"]
    bad = class_issues(m, t.bad_class)
    weak = class_issues(m, t.good_class)
    reasons: list[str] = []
    if acc <= t.bad_accuracy:
        reasons.append(f"Accuracy is {_pct(acc)}, at or below the {_pct(t.bad_accuracy)} floor.")
    reasons += [
        f"{i.metric.capitalize()} on '{i.name}' is {_pct(i.value)} "
        f"(below {_pct(t.bad_class)}): " + _meaning(i)
        for i in bad[:MAX_LISTED]
    ]
    if len(bad) > MAX_LISTED:
        reasons.append(_more(bad[MAX_LISTED:], t.bad_class))
    if acc <= t.good_accuracy and acc > t.bad_accuracy:
        reasons.append(f"Accuracy is {_pct(acc)}, not above {_pct(t.good_accuracy)}.")
    between = [i for i in weak if i.value >= t.bad_class]
    if len(between) <= MAX_LISTED:
        reasons += [
            f"{i.metric.capitalize()} on '{i.name}' is {_pct(i.value)} "
            f"(below {_pct(t.good_class)})."
            for i in between
        ]
    else:  # one line, so a model weak everywhere does not bury the worst reasons
        reasons.append(_more(between, t.good_class))
    if bad or acc <= t.bad_accuracy:
        level = "bad"
    elif weak or acc <= t.good_accuracy:
        level = "needs attention"
    else:
        level = "good"
        reasons.append(
            f"Accuracy {_pct(acc)} is above {_pct(t.good_accuracy)} and the weakest class "
            f"score is {_pct(_weakest(m))}, above {_pct(t.good_class)}."
        )
    return Verdict(level, _headline(level, m, bad or weak, t), tuple(reasons), tuple(weak))


def _more(issues: list[ClassIssue], below: float) -> str:
    """Return one line summing up ``issues`` (worst first), naming at most MAX_NAMED."""
    named = ", ".join(f"{i.metric} on '{i.name}' {_pct(i.value)}" for i in issues[:MAX_NAMED])
    rest = f" and {len(issues) - MAX_NAMED} more" if len(issues) > MAX_NAMED else ""
    return f"{len(issues)} more scores below {_pct(below)}: {named}{rest}."


def _weakest(m: SplitMetrics) -> float:
    return min((c[k] for c, metrics in _judged(m) for k in metrics), default=1.0)


def _meaning(i: ClassIssue) -> str:
    if i.metric == "recall":
        return f"the model misses {_pct(1 - i.value)} of the '{i.name}' images."
    return f"when the model says '{i.name}', it is wrong {_pct(1 - i.value)} of the time."


def _headline(level: str, m: SplitMetrics, issues: list[ClassIssue], t: Thresholds) -> str:
    acc = _pct(m["accuracy"])
    if level == "good":
        return (
            f"Good: accuracy {acc}, and every class's precision and recall above "
            f"{_pct(t.good_class)}."
        )
    prefix = "Not production-ready" if level == "bad" else "Needs attention"
    if issues:
        worst = issues[0]
        tail = (
            f"although accuracy is {acc}"
            if m["accuracy"] > t.good_accuracy
            else f"and accuracy is only {acc}"
        )
        return f"{prefix}: {worst.metric} on '{worst.name}' is {_pct(worst.value)} {tail}."
    if level == "bad":
        return f"{prefix}: accuracy is {acc}, at or below the {_pct(t.bad_accuracy)} floor."
    return (
        f"{prefix}: accuracy is {acc}, not above {_pct(t.good_accuracy)}, although every "
        f"class's precision and recall is at least {_pct(t.good_class)}."
    )


@dataclass(frozen=True)
class ClassGap:
    """How much better one class does on train than on the evaluated split."""

    name: str
    train_recall: float
    other_recall: float

    @property
    def gap(self) -> float:
        """Train recall minus the other split's recall."""
        return self.train_recall - self.other_recall


def slice_caveat(whole: MetricsJson, held_out: str) -> str:
    """Return the sentence that qualifies a slice's train/held-out gap, with the whole
    dataset's gap (``whole``: its metrics) when it has both splits."""
    out = (
        f"On a slice the gap can come from how the slice's train and {held_out} images differ, "
        "not only from the model"
    )
    splits = whole["splits"]
    if "train" in splits and held_out in splits:
        gap = splits["train"]["accuracy"] - splits[held_out]["accuracy"]
        out += f"; compare with the whole dataset's gap: {100 * gap:.1f} points"
    return out + "."


@dataclass(frozen=True)
class Overfitting:
    """The train-versus-held-out comparison."""

    available: bool  # False when there is no train split or no held-out split
    level: str  # one of LEVELS
    message: str  # plain-language verdict
    other: str  # the held-out split compared with train ("test" or "val")
    accuracy_gap: float  # train accuracy minus held-out accuracy
    macro_f1_gap: float
    class_gaps: tuple[ClassGap, ...]  # every class, largest gap first


def overfitting(
    metrics: MetricsJson,
    thresholds: Thresholds = Thresholds(),
    *,
    other: str | None = None,
    whole: MetricsJson | None = None,
) -> Overfitting:
    """Return the overfitting verdict comparing train with ``other`` (default: test, else val).

    whole: the whole dataset's metrics when ``metrics`` are a slice's; a gap on a slice is then
    only stated, beside the whole dataset's (a slice's train and held-out images can differ).
    """
    splits = metrics["splits"]
    held_out = other or next((s for s in ("test", "val") if s in splits), None)
    if "train" not in splits or held_out is None or held_out not in splits:
        missing = (
            "train split"
            if "train" not in splits
            else f"'{other}' split"
            if other
            else "test or val split"
        )
        return Overfitting(
            False,
            "good",
            f"No {missing} in this dataset, so overfitting cannot be measured. Evaluate a "
            "dataset laid out as root/train/<class>/... and root/test/<class>/....",
            held_out or "",
            0.0,
            0.0,
            (),
        )
    tr, te = splits["train"], splits[held_out]
    gaps = tuple(
        sorted(
            (
                ClassGap(a["class"], a["recall"], b["recall"])
                for a, b in zip(tr["per_class"], te["per_class"], strict=True)
                if b["support"] > 0
            ),
            key=lambda g: g.gap,
            reverse=True,
        )
    )
    acc_gap = tr["accuracy"] - te["accuracy"]
    f1_gap = tr["macro"]["f1"] - te["macro"]["f1"]
    t = thresholds.overfit_gap
    big = [g for g in gaps if g.gap > t]
    names = ", ".join(f"'{g.name}' ({100 * g.gap:+.0f} pts)" for g in big[:3])
    facts = (
        f"train accuracy {_pct(tr['accuracy'])} vs {held_out} {_pct(te['accuracy'])}, "
        f"a gap of {100 * acc_gap:.1f} points"
    )
    if whole is not None and (acc_gap > t or big):
        level = "bad" if acc_gap > 2 * t else "needs attention"
        message = (
            f"Train/{held_out} gap on this slice: {facts}. {slice_caveat(whole, held_out)}"
            + (f" Largest per-class recall gaps: {names}." if names else "")
        )
    elif acc_gap > 2 * t:
        level = "bad"
        message = (
            f"Overfitting: {facts}. The model learned its training images rather than the "
            f"classes. Largest per-class recall gaps: {names or 'spread over all classes'}."
        )
    elif acc_gap > t or big:
        level = "needs attention"
        message = f"Some overfitting: {facts}." + (
            f" Largest per-class recall gaps: {names}." if names else ""
        )
    else:
        level = "good"
        message = (
            f"No sign of overfitting: {facts}, and no class's recall drops more than "
            f"{100 * t:.0f} points. (Leakage -- {held_out} images that nearly copy training "
            "images -- can still hide a gap.)"
        )
    return Overfitting(True, level, message, held_out, acc_gap, f1_gap, gaps)
