"""Calibration: when the model says 80%, is it right 80% of the time?

ECE and MCE with a plain reading, the reliability diagram, the images behind any bin (pick it
in the selectbox or click its bar), correct-vs-wrong confidence, and ECE per class.
"""

from __future__ import annotations

import streamlit as st

from core.analysis import calibration as cal
from core.analysis import exports
from core.analysis.thresholds import split_rows
from core.figures import calibration as cal_fig
from core.images import gallery
from ui import downloads
from ui.boot import ensure_app
from ui.gallery import pager, thumbnail_grid
from ui.page_state import keep, put
from ui.state import current_run, split_picker
from ui.tables import class_columns, class_table, pct

ensure_app()

SPIN = "Computing the calibration of every class…"
BIN_KEY = "cal_bin"


st.title("Calibration")
st.caption(
    "A calibrated model that says 80% is right 80% of the time, so its confidence can be "
    "trusted as a probability; the reliability diagram sets confidence against accuracy."
)
run = current_run()
names = run.class_names
c_info, c_split = st.columns([3, 1])
with c_split:
    split = split_picker(run)
rows, probs = split_rows(run.predictions(), run.probs(), split)
if rows.empty:
    st.info(f"No images were evaluated in the {split} split.")
    st.stop()
y_true, y_pred, confidence = (rows[c].to_numpy() for c in ("y_true", "y_pred", "confidence"))
rel = cal.top_label(y_true, y_pred, confidence)

m = c_info.columns(3)
m[0].metric(
    "ECE",
    pct(rel.ece),
    help=f"Expected calibration error: |accuracy - confidence| per bin ({cal.N_BINS} "
    "equal-width bins), weighted by the bin's images. 0 is perfect.",
)
m[1].metric("MCE", pct(rel.mce), help="Maximum calibration error: the largest bin gap.")
m[2].metric("Images", f"{len(rows):,}")
st.markdown(cal.reading(rel))

left, right = st.columns([3, 2])
with left:
    event = st.plotly_chart(
        cal_fig.reliability_figure(rel),
        width="stretch",
        key="cal_diagram",
        on_select="rerun",
        selection_mode="points",
    )
    st.caption(
        "Blue bars: accuracy per confidence bin; red ticks: the bin's mean confidence; grey: "
        "images per bin. Bars below the diagonal: overconfident, above: underconfident. Click "
        "a bar to see its images below."
    )
downloads.offer(
    lambda: exports.reliability_table(rel),
    what="Calibration bins",
    stem=downloads.file_stem(run, split, "calibration-bins"),
    key="cal_bins",
)
right.plotly_chart(
    cal_fig.confidence_histogram(y_true, y_pred, confidence, title="Confidence: correct vs wrong"),
    width="stretch",
    key="cal_hist",
)
right.caption(
    "Wrong predictions piled up at high confidence are the dangerous ones: the model gives "
    "no warning."
)

st.subheader("Images in a bin")
options = [b for b in range(len(rel.count)) if rel.count[b]]
labels = cal.bin_labels(rel)
clicked = [p["point_index"] for p in event.selection.points if p.get("curve_number") in (0, 1)]
if clicked and st.session_state.get("cal_clicked") != clicked[0]:
    st.session_state["cal_clicked"] = clicked[0]
    if clicked[0] in options:
        put(BIN_KEY, clicked[0])
elif not clicked:  # no bar selected (a new visit draws the chart unselected): re-arm clicks
    st.session_state.pop("cal_clicked", None)
keep(BIN_KEY, lambda: cal.worst_bin(rel), options=options)
chosen = st.selectbox(
    "Confidence bin",
    options,
    format_func=labels.__getitem__,
    key=BIN_KEY,
    help="Opens on the bin that adds most to the ECE.",
)
in_bin = rows.iloc[rel.rows[chosen]]
st.markdown(
    f"**{len(in_bin):,}** images in this bin · mean confidence "
    f"{pct(rel.confidence[chosen])} · accuracy {pct(rel.accuracy[chosen])}"
)
page, size = pager(len(in_bin), key="cal_gallery", reset_on=(run.run_id, split, chosen))
thumbnail_grid(
    gallery.paginate(gallery.sort_rows(in_bin, "confidence"), page=page, page_size=size),
    run,
    key="cal_gallery",
)


st.subheader("Calibration per class")
st.dataframe(
    class_table(cal.class_table, run.run_id, split, y_true, probs, names, spinner=SPIN),
    hide_index=True,
    column_config=class_columns(
        "percent",
        mean_prob=("mean P(class)", "Average probability given to the class"),
        frequency=("share of images", "How often the class really occurs"),
        ece=("ECE", None),
        mce=("MCE", None),
    ),
    key="cal_table",
)
st.caption(
    "One-vs-rest: for class c, P(c) of every image against whether the image is c, in the "
    "same bins. Click a header to sort."
)
downloads.offer(
    lambda: cal.class_table(y_true, probs, names),
    what="Calibration per class",
    stem=downloads.file_stem(run, split, "calibration-per-class"),
    key="cal_classes",
)
