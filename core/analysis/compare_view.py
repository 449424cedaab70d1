"""The Compare view's choices and sentences, from core.analysis.compare's numbers.

Pure: which images a comparison keeps, the conclusion's text with its per-class lines, the
images one model gets right and the other wrong in the direction picked, and where an image
of one run sits in the aligned order. Names arrive as they are to be shown (a page passes
them markdown-escaped), so no sentence here needs to know about markdown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.analysis import compare
from core.analysis.diagnostics import plural
from core.runs import Run

N_RESAMPLES = 1000  # paired bootstrap resamples behind every interval
CLASS_LINES = 8  # per-class differences spelled out under a conclusion; the table has them all


@dataclass(frozen=True)
class Comparison:
    """Several runs on the images they share: aligned predictions, bootstrap, McNemar."""

    aligned: compare.Aligned
    boot: compare.Bootstrap | None  # None when no image is in every run
    tests: list[compare.McNemar]  # every pair of runs (empty when boot is None)


def compare_runs(
    runs: Sequence[Run], *, split: str, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> Comparison:
    """Return the :class:`Comparison` of ``runs`` on ``split`` (ClassLensError when they are
    not runs of one dataset)."""
    aligned = compare.align(runs, split=split)
    if not len(aligned.y_true):
        return Comparison(aligned, None, [])
    boot = compare.bootstrap(
        aligned.y_true,
        aligned.y_pred,
        n_classes=len(aligned.class_names),
        n_resamples=n_resamples,
        seed=seed,
    )
    return Comparison(aligned, boot, compare.mcnemar(aligned.y_true, aligned.y_pred))


def dropped_text(dropped: Sequence[int], names: Sequence[str]) -> str | None:
    """Return the warning about images left out because another run lacks them (None when
    every run has every image); one count per run, in ``names``' order."""
    if not any(dropped):
        return None
    parts = ", ".join(f"{plural(d, 'image')} of {names[i]}" for i, d in enumerate(dropped) if d)
    return (
        f"Left out, because some other run has no prediction for them: {parts}. Re-evaluate "
        "the runs on the same dataset to compare every image."
    )


def conclusion_body(finding: compare.Finding, *, limit: int = CLASS_LINES) -> str:
    """Return a finding as markdown: its sentence, then at most ``limit`` per-class lines as
    a list (and how many more the per-class table holds)."""
    lines = [f"- {line}" for line in finding.class_lines[:limit]]
    if len(finding.class_lines) > limit:
        lines.append(
            f"- and {len(finding.class_lines) - limit} more (see the per-class table below)"
        )
    if not lines:
        return finding.text
    return finding.text + "\n\nPer class, where the 95% interval excludes 0:\n" + "\n".join(lines)


@dataclass(frozen=True)
class Flips:
    """The images one of two models gets right and the other wrong, in one direction."""

    positions: np.ndarray  # (k,) positions into the aligned rows
    right: int  # index of the model right on them
    wrong: int  # index of the model wrong on them
    n_a_only: int  # images right in the baseline only (direction "a")
    n_b_only: int  # images right in the other model only (direction "b")


def flips(comparison: Comparison, *, baseline: int, other: int, direction: str) -> Flips:
    """Return the :class:`Flips` of ``baseline`` against ``other``: direction "a" the images
    right in the baseline and wrong in the other, "b" the reverse."""
    if direction not in ("a", "b"):
        raise ValueError(
            f"direction must be 'a' (right in the baseline) or 'b', got {direction!r}."
        )
    a = comparison.aligned
    right_a, right_b = compare.flips(a.y_true, a.y_pred[baseline], a.y_pred[other])
    if direction == "a":
        return Flips(right_a, baseline, other, len(right_a), len(right_b))
    return Flips(right_b, other, baseline, len(right_a), len(right_b))


def aligned_positions(aligned: compare.Aligned, model: int, rows: Any) -> list[int]:
    """Return the aligned position of each of ``rows`` (index labels of model ``model``'s
    predictions(), all among its aligned rows)."""
    pos_of = {int(r): i for i, r in enumerate(aligned.rows[model])}
    return [pos_of[int(r)] for r in rows]
