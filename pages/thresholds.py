"""Thresholds: flag class X whenever P(X) passes a threshold, and see what it costs.

Pick a threshold and read its precision, recall and counts, or ask for a recall ("find 95% of
the X images") and get the threshold and the precision that comes with it. The curves and the
table of every class come from core.analysis.thresholds.
"""

from __future__ import annotations

import streamlit as st

from core.analysis import exports
from core.analysis import thresholds as th
from core.figures import thresholds as th_fig
from ui import downloads
from ui.boot import ensure_app
from ui.gallery import md_escape, md_names
from ui.page_state import keep
from ui.state import current_run, seed_from_link, split_picker
from ui.tables import class_columns, class_table, pct

ensure_app()

SPIN = "Computing AP and ROC AUC of every class…"
MODES = {"threshold": "Pick a threshold", "recall": "Reach a recall"}


st.title("Thresholds")
st.caption(
    "Instead of taking the most likely class, you can flag class X whenever P(X) reaches a "
    "threshold: lower it to miss fewer X images (recall), raise it for fewer false alarms "
    "(precision)."
)
run = current_run()
names = run.class_names
c_class, c_mode, c_split = st.columns([2, 2, 1.4])
with c_split:
    split = split_picker(run)
write_class = seed_from_link("th_class", "class", range(len(names)), names)  # ?class=<name>
keep("th_class", 0, options=range(len(names)))
cls = c_class.selectbox("Class", range(len(names)), format_func=lambda c: names[c], key="th_class")
write_class(cls)
keep("th_mode", "threshold", options=MODES)
mode = c_mode.segmented_control(
    "Mode",
    list(MODES),
    format_func=MODES.get,
    key="th_mode",
    required=True,
)

rows, probs = th.split_rows(run.predictions(), run.probs(), split)
if rows.empty:
    st.info(f"No images were evaluated in the {split} split.")
    st.stop()
y_true = rows["y_true"].to_numpy()
name = names[cls]
curves = th.class_curves(y_true, probs, cls)

if mode == "threshold":
    keep("th_threshold", 0.5)
    threshold = st.slider(
        "Threshold: flag the class when its probability is at least",
        min_value=0.0,
        max_value=1.0,
        step=0.01,
        key="th_threshold",
    )
    point = th.at_threshold(y_true, probs, cls, threshold)
else:
    keep("th_target", 0.95)
    target = st.slider(
        "Target recall: the share of the class's images to find",
        min_value=0.5,
        max_value=1.0,
        step=0.01,
        format="percent",
        key="th_target",
    )
    point = th.threshold_for_recall(y_true, probs, cls, target)
    st.markdown(md_names(th.recall_sentence(point, name, target), [name]))

if point is not None:
    md_name = md_escape(name)  # help texts and captions render markdown
    m = st.columns(6)
    m[0].metric("Threshold", f"{point.threshold:.3g}")
    m[1].metric(
        "Precision", pct(point.precision), help=f"Of the flagged images, share of '{md_name}'"
    )
    m[2].metric("Recall", pct(point.recall), help=f"Of the '{md_name}' images, share flagged")
    m[3].metric("Flagged", f"{point.flagged:,}", help="Images with P ≥ threshold")
    m[4].metric("False alarms", f"{point.fp:,}", help=f"Flagged images that are not '{md_name}'")
    m[5].metric("Missed", f"{point.fn:,}", help=f"'{md_name}' images below the threshold")
    st.caption(th.counts_sentence(point, md_name, len(rows), split))
    both = th.argmax_recall(y_true, rows["y_pred"].to_numpy(), probs, cls, point.threshold)
    note = md_names(th.argmax_sentence(both, name), [name])
    if both.differs:
        st.info(f"**Why this recall is not Overview's.** {note}", icon=":material/info:")
    elif note:
        st.caption(note)
if curves.n_pos == 0:
    st.warning(
        f"The {split} split has no '{name}' images: recall, AP and AUC are undefined.",
        icon=":material/warning:",
    )

left, right = st.columns(2)
left.plotly_chart(
    th_fig.pr_figure(curves, class_name=name, point=point), width="stretch", key="th_pr"
)
right.plotly_chart(
    th_fig.roc_figure(curves, class_name=name, point=point), width="stretch", key="th_roc"
)
downloads.offer(
    lambda: exports.curve_table(curves),
    what=f"Curve points of '{name}'",
    stem=downloads.file_stem(run, split, f"curve-{name}"),
    key="th_curve",
)
st.caption(
    "Precision-recall: each point is one threshold; AP summarises the whole curve (1 is "
    "perfect, the dotted line is a model that guesses). ROC: recall against the share of other "
    "images flagged; AUC 0.5 is guessing, 1 is a perfect ranking."
)


st.subheader("Every class")
st.dataframe(
    class_table(th.class_table, run.run_id, split, y_true, probs, names, spinner=SPIN),
    hide_index=True,
    column_config=class_columns(
        "%.3f",
        average_precision=("average precision", "Area under the precision-recall curve"),
        roc_auc=("ROC AUC", "Chance that a class image outranks another image"),
    ),
    key="th_table",
)
st.caption("One-vs-rest, from P(class) alone. Click a header to sort; empty cells: no images.")
downloads.offer(
    lambda: class_table(th.class_table, run.run_id, split, y_true, probs, names, spinner=SPIN),
    what="AP and AUC per class",
    stem=downloads.file_stem(run, split, "ap-auc"),
    key="th_classes",
)
