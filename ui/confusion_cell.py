"""The Confusion page's one selected cell (true class, predicted class) and the widgets that set
it: a click on the heatmap, a row of the most-confused pairs, a class search, and the two
selectboxes that show it. Kept across pages (ui.page_state); a new run or split opens on its
most confused pair. Also the page's panels around them: the classes the heatmap shows, its
columns, and the pairs with their downloads."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from core.analysis import confusion, exports
from core.figures import confusion as confusion_fig
from core.figures import confusion_image
from core.runs import Run
from ui import downloads
from ui.gallery import class_filter, md_escape
from ui.page_state import STORE, keep, put

TRUE_KEY, PRED_KEY = "cm_true", "cm_pred"
OPENED_KEY = "cm_opened"  # the (run id, split) the cell was opened for
PAIRS_SHOWN = 300  # pairs listed without a search: the table stays light at 1,000 classes


def open_cell(run_id: str, split: str, pairs: pd.DataFrame, n_classes: int) -> None:
    """Keep the selected cell valid; on a new run or split, select its most confused pair.

    The same run under another slice filter (``<run id>~<where>``) keeps the cell while it
    still holds a mistake there (or is a diagonal cell): a filter narrows the view, it is not
    a new run."""
    opened = st.session_state.get(OPENED_KEY)
    if opened != (run_id, split):
        st.session_state[OPENED_KEY] = (run_id, split)
        same = opened is not None and (opened[0].partition("~")[0], opened[1]) == (
            run_id.partition("~")[0],
            split,
        )
        stored = st.session_state.get(STORE, {})  # the page was left: its widgets were dropped
        cell = tuple(st.session_state.get(k, stored.get(k)) for k in (TRUE_KEY, PRED_KEY))
        kept = same and (
            cell[0] == cell[1]
            or bool(((pairs["true_idx"] == cell[0]) & (pairs["pred_idx"] == cell[1])).any())
        )
        if not kept:
            first = confusion.opening_cell(pairs)
            put(TRUE_KEY, first[0])
            put(PRED_KEY, first[1])
    for key in (TRUE_KEY, PRED_KEY):
        keep(key, 0, options=range(n_classes))


def selected() -> tuple[int, int]:
    """Return the selected (true, predicted) cell."""
    return st.session_state[TRUE_KEY], st.session_state[PRED_KEY]


def _select(cell: tuple[int, int] | None) -> None:
    if cell is not None:
        st.session_state[TRUE_KEY], st.session_state[PRED_KEY] = cell


def _from_chart(cells: list[tuple[int, int]], trace: int) -> None:
    points = st.session_state["cm_chart"]["selection"]["points"]
    _select(confusion_fig.selected_cell(points, (), cells=cells, trace=trace))


def _draw(
    cm: np.ndarray, names: Sequence[str], view: str, shown: list[int], highlight: tuple[int, int]
) -> confusion_fig.MatrixFigure:
    normalize = confusion.VIEWS[view][1]
    return confusion_fig.matrix_figure(
        cm, names, normalize=normalize, classes=shown, highlight=highlight
    )


@st.cache_data(max_entries=16, show_spinner=False)
def _cached(
    run_id: str, split: str, view: str, shown: tuple, highlight: tuple, _cm: np.ndarray, _names
) -> confusion_fig.MatrixFigure:
    """Return the image of one run's split (coloring and PNG take ~0.2 s at 1,000 classes; a
    rerun that changes nothing here reuses it)."""
    return _draw(_cm, _names, view, list(shown), highlight)


def classes_shown(cm: np.ndarray, names: Sequence[str], *, key: str) -> list[int]:
    """Return the classes the heatmap shows: all of them below ``confusion.PAIRS_FROM``
    classes; from there on the choice of a class filter rendered here, which opens on the
    classes of the most confused pairs (from ``confusion_image.IMAGE_FROM`` on: on all)."""
    every = list(range(len(names)))
    if len(names) < confusion.PAIRS_FROM:
        return every
    whole = len(names) >= confusion_image.IMAGE_FROM  # opens on the whole matrix as an image
    shown = class_filter(
        "Classes shown in the heatmap",
        names,
        key=key,
        default=[] if whole else confusion.focus_classes(cm),
        placeholder="All classes",
    )
    st.caption(
        f"{len(names)} classes: the heatmap opens on "
        + ("all of them as one image; pick classes to zoom into a clickable heatmap. " if whole
           else "the classes of the most confused pairs. ")
        + "Percentages stay relative to whole classes."
    )  # fmt: skip
    return shown or every


def columns(n_shown: int) -> tuple[DeltaGenerator, DeltaGenerator]:
    """Return the (chart, side) containers for a heatmap of ``n_shown`` classes."""
    if n_shown >= confusion_image.IMAGE_FROM:  # a square image beside the search and the pairs
        chart, side = st.columns([3, 2], gap="large")
    elif n_shown > confusion_fig.TEXT_MAX_CLASSES:  # a big matrix gets the full width
        chart, side = st.container(), st.container()
    else:
        chart, side = st.columns([5, 3], gap="large")
    return chart, side


def heatmap(
    cm: np.ndarray, names: Sequence[str], *, view: str, shown: list[int], run_id: str, split: str
) -> None:
    """Render the clickable heatmap of the ``shown`` classes (one image from
    ``confusion_image.IMAGE_FROM`` classes on, its most frequent mistakes clickable)."""
    if len(shown) >= confusion_image.IMAGE_FROM:
        drawn = _cached(run_id, split, view, tuple(shown), selected(), cm, names)
    else:  # the heatmap: drawn on each rerun, as before
        drawn = _draw(cm, names, view, shown, selected())
    st.plotly_chart(
        drawn.figure,
        key="cm_chart",
        on_select=partial(_from_chart, drawn.cells, drawn.trace),
        selection_mode="points",
        config={"displayModeBar": False},
    )
    if drawn.image:
        st.caption(
            "Log color scale: a mistake of a few images still shows. Hover the dots off the "
            f"diagonal (the {len(drawn.cells):,} most frequent mistakes) for their classes; "
            "click one to see its images. Drag to zoom, double-click to zoom out."
        )
    else:
        st.caption("Hover a cell for its count and both percentages; click it to see its images.")


def _from_search(key: str, pairs: pd.DataFrame) -> None:
    c = st.session_state[key]
    if c is not None:
        _select(confusion.opening_cell(pairs, c))


def search(names: Sequence[str], pairs: pd.DataFrame, *, key: str) -> int | None:
    """Render the class search and return the class found (None: no search); picking a class
    selects its most frequent mistake (as true class, else as predicted)."""
    keep(key, None, options=[None, *range(len(names))])
    return st.selectbox(
        "Find a class",
        range(len(names)),
        index=None,
        key=key,
        format_func=lambda c: names[c],
        placeholder="Type a class name…",
        on_change=partial(_from_search, key, pairs),
        help="Lists the pairs the class is in (as true or as predicted class) and opens "
        "its most frequent mistake.",
    )


def _from_pairs(key: str, rows: pd.DataFrame) -> None:
    picked = st.session_state[key]["selection"]["rows"]
    if picked:
        row = rows.iloc[picked[0]]
        _select((int(row["true_idx"]), int(row["pred_idx"])))


def pairs_table(rows: pd.DataFrame, *, key: str) -> None:
    """Render confusion.most_confused_pairs rows; selecting a row selects its cell."""
    st.dataframe(
        rows,
        key=key,
        on_select=partial(_from_pairs, key, rows),
        selection_mode="single-row",
        hide_index=True,
        height=min(420, 36 * len(rows) + 38),
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


def pickers(names: Sequence[str]) -> tuple[int, int]:
    """Render the true and predicted class selectboxes; return the selected cell."""
    c_true, c_pred = st.columns(2)
    true_idx = c_true.selectbox(
        "True class", range(len(names)), key=TRUE_KEY, format_func=lambda c: names[c]
    )
    pred_idx = c_pred.selectbox(
        "Predicted class", range(len(names)), key=PRED_KEY, format_func=lambda c: names[c]
    )
    return true_idx, pred_idx


def pairs_panel(run: Run, split: str, cm: np.ndarray, pairs: pd.DataFrame) -> None:
    """Render the most confused ``pairs``: a class search from ``confusion.PAIRS_FROM``
    classes on, at most ``PAIRS_SHOWN`` of them without one (a selected row selects its
    cell), and downloads of every pair and of the whole matrix ``cm``."""
    names = run.class_names
    many = len(names) >= confusion.PAIRS_FROM
    found = search(names, pairs, key=f"cm_find-{run.run_id}") if many else None
    listed, more = confusion.listed_pairs(pairs, found, limit=PAIRS_SHOWN)
    if pairs.empty:
        st.success("No mistakes in this split: every image is on the diagonal.")
        return
    if found is not None and listed.empty:  # (without a search the first pairs are listed)
        st.success(f"'{md_escape(names[found])}' is in no confused pair: all its images are right.")
        return
    pairs_table(listed, key=f"cm_pairs-{found}" if many else "cm_pairs")
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
        lambda: exports.matrix_table(cm, names),
        what="Matrix",
        stem=downloads.file_stem(run, split, "confusion-matrix"),
        key="cm_matrix",
    )
