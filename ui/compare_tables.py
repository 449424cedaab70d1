"""Compare's sections as shown: the conclusion's boxes, then three tables (shares as percentages,
differences in points, significant per-class differences coloured, narrow interval headers),
each with its download and the caption that reads it."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from core.analysis import compare
from core.analysis.compare_view import N_RESAMPLES, conclusion_body
from core.analysis.tables import CELL_COLORS
from core.runs import Run
from ui import downloads
from ui.alerts import verdict_box
from ui.gallery import md_escape
from ui.page_state import keep

_COLORS = {1: CELL_COLORS["good"], -1: CELL_COLORS["bad"], 0: ""}
METRIC_LABELS = {"recall": "Recall", "precision": "Precision", "f1": "F1"}


def conclusion(findings: Sequence[compare.Finding]) -> None:
    """Render each finding of ``compare.conclude`` in a box: green when the other run is
    better, orange when worse, a neutral one when no difference is clear."""
    for i, finding in enumerate(findings):
        body = conclusion_body(finding)
        if finding.direction:
            level = "good" if finding.direction > 0 else "needs attention"
            verdict_box(level, body, key=f"verdict_{i}")
        else:
            st.info(body, icon=":material/balance:")


def overall(
    boot: compare.Bootstrap, *, names: Sequence[str], baseline: int, run: Run, split: str
) -> None:
    """Render one row per model: each overall metric and its delta vs the baseline (named in
    the caption)."""
    table = compare.overall_table(boot, names=names, baseline=baseline)
    levels = [compare.LABELS[m] for m in compare.OVERALL]
    deltas = [f"Δ {c}" for c in levels]
    st.dataframe(
        table.style.format("{:.1%}", subset=levels).format(compare.points, subset=deltas),
        hide_index=True,
        key="cmp_overall",
        placeholder="–",  # the baseline's own delta
        column_config={f"{d} 95% CI": "95% CI" for d in deltas},  # narrow: fits at 1440 px
    )
    stem = downloads.file_stem(run, split, "compare")
    downloads.offer(table, what="Overall", stem=stem, key="cmp_o")
    st.caption(
        f"Δ: each run minus the baseline ({md_escape(names[baseline])}) in percentage points, "
        f"with its 95% interval from {N_RESAMPLES:,} paired bootstrap resamples. An interval "
        "that excludes 0 is a difference larger than resampling noise."
    )


def per_class(
    boot: compare.Bootstrap,
    *,
    names: Sequence[str],
    class_names: Sequence[str],
    baseline: int,
    run: Run,
    split: str,
) -> None:
    """Render the metric picker, then the metric per class and model, with each model's
    delta vs the baseline (green above, red below, where the interval excludes 0)."""
    keep("cmp_metric", "recall", options=list(compare.PER_CLASS))
    metric = (
        st.segmented_control(
            "Metric",
            list(compare.PER_CLASS),
            format_func=METRIC_LABELS.__getitem__,
            key="cmp_metric",
            required=True,
        )
        or "recall"
    )  # required=True: never None; typed str | None by Streamlit
    table, significant = compare.class_table(
        boot, names=names, class_names=class_names, baseline=baseline, metric=metric
    )
    others = [f"Δ {name}" for i, name in enumerate(names) if i != baseline]
    st.dataframe(
        table.style.apply(lambda _: significant.map(_COLORS.get), axis=None)
        .format("{:.1%}", subset=[f"{metric} {name}" for name in names])
        .format(compare.points, subset=others),
        hide_index=True,
        height="content" if len(table) <= 30 else 600,
        key="cmp_class_table",
        column_config={f"Δ {name} 95% CI": "95% CI" for name in names},
    )
    stem = downloads.file_stem(run, split, f"compare-{metric}")
    downloads.offer(table, what="Per class", stem=stem, key="cmp_c")
    st.caption(
        f"Δ: {metric} minus the baseline's in percentage points, with its 95% interval. Green: "
        "higher than the baseline, red: lower, where the interval excludes 0."
    )


def mcnemar(
    tests: Sequence[compare.McNemar], *, names: Sequence[str], run: Run, split: str
) -> None:
    """Render McNemar's test of every pair of models (b, c and the p-value)."""
    table = compare.mcnemar_table(tests, names=names)
    st.dataframe(
        table.style.format(lambda p: "< 0.001" if p < 0.001 else f"{p:.3f}", subset=["p-value"]),
        hide_index=True,
        key="cmp_mcnemar",
    )
    stem = downloads.file_stem(run, split, "mcnemar")
    downloads.offer(table, what="McNemar tests", stem=stem, key="cmp_m")
    st.caption(
        "McNemar's exact test looks only at the images the two models disagree on: b are right "
        "in A only, c in B only. If neither model were better, each disagreement would fall "
        "either way with probability ½; a p-value below 0.05 says the split b : c is unlikely "
        "by chance."
    )
