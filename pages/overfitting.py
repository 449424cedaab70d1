"""Overfitting: train against the held-out split, overall and per class, and how confident
(and how wrong) the model is on each split."""

from __future__ import annotations

import streamlit as st

from core.analysis import diagnostics, tables
from core.analysis.diagnostics import pct_brief
from core.figures import charts
from ui import downloads
from ui.alerts import verdict_box
from ui.boot import ensure_app
from ui.page_state import keep
from ui.state import current_run, thresholds

ensure_app()


st.title("Overfitting")
st.caption(
    "A model that learned its training images rather than the classes scores far higher on "
    "train than on images it has not seen."
)
run = current_run()
t = thresholds()
held_out = [s for s in ("test", "val") if s in run.splits]
other = None
if "train" in run.splits and len(held_out) > 1:
    keep("overfit_other", held_out[0], options=held_out)
    other = st.segmented_control("Compare train with", held_out, key="overfit_other", required=True)
whole = run.parent.metrics if run.parent is not None else None  # a slice's gap is only stated
ov = diagnostics.overfitting(run.metrics, t, other=other, whole=whole)
if not ov.available:
    st.info(ov.message, icon=":material/info:")
    st.stop()

verdict_box(ov.level, ov.message)

overall, gaps = st.columns([2, 3])
with overall:
    st.subheader("Overall")
    st.dataframe(
        tables.split_comparison(run.metrics, ov)
        .style.format("{:.1%}")
        .format("{:+.1%}", subset=["gap"]),
        key="overall_table",
    )
    st.caption(f"Gap: train minus {ov.other}. A gap above {pct_brief(t.overfit_gap)} is flagged.")
with gaps:
    st.plotly_chart(
        charts.gap_bars(ov.class_gaps, t, other=ov.other), width="stretch", key="gap_bars"
    )

st.subheader("Recall per class and split")
by_class = tables.recall_by_split(run.metrics, ov)
split_cols = [c for c in by_class.columns if c not in ("class", "gap")]
st.dataframe(
    by_class.style.format("{:.1%}", subset=split_cols, na_rep="–").format(
        "{:+.1%}", subset=["gap"]
    ),
    hide_index=True,
    height="content" if len(by_class) <= charts.MANY_CLASSES else 500,
    key="recall_table",
)
downloads.offer(
    lambda: tables.split_comparison(run.metrics, ov).reset_index(names="metric"),
    what="Overall",
    stem=downloads.file_stem(run, "overfitting-overall"),
    key="of_overall",
)
downloads.offer(
    by_class,
    what="Recall per class and split",
    stem=downloads.file_stem(run, "overfitting-recall"),
    key="of_recall",
)

st.subheader("Confidence and loss, right vs wrong")
st.caption(
    f"A model that generalises is about as confident, with about as low a loss, on {ov.other} "
    "as on train. Confidence that drops, or a loss that climbs, off the training images is "
    "overfitting; wrong answers given with high confidence are the most dangerous."
)
predictions = run.predictions()
conf_col, loss_col = st.columns(2)
conf_col.plotly_chart(
    charts.outcome_boxes(
        tables.outcome_stats(predictions, "confidence"),
        column="confidence",
        title="Confidence of the predicted class",
        tickformat=".0%",
        value_range=(0.0, 1.02),
    ),
    width="stretch",
    key="confidence_boxes",
)
loss_col.plotly_chart(
    charts.outcome_boxes(
        tables.outcome_stats(predictions, "loss"), column="loss", title="Cross-entropy loss"
    ),
    width="stretch",
    key="loss_boxes",
)
