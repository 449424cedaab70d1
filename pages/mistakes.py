"""Mistakes: a gallery of the misclassified images, most confidently wrong first."""

from __future__ import annotations

import streamlit as st

from core.analysis import exports
from core.images import gallery
from ui import downloads
from ui import tasks as ui_tasks
from ui.boot import ensure_app
from ui.gallery import class_filter, gradcam_overlays, pager, thumbnail_grid
from ui.page_state import keep
from ui.state import current_run, seed_from_link

ensure_app()

st.title("Mistakes")
st.caption(
    "Every misclassified image with its true class, the prediction, the confidence and the "
    "three most likely classes. Confidently wrong images often reveal label errors, "
    "look-alike classes or a preprocessing mismatch."
)
run = current_run()
names = run.class_names
splits = sorted(run.splits, key=lambda s: {"test": 0, "val": 1, "train": 2}.get(s, 3))

c_split, c_true, c_pred, c_sort = st.columns([1.2, 2, 2, 1.6])
classes = range(len(names))
write_splits = seed_from_link("mk_splits", "split", splits, many=True)  # ?split=test&class=cat
write_classes = seed_from_link("mk_true", "class", classes, names, many=True)
keep("mk_splits", splits[:1], options=splits, many=True)
chosen_splits = c_split.multiselect("Split", splits, key="mk_splits", placeholder="All splits")
with c_true:
    true_classes = class_filter("True class", names, key="mk_true")
with c_pred:
    pred_classes = class_filter("Predicted class", names, key="mk_pred")
write_splits(chosen_splits)
write_classes(true_classes)
keep("mk_sort", next(iter(gallery.SORT_LABELS)), options=gallery.SORT_LABELS)
sort_by = c_sort.selectbox(
    "Sort", list(gallery.SORT_LABELS), format_func=gallery.SORT_LABELS.get, key="mk_sort"
)

rows = gallery.filter_mistakes(
    run.predictions(), splits=chosen_splits, true_classes=true_classes, pred_classes=pred_classes
)
st.markdown(f"**{len(rows):,}** misclassified images match these filters")
if rows.empty:
    st.success("No misclassified image matches these filters.")
    st.stop()
downloads.offer(
    lambda: exports.images_table(gallery.sort_rows(rows, sort_by), names),
    what="These mistakes",
    stem=downloads.file_stem(run, "mistakes"),
    key="mistakes",
)
filters = (run.run_id, tuple(chosen_splits), tuple(true_classes), tuple(pred_classes), sort_by)
page, size = pager(len(rows), key="mk_gallery", reset_on=filters)
visible = gallery.paginate(gallery.sort_rows(rows, sort_by), page=page, page_size=size)
keep("mk_gradcam", False)
show_cam = st.toggle(
    "Show Grad-CAM",
    key="mk_gradcam",
    help="Colour where the model looked for its (wrong) prediction: red = strong evidence. "
    "Computed for this page's images only; needs a CNN checkpoint.",
)
if show_cam:
    overlays = gradcam_overlays(visible, run)  # one element: its progress while it computes
else:
    overlays = None
    st.empty()  # the same place with it off: turning it on moves nothing below (ui.tasks)
thumbnail_grid(visible, run, key="mk_gallery", overlays=overlays)
ui_tasks.rerun_if_pending()  # Grad-CAM still computing: show it when done
