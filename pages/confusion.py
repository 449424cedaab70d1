"""Confusion matrix: which classes the model mixes up, and the images behind every cell.

Click a cell of the heatmap, pick a row of the most-confused pairs, or choose the cell with
the two selectboxes: all three set the same (true class, predicted class) cell
(ui.confusion_cell), whose images are shown below. From ``confusion.PAIRS_FROM`` classes on,
the heatmap opens on the most confused classes and a class search filters the pairs; from
``confusion_image.IMAGE_FROM`` shown classes on, it is one image (its most frequent mistakes
stay clickable).
"""

from __future__ import annotations

import streamlit as st

from core.analysis import confusion
from core.images import gallery
from ui import confusion_cell
from ui.boot import ensure_app
from ui.gallery import md_escape, pager, thumbnail_grid
from ui.page_state import keep
from ui.state import current_run, split_picker

ensure_app()

st.title("Confusion matrix")
st.caption(
    "Rows are the true classes, columns what the model predicted; the diagonal (dotted "
    "outline) holds the correct predictions, everything else is a mistake."
)
run = current_run()
names = run.class_names
c_view, c_split = st.columns([2, 1])
with c_split:
    split = split_picker(run)
keep("cm_view", "count", options=list(confusion.VIEWS))
view = c_view.segmented_control(
    "Show",
    list(confusion.VIEWS),
    format_func=lambda v: confusion.VIEWS[v][0],
    key="cm_view",
    required=True,
    help="Recall view: each row sums to 100% (of all true 'a', how many were predicted 'b'). "
    "Precision view: each column sums to 100% (when the model says 'b', what was it really).",
)
results = confusion.split_results(run.predictions(), split, names)
if results.cm.sum() == 0:
    st.info(f"The {split} split has no predictions to count.")
    st.stop()
pairs = confusion.most_confused_pairs(results.cm, names)
confusion_cell.open_cell(run.run_id, split, pairs, len(names))

shown = confusion_cell.classes_shown(results.cm, names, key=f"cm_classes-{run.run_id}-{split}")
chart_col, side_col = confusion_cell.columns(len(shown))
with chart_col:
    confusion_cell.heatmap(
        results.cm, names, view=view, shown=shown, run_id=run.run_id, split=split
    )
with side_col:
    st.subheader("Most confused pairs")
    confusion_cell.pairs_panel(run, split, results.cm, pairs)
    st.subheader("Images of one cell")
    true_idx, pred_idx = confusion_cell.pickers(names)

cell = run.predictions().loc[results.cell_rows(true_idx, pred_idx)]
st.divider()
st.subheader(
    confusion.cell_heading(len(cell), md_escape(names[true_idx]), md_escape(names[pred_idx]))
)
if cell.empty:
    st.info("No image falls in this cell. Pick another cell.")
    st.stop()
st.caption(f"Split {split} · hardest first (highest loss).")
page, size = pager(len(cell), key="cm_gallery", reset_on=(run.run_id, split, true_idx, pred_idx))
thumbnail_grid(
    gallery.paginate(gallery.sort_rows(cell, "loss"), page=page, page_size=size),
    run,
    key="cm_gallery",
)
