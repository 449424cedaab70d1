"""Confusion matrix: which classes the model mixes up, and the images behind every cell.

Click a cell of the heatmap, pick a row of the most-confused pairs, or choose the cell with
the two selectboxes: all three set the same (true class, predicted class) cell
(ui.confusion_cell), whose images are shown below. From ``confusion_image.IMAGE_FROM`` shown
classes on, the heatmap is one image (its most frequent mistakes stay clickable) and a class
search filters the pairs.
"""

from __future__ import annotations

import streamlit as st

from core.analysis import confusion, exports
from core.figures import confusion as confusion_fig
from core.figures import confusion_image
from core.images import gallery
from ui import confusion_cell, downloads
from ui.boot import ensure_app
from ui.gallery import class_filter, md_escape, pager, thumbnail_grid
from ui.page_state import keep
from ui.state import current_run, split_picker

ensure_app()

PAIRS_SHOWN = 300  # pairs listed without a search: the table stays light at 1,000 classes

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

shown = list(range(len(names)))
many = len(names) >= confusion.PAIRS_FROM
if many:
    whole = len(names) >= confusion_image.IMAGE_FROM  # opens on the whole matrix as an image
    shown = (
        class_filter(
            "Classes shown in the heatmap",
            names,
            key=f"cm_classes-{run.run_id}-{split}",
            default=[] if whole else confusion.focus_classes(results.cm),
            placeholder="All classes",
        )
        or shown
    )
    st.caption(
        f"{len(names)} classes: the heatmap opens on "
        + ("all of them as one image; pick classes to zoom into a clickable heatmap. " if whole
           else "the classes of the most confused pairs. ")
        + "Percentages stay relative to whole classes."
    )  # fmt: skip

if len(shown) >= confusion_image.IMAGE_FROM:  # a square image beside the search and the pairs
    chart_col, side_col = st.columns([3, 2], gap="large")
elif len(shown) > confusion_fig.TEXT_MAX_CLASSES:  # a big matrix gets the full width
    chart_col, side_col = st.container(), st.container()
else:
    chart_col, side_col = st.columns([5, 3], gap="large")
with chart_col:
    confusion_cell.heatmap(
        results.cm, names, view=view, shown=shown, run_id=run.run_id, split=split
    )

with side_col:
    st.subheader("Most confused pairs")
    found = confusion_cell.search(names, pairs, key=f"cm_find-{run.run_id}") if many else None
    listed, more = confusion.listed_pairs(pairs, found, limit=PAIRS_SHOWN)
    if pairs.empty:
        st.success("No mistakes in this split: every image is on the diagonal.")
    elif listed.empty:
        st.success(f"'{md_escape(names[found])}' is in no confused pair: all its images are right.")
    else:
        confusion_cell.pairs_table(listed, key=f"cm_pairs-{found}" if many else "cm_pairs")
        st.caption(
            "Select a row to see its images."
            + (f" The {len(listed):,} most frequent of {len(pairs):,} pairs: search a class "
               "for all of its pairs." if more > 0 else "")
        )  # fmt: skip
        downloads.offer(  # every pair, and the whole matrix (rows true, columns predicted)
            exports.pairs_table(pairs),
            what="Confused pairs",
            stem=downloads.file_stem(run, split, "confused-pairs"),
            key="cm_pairs",
        )
        downloads.offer(
            lambda: exports.matrix_table(results.cm, names),
            what="Matrix",
            stem=downloads.file_stem(run, split, "confusion-matrix"),
            key="cm_matrix",
        )
    st.subheader("Images of one cell")
    true_idx, pred_idx = confusion_cell.pickers(names)

cell = run.predictions().loc[results.cell_rows(true_idx, pred_idx)]
st.divider()
st.subheader(
    f"{len(cell):,} image{'' if len(cell) == 1 else 's'}: true '{md_escape(names[true_idx])}' "
    f"predicted '{md_escape(names[pred_idx])}'"
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
