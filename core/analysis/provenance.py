"""Where each preprocessing setting of a run came from, in words, and the warning when the
run's accuracy says the preprocessing is probably wrong. Pure: reads meta.json and metrics.json
dicts (no torch), so analyses and pages can use it; ``core.engine.probe`` measures what it
reports."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FIELDS = ("image_size", "mean", "std", "channels", "resize")


def source_text(source: str | None, meta: Mapping[str, Any]) -> str:
    """Return where a setting came from in words, e.g. "probed on train", "typed", "read"."""
    if source == "probed":
        split = (meta.get("probe") or {}).get("split")
        return f"probed on {split}" if split else "probed"
    return source or ""


def candidate_label(c: Mapping[str, Any]) -> str:
    """Return a candidate setting in words: "64 px, mean 0.5, std 0.5"."""
    nums = lambda v: ",".join(f"{x:g}" for x in v)  # noqa: E731
    return f"{c['image_size']} px, mean {nums(c['mean'])}, std {nums(c['std'])}"


def _nums(v: Any) -> str:
    return ", ".join(f"{x:g}" for x in v) if isinstance(v, (list, tuple)) else "–"


def _with_source(text: str, source: str | None, meta: Mapping[str, Any]) -> str:
    said = source_text(source, meta)
    return f"{text} ({said})" if said else text


def input_text(meta: Mapping[str, Any]) -> str:
    """Return the run's input in words with where each setting came from, e.g.
    "64px (probed on train), 1 channel(s) (read), resize stretch (default)"; a run stored
    before provenance was recorded reads without the parentheses."""
    prep, src = meta.get("preprocessing", {}), meta.get("preprocessing_source") or {}
    return ", ".join(
        _with_source(text, src.get(field), meta)
        for field, text in (
            ("image_size", f"{prep.get('image_size', '?')}px"),
            ("channels", f"{prep.get('channels', '?')} channel(s)"),
            ("resize", f"resize {prep.get('resize', '?')}"),
        )
    )


def normalisation_text(meta: Mapping[str, Any]) -> str:
    """Return "mean / std" in words with their source(s), e.g. "0.5 / 0.5 (probed on train)"."""
    prep, src = meta.get("preprocessing", {}), meta.get("preprocessing_source") or {}
    mean, std = _nums(prep.get("mean")), _nums(prep.get("std"))
    if src.get("mean") == src.get("std"):
        return _with_source(f"{mean} / {std}", src.get("mean"), meta)
    said_mean = _with_source(mean, src.get("mean"), meta)
    return f"{said_mean} / {_with_source(std, src.get('std'), meta)}"


def _run_accuracy(meta: Mapping[str, Any], metrics: Mapping[str, Any]) -> tuple[str, float] | None:
    splits = metrics.get("splits", {})
    split = (meta.get("probe") or {}).get("split")
    for name in (split, "test", "val", "train"):
        if name in splits and splits[name].get("n"):
            return str(name), float(splits[name]["accuracy"])
    return None


NEAR_CHANCE = 0.25  # "near chance": within this share of the way from chance to 100%
FAR_BETTER = 0.20  # a candidate this many points (as a fraction) above the run is far better


def preprocessing_warning(meta: Mapping[str, Any], metrics: Mapping[str, Any]) -> str | None:
    """Return a warning when the run's accuracy is near chance while its preprocessing is in
    doubt: another probe candidate scored far better (named), or the settings are unprobed
    defaults; None otherwise.

    The run's accuracy is taken on the probed split when the run has it (the same images the
    candidates were scored on), else on its test split.
    """
    got = _run_accuracy(meta, metrics)
    n_classes = len(metrics.get("classes") or meta.get("class_names") or [])
    if got is None or n_classes < 2:
        return None
    split, acc = got
    chance = 1.0 / n_classes
    if acc > chance + NEAR_CHANCE * (1.0 - chance):
        return None
    prep = meta.get("preprocessing", {})
    current = (prep.get("image_size"), list(prep.get("mean", [])), list(prep.get("std", [])))
    record = meta.get("probe") or {}
    better = [
        c
        for c in record.get("candidates", [])
        if c.get("accuracy") is not None
        and c["accuracy"] >= acc + FAR_BETTER
        and (c["image_size"], list(c["mean"]), list(c["std"])) != current
    ]
    if better:
        best = max(better, key=lambda c: c["accuracy"])
        return (
            f"{split} accuracy {acc:.1%} is near chance ({chance:.0%}), but the probe scored "
            f"{best['accuracy']:.1%} with {candidate_label(best)} on {record.get('n_images')} "
            f"{record.get('split')} images: the preprocessing is probably wrong. Evaluate again "
            "with that setting."
        )
    sources = meta.get("preprocessing_source") or {}
    guessed = [f for f in ("image_size", "mean", "std") if sources.get(f) == "default"]
    if guessed:
        return (
            f"{split} accuracy {acc:.1%} is near chance ({chance:.0%}) and "
            f"{', '.join(g.replace('_', ' ') for g in guessed)} "
            f"{'is a default' if len(guessed) == 1 else 'are defaults'}, not known from the "
            "checkpoint: the preprocessing may be wrong. Set it as the model was trained."
        )
    return None
