"""The health summary: one checklist of every finding about a run and split. Pure, no I/O.

Each check turns numbers the other pages show into a level (pass / attention / fail), one
sentence that follows from those numbers, and the page that shows them. Checks that need the
image files or the model (leakage by pHash or by embeddings) take their results as inputs;
the caller decides when to compute them, and passes None for "not computed yet". The headline
is the worst computed check and names its reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import pandas as pd

from core.analysis import calibration, diagnostics, failure_clusters, slices
from core.analysis.diagnostics import SplitMetrics, Thresholds, pct_brief
from core.contracts import MetricsJson

LEVELS = ("pass", "attention", "fail")  # computed levels, least to most serious
NOT_COMPUTED, NOT_AVAILABLE = "not computed", "not available"  # neither counts in the verdict
VERDICT_LEVEL = {"pass": "good", "attention": "needs attention", "fail": "bad"}  # diagnostics'
PREFIX = {"pass": "Good", "attention": "Needs attention", "fail": "Not production-ready"}
PAGES = {  # the page behind each check -> its title in the navigation
    "pages/per_class.py": "Per-class metrics",
    "pages/overfitting.py": "Overfitting",
    "pages/leakage.py": "Leakage",
    "pages/calibration.py": "Calibration",
    "pages/suspicious.py": "Suspicious labels",
    "pages/failure_clusters.py": "Failure clusters",
    "pages/overview.py": "Overview",
    "pages/slices.py": "Slices",
}
SOURCES = {  # meta["preprocessing_source"] values (core.engine.preprocessing.SOURCES) -> in words
    "declared": "declared in the checkpoint",
    "read": "read from the model file",
    "probed": "measured by the preprocessing probe",
    "typed": "typed by the user",
    "default": "default",
}


@dataclass(frozen=True)
class Limits:
    """Where the checks without a Thresholds field turn amber or red (fractions)."""

    ece_attention: float = 0.05  # ECE above this: confidence off by > 5 points on average
    ece_fail: float = 0.15  # ECE above this: confidence cannot be read as a probability
    suspicious_fail: float = 0.05  # share of a split with disputed labels (any needs attention)
    leak_fail_share: float = 0.10  # share of the held-out split that nearly copies train
    skipped_fail_share: float = 0.10  # share of a split's files that could not be read


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    key: str  # stable id: classes, gap, leakage, embedding_leakage, calibration, ...
    title: str
    level: str  # one of LEVELS, NOT_COMPUTED or NOT_AVAILABLE
    sentence: str  # one sentence that follows from the numbers it quotes (markdown-free)
    page: str  # pages/*.py showing the numbers
    reason: str = ""  # the clause the headline uses when this check is the worst
    details: tuple[str, ...] = ()  # more lines (e.g. every failing class score)


@dataclass(frozen=True)
class Summary:
    """Every check, and the verdict: the worst computed level, naming its reason."""

    level: str  # one of LEVELS
    headline: str
    checks: tuple[Check, ...]

    @property
    def worst(self) -> Check:
        """Return the check the headline names (the first of the most serious level)."""
        return next(c for c in self.checks if c.level == self.level)


@dataclass(frozen=True)
class LeakFinding:
    """Held-out images that nearly copy a training image, and the accuracy without them."""

    method: str  # how pairs were found, e.g. "pHash within 4 bits"
    split: str  # the held-out split
    pairs: int  # held-out/train pairs found
    leaked: int  # held-out images in at least one pair
    n: int  # held-out images in all
    accuracy: float  # held-out accuracy with every image
    accuracy_without: float  # without the leaked images; NaN when every image leaked
    unread: int = 0  # held-out images whose file could not be read, never paired


def leak_finding(
    pairs: pd.DataFrame,
    before: SplitMetrics,
    after: SplitMetrics,
    *,
    split: str,
    method: str,
    unread: int = 0,
) -> LeakFinding:
    """Return the finding of core.images.leakage.leak_pairs / embedding_pairs ``pairs`` on
    ``split``,
    with its metrics ``before`` and ``after`` core.images.leakage.metrics_without; ``unread``: the
    split's images that could not be hashed or embedded."""
    return LeakFinding(
        method=method,
        split=split,
        pairs=len(pairs),
        leaked=int(pairs["path"].nunique()),
        n=int(before["n"]),
        accuracy=float(before["accuracy"]),
        accuracy_without=float(after["accuracy"]) if after["n"] else math.nan,
        unread=unread,
    )


def held_out_split(splits: Sequence[str], split: str) -> str | None:
    """Return the split leakage is judged on: ``split`` when held out, else test, else val."""
    if "train" not in splits:
        return None
    if split in ("test", "val"):
        return split
    return next((s for s in ("test", "val") if s in splits), None)


def _points(delta: float) -> str:
    return f"{100 * delta:+.1f} points"


def _shown_points(before: float, after: float) -> float:
    """Return ``after - before`` in points as the reader computes it from the two shares the
    sentence shows (one decimal, as pct_brief), so "97.8% instead of 97.6%" says +0.2."""
    return round(round(100 * after, 1) - round(100 * before, 1), 1)


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- the checks ---------------------------------------------------------------------------------


def check_classes(m: SplitMetrics, t: Thresholds = Thresholds()) -> Check:
    """Return the per-class thresholds check: core.analysis.diagnostics.health's level and
    headline."""
    v = diagnostics.health(m, t)
    level = {"good": "pass", "needs attention": "attention", "bad": "fail"}[v.level]
    body = v.headline.partition(": ")[2] or v.headline  # without the "Good: " prefix
    body = body.rstrip(".")
    return Check(
        "classes",
        "Per-class thresholds",
        level,
        _first_upper(body) + ".",
        "pages/per_class.py",
        reason=body,
        details=v.reasons if level != "pass" else (),
    )


def check_gap(
    metrics: Mapping[str, Any],
    t: Thresholds = Thresholds(),
    *,
    whole: Mapping[str, Any] | None = None,
) -> Check:
    """Return the train/test gap check: core.analysis.diagnostics.overfitting's level, in one
    sentence. whole: the whole dataset's metrics when ``metrics`` are a slice's (a gap is then
    stated, not called overfitting, beside the whole dataset's gap)."""
    ov = diagnostics.overfitting(cast(MetricsJson, dict(metrics)), t)
    title, page = "Train/test gap", "pages/overfitting.py"
    if not ov.available:
        return Check("gap", title, NOT_AVAILABLE, ov.message.split(". ")[0] + ".", page, reason="")
    tr, te = metrics["splits"]["train"], metrics["splits"][ov.other]
    gap = f"{100 * ov.accuracy_gap:.1f}"
    facts = (
        f"train accuracy {pct_brief(tr['accuracy'])} vs {ov.other} {pct_brief(te['accuracy'])}, "
        f"a gap of {gap} points"
    )
    limit = 100 * t.overfit_gap
    worst = ov.class_gaps[0] if ov.class_gaps else None
    level = {"good": "pass", "needs attention": "attention", "bad": "fail"}[ov.level]
    if level == "fail":
        why = f"above twice the {limit:g}-point limit"
    elif ov.accuracy_gap > t.overfit_gap:
        why = f"above the {limit:g}-point limit"
    elif level == "attention" and worst is not None:
        why = (
            f"and recall on '{worst.name}' drops {100 * worst.gap:.1f} points, above the "
            f"{limit:g}-point limit"
        )
    else:
        drop = f"{100 * worst.gap:.1f}" if worst is not None and worst.gap > 0 else "0"
        why = f"and no class's recall drops more than {limit:g} points (largest {drop})"
    sentence = _first_upper(f"{facts}, {why}.")
    if level == "pass":
        reason = f"{facts}, {why}"
    elif whole is not None:
        reason = f"train/{ov.other} gap on this slice, {facts}, {why}"
        sentence += " " + diagnostics.slice_caveat(cast(MetricsJson, dict(whole)), ov.other)
    else:
        reason = f"overfitting, {facts}, {why}"
    return Check("gap", title, level, sentence, page, reason=reason)


def check_leakage(
    finding: LeakFinding | None,
    t: Thresholds = Thresholds(),
    limits: Limits = Limits(),
    *,
    key: str = "leakage",
    title: str = "Leakage (pixels)",
    unavailable: str | None = None,
    cost: str = "it reads every image once",
) -> Check:
    """Return a leakage check from ``finding`` (None: not computed yet).

    Any near-copy needs attention; it fails when the leaked images are at least
    ``limits.leak_fail_share`` of the split, or when removing them lowers accuracy by more
    than ``t.overfit_gap`` (the leak hides a train/test gap that large).
    """
    page = "pages/leakage.py"
    if unavailable is not None:
        return Check(key, title, NOT_AVAILABLE, unavailable, page)
    if finding is None:
        return Check(key, title, NOT_COMPUTED, f"Not computed yet: {cost}.", page)
    f = finding
    if f.n and f.unread >= f.n:
        return Check(
            key,
            title,
            NOT_AVAILABLE,
            f"None of the {f.n:,} {f.split} image files could be read (moved or deleted?), so "
            "near-copies cannot be looked for.",
            page,
        )
    unread = f" ({f.unread:,} could not be read)" if f.unread else ""
    if f.pairs == 0:
        return Check(
            key,
            title,
            "pass",
            f"No {f.split} image nearly copies a training image ({f.method}; "
            f"{f.n - f.unread:,} of {f.n:,} {f.split} images checked{unread}).",
            page,
        )
    share = f.leaked / f.n if f.n else 0.0
    images = f"{f.leaked:,} of {f.n:,} {f.split} images ({pct_brief(share)})"
    copy = "nearly copies" if f.leaked == 1 else "nearly copy"
    pairs = "1 pair" if f.pairs == 1 else f"{f.pairs:,} pairs"
    what = f"{images} {copy} a training image ({pairs}, {f.method}){unread}"
    if math.isnan(f.accuracy_without):
        effect = f"every {f.split} image is a near-copy, so there is no accuracy without them"
        drop = 0.0
    else:
        delta = f.accuracy_without - f.accuracy
        drop = -delta
        shown = _shown_points(f.accuracy, f.accuracy_without)  # as the Leakage page's delta
        change = (
            f"unchanged at {pct_brief(f.accuracy)}"
            if shown == 0
            else f"{pct_brief(f.accuracy_without)} instead of {pct_brief(f.accuracy)} "
            f"({_points(shown / 100)})"
        )
        effect = f"{f.split} accuracy without them is {change}"
    level = "fail" if share >= limits.leak_fail_share or drop > t.overfit_gap else "attention"
    if level == "fail":
        effect += (
            f", at least {pct_brief(limits.leak_fail_share)} of the split"
            if share >= limits.leak_fail_share
            else f", a fall of more than {100 * t.overfit_gap:g} points"
        )
    reason = f"leakage, {images} {copy} a training image"
    return Check(key, title, level, f"{what}; {effect}.", page, reason=reason)


def check_calibration(
    rel: calibration.Reliability | None, split: str, limits: Limits = Limits()
) -> Check:
    """Return the calibration check: the split's ECE against ``limits``, and which way the
    confidence errs as the reliability bins say (core.analysis.calibration.confidence_lean)."""
    title, page = "Calibration", "pages/calibration.py"
    if rel is None:
        return Check("calibration", title, NOT_COMPUTED, "Not computed yet.", page)
    if not rel.count.sum():
        return Check(
            "calibration", title, NOT_AVAILABLE, f"No {split} predictions to calibrate.", page
        )
    ece = rel.ece
    if ece > limits.ece_fail:
        level, bound = "fail", f"above {pct_brief(limits.ece_fail)}"
    elif ece > limits.ece_attention:
        level, bound = "attention", f"above {pct_brief(limits.ece_attention)}"
    else:
        level, bound = "pass", f"at most {pct_brief(limits.ece_attention)}"
    direction = calibration.confidence_direction(rel)
    lean = _lean(direction, ece)
    head = f"ECE on {split} is {100 * ece:.1f}% ({bound})"
    return Check(
        "calibration",
        title,
        level,
        f"{head}: the model {'' if direction.direction == 'mixed' else 'is '}{lean}.",
        page,
        reason=f"{head}, the model is {_LEAN_WORD[direction.direction]}",
    )


_LEAN_WORD = {
    "calibrated": "well calibrated",
    "over": "overconfident",
    "under": "underconfident",
    "mixed": "over- and underconfident",
}


def _lean(d: calibration.Direction, ece: float) -> str:
    """Return which way the confidence errs, as core.analysis.calibration.confidence_direction (the
    Calibration page's reading) derives it from the bins."""
    if d.direction == "calibrated":
        return f"well calibrated (ECE below {pct_brief(calibration.CALIBRATED_ECE)})"
    if d.direction in ("over", "under"):
        over = d.direction == "over"
        side = d.over if over else d.under
        return (
            f"{_LEAN_WORD[d.direction]}, {100 * side:.1f} of those points from bins where it "
            f"is right {'less' if over else 'more'} often than it says"
        )
    parts = []
    for direction in ("over", "under"):
        r = max((r for r in d.regions if r.direction == direction), key=lambda r: r.ece)
        parts.append(
            f"{direction}confident from {r.lo:.0%} to {r.hi:.0%} confidence (it says "
            f"{r.confidence:.0%} and is right {r.accuracy:.0%})"
        )
    return (
        f"errs both ways, {parts[0]} and {parts[1]}; {100 * d.over:.1f} of the "
        f"{100 * ece:.1f} points come from overconfident bins"
    )


def check_suspicious(flagged: int | None, n: int, split: str, limits: Limits = Limits()) -> Check:
    """Return the suspicious-labels check: ``flagged`` of the ``n`` images of ``split``
    (core.analysis.suspicious.suspicious_labels); any needs attention, ``limits.suspicious_fail``
    fails."""
    title, page = "Suspicious labels", "pages/suspicious.py"
    if flagged is None:
        return Check("suspicious", title, NOT_COMPUTED, "Not computed yet.", page)
    if n == 0:
        return Check("suspicious", title, NOT_AVAILABLE, f"No {split} images to judge.", page)
    if flagged == 0:
        return Check(
            "suspicious",
            title,
            "pass",
            f"No {split} image's label is disputed by the model (of {n:,}).",
            page,
        )
    share = flagged / n
    level = "fail" if share >= limits.suspicious_fail else "attention"
    are = "is" if flagged == 1 else "are"
    what = f"{flagged:,} of {n:,} {split} labels ({pct_brief(share)}) {are} disputed by the model"
    bound = (
        f"at least {pct_brief(limits.suspicious_fail)}"
        if level == "fail"
        else f"below {pct_brief(limits.suspicious_fail)}"
    )
    return Check(
        "suspicious",
        title,
        level,
        f"{what} ({bound}): another class's probability reaches that class's average "
        "self-confidence; review them before trusting the metrics.",
        page,
        reason=what,
    )


def check_imbalance(m: SplitMetrics, t: Thresholds = Thresholds()) -> Check:
    """Return the class-imbalance check: attention when core.analysis.diagnostics.imbalance_warning
    warns (largest / smallest class at least ``t.imbalance_ratio``), never a failure."""
    ratio = diagnostics.imbalance_ratio(m)
    title, page = "Class imbalance (accuracy paradox)", "pages/per_class.py"
    if diagnostics.imbalance_warning(m, t) is None:
        return Check(
            "imbalance",
            title,
            "pass",
            f"The largest class has {ratio:.1f}x the images of the smallest, below the "
            f"{t.imbalance_ratio:g}x that makes accuracy misleading.",
            page,
        )
    big = max(m["per_class"], key=lambda c: c["support"])
    small = min((c for c in m["per_class"] if c["support"] > 0), key=lambda c: c["support"])
    what = (
        f"'{big['class']}' has {big['support']:,} images and '{small['class']}' "
        f"{small['support']:,} ({ratio:.1f}x, at least {t.imbalance_ratio:g}x)"
    )
    return Check(
        "imbalance",
        title,
        "attention",
        f"{what}: accuracy ({pct_brief(m['accuracy'])}) is dominated by the large classes; "
        f"judge by balanced accuracy ({pct_brief(m['balanced_accuracy'])}) and per-class recall.",
        page,
        reason=f"classes are unbalanced ({ratio:.1f}x)",
    )


def check_skipped(m: SplitMetrics, split: str, limits: Limits = Limits()) -> Check:
    """Return the skipped-files check from the split's metrics.json ``skipped`` list."""
    skipped = len(m.get("skipped", ()))
    total = int(m["n"]) + skipped
    title, page = "Skipped files", "pages/overview.py"
    if skipped == 0:
        return Check(
            "skipped", title, "pass", f"Every {split} file was read ({total:,} images).", page
        )
    share = skipped / total
    level = "fail" if share >= limits.skipped_fail_share else "attention"
    noun = "file was" if skipped == 1 else "files were"
    what = f"{skipped:,} of {total:,} {split} {noun} skipped as unreadable ({pct_brief(share)})"
    return Check(
        "skipped",
        title,
        level,
        f"{what}: the metrics count the {int(m['n']):,} images read; the list is under "
        "Skipped files below.",
        page,
        reason=what,
    )


GUESS_FIELDS = ("image_size", "mean", "std")  # a default here is a guess that moves accuracy


def check_preprocessing(meta: Mapping[str, Any], warning: str | None = None) -> Check:
    """Return the preprocessing check from ``meta["preprocessing_source"]`` ({setting:
    source}, SOURCES keys). A missing record, an unknown source or a default image size, mean
    or std needs attention; ``warning`` (core.analysis.provenance.preprocessing_warning: accuracy
    near
    chance while the preprocessing is in doubt) fails, in its own words."""
    title, page = "Preprocessing", "pages/overview.py"
    raw = meta.get("preprocessing_source")
    if warning:
        return Check(
            "preprocessing", title, "fail", _first_upper(warning), page, reason=warning.rstrip(".")
        )
    if not raw or not isinstance(raw, Mapping):
        return Check(
            "preprocessing",
            title,
            "attention",
            "Preprocessing was not recorded for this run, so its image size and normalisation "
            "may have been guessed; evaluate it again to record where they came from.",
            page,
            reason="preprocessing was not recorded",
        )
    sources = {str(k): str(v) for k, v in raw.items()}
    unknown = sorted(set(sources.values()) - set(SOURCES))
    if unknown:
        return Check(
            "preprocessing",
            title,
            "attention",
            f"The run records an unknown preprocessing source ({', '.join(unknown)}).",
            page,
            reason="the preprocessing source is unknown",
        )
    probe = meta.get("probe")
    on = f" on {probe['split']}" if isinstance(probe, Mapping) and probe.get("split") else ""
    by_source: dict[str, list[str]] = {}
    for field, source in sources.items():
        by_source.setdefault(source, []).append(field.replace("_", " "))
    said = "; ".join(
        f"{' and '.join(fields)} {SOURCES[source]}{on if source == 'probed' else ''}"
        for source, fields in by_source.items()
    )
    guessed = [f.replace("_", " ") for f in GUESS_FIELDS if sources.get(f) == "default"]
    if guessed:
        what = f"{' and '.join(guessed)} {'is a' if len(guessed) == 1 else 'are'} default"
        what += "" if len(guessed) == 1 else "s"
        return Check(
            "preprocessing",
            title,
            "attention",
            _first_upper(
                f"{what}, not known from the checkpoint nor measured ({said}): set them as the "
                "model was trained, or let the preprocessing probe measure them."
            ),
            page,
            reason=f"preprocessing guessed: {what}",
        )
    return Check("preprocessing", title, "pass", _first_upper(f"{said}."), page)


def check_segments(search: slices.Search | None, split: str) -> Check:
    """Return the weak-segment check: the worst significant segment of ``split`` found by
    core.analysis.slices.weak_segments (None: not computed yet)."""
    title, page = "Weak segments", "pages/slices.py"
    if search is None:
        return Check("segments", title, NOT_COMPUTED, "Not computed yet.", page)
    if not search.tried:
        return Check(
            "segments", title, NOT_AVAILABLE, f"No {split} slices with enough images.", page
        )
    if not search.segments:
        return Check(
            "segments",
            title,
            "pass",
            f"No slice of {split} is significantly worse than the rest "
            f"({diagnostics.plural(search.tried, 'slice')} tried, false discovery rate "
            f"{pct_brief(slices.ALPHA)}).",
            page,
        )
    top = search.segments[0]
    more = len(search.segments) - 1
    tail = f" {more} more segment{'s' if more > 1 else ''} on Slices." if more else ""
    return Check(
        "segments",
        title,
        "attention",
        top.sentence() + tail,
        page,
        reason=f"weak segment, {top.text()}: accuracy {100 * top.accuracy:.0f}% vs "
        f"{100 * top.rest_accuracy:.0f}% elsewhere",
    )


def check_clusters(
    worst: failure_clusters.Cluster | None,
    class_names: Sequence[str],
    split: str,
    *,
    unavailable: str | None = None,
) -> Check:
    """Return the failure-cluster check: the worst cluster of core.analysis.failure_clusters on
    ``split`` (None: not computed yet; ``unavailable``: why the run cannot have it). It needs
    attention when even the lower end of the cluster's 95% error-rate interval is above the
    rest of the split's error rate."""
    title, page = "Failure clusters", "pages/failure_clusters.py"
    if unavailable is not None:
        return Check("clusters", title, NOT_AVAILABLE, unavailable, page)
    if worst is None:
        return Check(
            "clusters",
            title,
            NOT_COMPUTED,
            "Not computed yet: it needs the model's embeddings; open Failure clusters.",
            page,
        )
    sentence = failure_clusters.worst_sentence(worst, class_names, split)
    if math.isnan(worst.accuracy_outside):  # one cluster is the whole split
        return Check("clusters", title, NOT_AVAILABLE, sentence, page, reason="")
    if worst.score > 1 - worst.accuracy_outside:
        return Check(
            "clusters",
            title,
            "attention",
            sentence,
            page,
            reason=f"a failure cluster of {worst.size:,} images at "
            f"{failure_clusters.share_text(worst.accuracy)} accuracy vs "
            f"{failure_clusters.share_text(worst.accuracy_outside)} elsewhere",
        )
    return Check(
        "clusters", title, "pass", sentence + " No cluster fails clearly more than the rest.", page
    )


# --- the summary --------------------------------------------------------------------------------


def _opening(level: str, slice_label: str | None) -> str:
    """Return the headline's opening: "Not production-ready: " about a whole run; on a slice
    "On the slice 'scanner is D': not production-ready — " (the verdict is the slice's numbers',
    not the model's; core quotes the label as it quotes class names, for the page to escape)."""
    if slice_label is None:
        return f"{PREFIX[level]}: "
    return f"On the slice '{slice_label}': {PREFIX[level].lower()} — "


def summarize(checks: Sequence[Check], *, slice_label: str | None = None) -> Summary:
    """Return the verdict over ``checks`` (in order of importance): the worst computed level,
    the first check at that level named as the reason, the other problems listed after it.
    ``slice_label``: the filter in words when the checks were computed on a slice of a run
    (``Run.subset``'s meta ``slice.label``): the headline then says it is about that slice."""
    rank = {level: i for i, level in enumerate(LEVELS)}
    judged = [c for c in checks if c.level in rank]
    if not judged:
        raise ValueError("no check was computed; pass at least one computed check.")
    level = max((c.level for c in judged), key=rank.__getitem__)
    worst = next(c for c in judged if c.level == level)
    opening = _opening(level, slice_label)
    if level == "pass":
        headline = f"{opening}{worst.reason or worst.title.lower() + ' passes'}"
        others = len(judged) - 1
        if others:
            headline += f"; the {others} other checks pass" if others > 1 else "; the other passes"
        headline += "."
    else:
        headline = f"{opening}{worst.reason or worst.sentence.rstrip('.')}."
        clauses = []
        for lvl, one, many in (("fail", "fails", "fail"), ("attention", "needs", "need")):
            also = [c.title.lower() for c in judged if c.level == lvl and c is not worst]
            if also:
                verb = one if len(also) == 1 else many
                clauses.append(f"{', '.join(also)} {verb}{' attention' * (lvl == 'attention')}")
        if clauses:
            headline += f" Also {'; '.join(clauses)}."
    pending = sum(c.level == NOT_COMPUTED for c in checks)
    if pending:
        headline += f" {pending} check{'s' if pending > 1 else ''} not computed yet."
    return Summary(level, headline, tuple(checks))


def summary(
    metrics: Mapping[str, Any],
    meta: Mapping[str, Any],
    split: str,
    t: Thresholds = Thresholds(),
    limits: Limits = Limits(),
    *,
    reliability: calibration.Reliability | None = None,
    suspicious: int | None = None,
    leak: LeakFinding | None = None,
    leak_unavailable: str | None = None,
    embedding_leak: LeakFinding | None = None,
    embedding_unavailable: str | None = None,
    preprocessing_warning: str | None = None,
    segments: slices.Search | Literal[False] | None = False,
    clusters: failure_clusters.Cluster | Literal[False] | None = False,
    clusters_unavailable: str | None = None,
    whole: Mapping[str, Any] | None = None,
) -> Summary:
    """Return the health summary of ``split`` of a run (metrics.json, meta.json).

    reliability: core.analysis.calibration.top_label of the split; suspicious: the count of
    core.analysis.suspicious.suspicious_labels on the split; leak / embedding_leak: the findings by
    pHash
    and by model embeddings on the held-out split (None: not computed yet; the *_unavailable
    message when the run cannot have them); preprocessing_warning: core.analysis.provenance's
    warning
    that the run's accuracy is near chance while its preprocessing is in doubt; segments:
    core.analysis.slices.weak_segments on the split (None: not computed yet; False, the
    default: the check is left out); clusters: the worst cluster of
    core.analysis.failure_clusters on the split (None: not computed yet; False: left out),
    clusters_unavailable: why the run cannot have it; whole: the whole dataset's metrics when
    the run is a slice (the train/test gap is then not called overfitting). A slice's meta
    (``slice``) makes the headline say it is about that slice.
    """
    m = metrics["splits"][split]
    return summarize(
        [
            check_classes(m, t),
            check_gap(metrics, t, whole=whole),
            check_leakage(leak, t, limits, unavailable=leak_unavailable),
            check_leakage(
                embedding_leak,
                t,
                limits,
                key="embedding_leakage",
                title="Leakage (embeddings)",
                unavailable=embedding_unavailable,
                cost="it runs the model over every image once; compute it here or on Leakage",
            ),
            check_calibration(reliability, split, limits),
            check_suspicious(suspicious, int(m["n"]), split, limits),
            *([] if segments is False else [check_segments(segments, split)]),
            *(
                []
                if clusters is False
                else [
                    check_clusters(
                        clusters,
                        metrics.get("classes", []),
                        split,
                        unavailable=clusters_unavailable,
                    )
                ]
            ),
            check_imbalance(m, t),
            check_skipped(m, split, limits),
            check_preprocessing(meta, preprocessing_warning),
        ],
        slice_label=(meta.get("slice") or {}).get("label"),
    )
