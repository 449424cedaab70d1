"""The Confusion page's one selected cell (true class, predicted class) and the widgets that set
it: a click on the heatmap, a row of the most-confused pairs, a class search, and the two
selectboxes that show it. Kept across pages (ui.page_state); a new run or split opens on its
most confused pair."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.analysis import confusion
from core.figures import confusion as confusion_fig
from core.figures import confusion_image
from ui.page_state import STORE, keep, put

TRUE_KEY, PRED_KEY = "cm_true", "cm_pred"
OPENED_KEY = "cm_opened"  # the (run id, split) the cell was opened for


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


def _from_chart(shown: list[int], targets: list | None) -> None:
    points = st.session_state["cm_chart"]["selection"]["points"]
    if targets is None:
        _select(confusion_fig.selected_cell(points, shown))
    else:
        trace = confusion_image.TARGET_TRACE
        _select(confusion_fig.selected_cell(points, shown, cells=targets, trace=trace))


@st.cache_data(max_entries=16, show_spinner=False)
def _image_figure(
    run_id: str, split: str, view: str, shown: tuple, highlight: tuple, _cm: np.ndarray, _names
) -> go.Figure:
    """Return the image heatmap of one run's split (coloring and PNG take ~0.2 s at 1,000
    classes; a rerun that changes nothing here reuses it)."""
    return confusion_image.heatmap_image_figure(
        _cm, _names, normalize=confusion.VIEWS[view][1], classes=list(shown), highlight=highlight
    )


def heatmap(
    cm: np.ndarray, names: Sequence[str], *, view: str, shown: list[int], run_id: str, split: str
) -> None:
    """Render the clickable heatmap of the ``shown`` classes (one image from
    ``confusion_image.IMAGE_FROM`` classes on, its most frequent mistakes clickable)."""
    image_mode = len(shown) >= confusion_image.IMAGE_FROM
    targets = confusion_image.target_cells(cm, shown) if image_mode else None
    if image_mode:
        fig = _image_figure(run_id, split, view, tuple(shown), selected(), cm, names)
    else:
        normalize = confusion.VIEWS[view][1]
        fig = confusion_fig.heatmap_figure(
            cm, names, normalize=normalize, classes=shown, highlight=selected()
        )
    st.plotly_chart(
        fig,
        key="cm_chart",
        on_select=partial(_from_chart, shown, targets),
        selection_mode="points",
        config={"displayModeBar": False},
    )
    if targets is not None:
        st.caption(
            "Log color scale: a mistake of a few images still shows. Hover the dots off the "
            f"diagonal (the {len(targets):,} most frequent mistakes) for their classes; click "
            "one to see its images. Drag to zoom, double-click to zoom out."
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
