"""Confusion matrix: which classes the model mixes up, and the images behind every cell.

Click a cell of the heatmap, pick a row of the most-confused pairs, or choose the cell with
the two selectboxes: all three set the same (true class, predicted class) cell, whose images
are shown below. From ``confusion_image.IMAGE_FROM`` shown classes on, the heatmap is one
image (its most frequent mistakes stay clickable) and a class search filters the pairs.
"""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from core.analysis import confusion
from core.figures import confusion as confusion_fig
from core.figures import confusion_image
from core.images import gallery
from ui import downloads
from ui.boot import ensure_app
from ui.gallery import class_filter, md_escape, pager, thumbnail_grid
from ui.page_state import keep, put
from ui.state import current_run, split_picker

ensure_app()

TRUE_KEY, PRED_KEY = "cm_true", "cm_pred"
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

# One selected cell, shared by the heatmap, the pairs table and the selectboxes; a new run
# or split opens on its most confused pair. Kept across pages (ui.page_state).
if st.session_state.get("cm_opened") != (run.run_id, split):
    st.session_state["cm_opened"] = (run.run_id, split)
    first = confusion.opening_cell(pairs)
    put(TRUE_KEY, first[0])
    put(PRED_KEY, first[1])
for cell_key in (TRUE_KEY, PRED_KEY):
    keep(cell_key, 0, options=range(len(names)))

many = len(names) >= confusion.PAIRS_FROM
if many:
    whole = len(names) >= confusion_image.IMAGE_FROM  # opens on the whole matrix as an image
    shown = class_filter(
        "Classes shown in the heatmap",
        names,
        key=f"cm_classes-{run.run_id}-{split}",
        default=[] if whole else confusion.focus_classes(results.cm),
        placeholder="All classes",
    )
    shown = shown or list(range(len(names)))
    st.caption(
        f"{len(names)} classes: the heatmap opens on "
        + ("all of them as one image; pick classes to zoom into a clickable heatmap. " if whole
           else "the classes of the most confused pairs. ")
        + "Percentages stay relative to whole classes."
    )  # fmt: skip
else:
    shown = list(range(len(names)))
image_mode = len(shown) >= confusion_image.IMAGE_FROM
targets = confusion_image.target_cells(results.cm, shown) if image_mode else []


def _select_from_chart() -> None:
    points = st.session_state["cm_chart"]["selection"]["points"]
    if image_mode:
        cell = confusion_fig.selected_cell(
            points, shown, cells=targets, trace=confusion_image.TARGET_TRACE
        )
    else:
        cell = confusion_fig.selected_cell(points, shown)
    if cell is not None:
        st.session_state[TRUE_KEY], st.session_state[PRED_KEY] = cell


def _select_from_pairs(key: str) -> None:
    picked = st.session_state[key]["selection"]["rows"]
    if picked:
        row = pair_rows.iloc[picked[0]]
        st.session_state[TRUE_KEY] = int(row["true_idx"])
        st.session_state[PRED_KEY] = int(row["pred_idx"])


@st.cache_data(max_entries=16, show_spinner=False)
def _image_figure(run_id: str, split: str, view: str, shown: tuple, highlight: tuple, _cm, _names):
    """Return the image heatmap of one run's split (coloring and PNG take ~0.2 s at 1,000
    classes; a rerun that changes nothing here reuses it)."""
    return confusion_image.heatmap_image_figure(
        _cm, _names, normalize=confusion.VIEWS[view][1], classes=list(shown), highlight=highlight
    )


def _select_from_search() -> None:
    """Open the searched class's most frequent mistake (as true class, else as predicted)."""
    c = st.session_state[f"cm_find-{run.run_id}"]
    if c is not None:
        st.session_state[TRUE_KEY], st.session_state[PRED_KEY] = confusion.opening_cell(pairs, c)


if image_mode:  # a square image beside the search and the pairs
    chart_col, side_col = st.columns([3, 2], gap="large")
elif len(shown) > confusion_fig.TEXT_MAX_CLASSES:  # a big matrix gets the full width
    chart_col, side_col = st.container(), st.container()
else:
    chart_col, side_col = st.columns([5, 3], gap="large")
with chart_col:
    highlight = (st.session_state[TRUE_KEY], st.session_state[PRED_KEY])
    if image_mode:
        fig = _image_figure(run.run_id, split, view, tuple(shown), highlight, results.cm, names)
    else:
        fig = confusion_fig.heatmap_figure(
            results.cm,
            names,
            normalize=confusion.VIEWS[view][1],
            classes=shown,
            highlight=highlight,
        )
    st.plotly_chart(
        fig,
        key="cm_chart",
        on_select=_select_from_chart,
        selection_mode="points",
        config={"displayModeBar": False},
    )
    if image_mode:
        st.caption(
            "Log color scale: a mistake of a few images still shows. Hover the dots off the "
            f"diagonal (the {len(targets):,} most frequent mistakes) for their classes; click "
            "one to see its images. Drag to zoom, double-click to zoom out."
        )
    else:
        st.caption("Hover a cell for its count and both percentages; click it to see its images.")

with side_col:
    st.subheader("Most confused pairs")
    found = None
    if many:
        keep(f"cm_find-{run.run_id}", None, options=[None, *range(len(names))])
        found = st.selectbox(
            "Find a class",
            range(len(names)),
            index=None,
            key=f"cm_find-{run.run_id}",
            format_func=lambda c: names[c],
            placeholder="Type a class name…",
            on_change=_select_from_search,
            help="Lists the pairs the class is in (as true or as predicted class) and opens "
            "its most frequent mistake.",
        )
    if found is not None:
        pair_rows = confusion.pairs_of_class(pairs, found)
    else:
        pair_rows = pairs.head(PAIRS_SHOWN)
    if pairs.empty:
        st.success("No mistakes in this split: every image is on the diagonal.")
    elif pair_rows.empty:
        st.success(f"'{names[found]}' is in no confused pair: all its images are right.")
    else:
        pairs_key = f"cm_pairs-{found}" if many else "cm_pairs"
        st.dataframe(
            pair_rows,
            key=pairs_key,
            on_select=partial(_select_from_pairs, pairs_key),
            selection_mode="single-row",
            hide_index=True,
            height=min(420, 36 * len(pair_rows) + 38),
            column_order=["true", "predicted", "count", "share_of_true"],
            column_config={
                "true": st.column_config.TextColumn("True class"),
                "predicted": st.column_config.TextColumn("Predicted as"),
                "count": st.column_config.NumberColumn("Images", format="%d"),
                "share_of_true": st.column_config.NumberColumn(
                    "% of true",
                    format="percent",
                    help="The pair's images over all images of the true class.",
                ),
            },
        )
        more = len(pairs) - len(pair_rows) if found is None else 0
        st.caption(
            "Select a row to see its images."
            + (f" The {len(pair_rows):,} most frequent of {len(pairs):,} pairs: search a class "
               "for all of its pairs." if more > 0 else "")
        )  # fmt: skip
        downloads.offer(  # every pair, and the whole matrix (rows true, columns predicted)
            pairs.drop(columns=["true_idx", "pred_idx"], errors="ignore"),
            what="Confused pairs",
            stem=downloads.file_stem(run, split, "confused-pairs"),
            key="cm_pairs",
        )
        downloads.offer(
            lambda: pd.DataFrame(results.cm, index=names, columns=names).reset_index(names="true"),
            what="Matrix",
            stem=downloads.file_stem(run, split, "confusion-matrix"),
            key="cm_matrix",
        )
    st.subheader("Images of one cell")
    c_true, c_pred = st.columns(2)
    true_idx = c_true.selectbox(
        "True class", range(len(names)), key=TRUE_KEY, format_func=lambda c: names[c]
    )
    pred_idx = c_pred.selectbox(
        "Predicted class", range(len(names)), key=PRED_KEY, format_func=lambda c: names[c]
    )

cell = run.predictions().loc[results.cell_rows(true_idx, pred_idx)]
st.divider()
st.subheader(
    f"{len(cell):,} images: true '{md_escape(names[true_idx])}' "
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
