"""Embedding map: the model's penultimate-layer space in 2-D; select a region to see its images."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.analysis import projection, selection
from core.figures.embedding_map import map_figure
from core.hosting import tasks
from core.images import columns as slice_table
from core.images import embedding_map
from core.images.gallery import paginate
from core.runs import Run
from ui import tasks as ui_tasks
from ui.boot import ensure_app
from ui.gallery import pager, thumbnail_grid
from ui.page_state import keep
from ui.slice_filter import columns_for, use_selection
from ui.state import current_run

ensure_app()
SEED = 0  # the projection's and the background sample's seed: the same map every visit
OUTCOME = "correct / wrong"

st.title("Embedding map")
st.caption(
    "Each point is an image placed by what the model's last layer sees (its penultimate-layer "
    "embedding), projected to 2-D: images the model finds alike sit together. Draw a box or a "
    "lasso to see the images inside and how the model does on them. Every mistake is drawn; "
    f"beyond {projection.MAX_DRAWN:,} correct images a seeded sample of them is drawn, but a "
    "selection counts every image inside it."
)
run = current_run()
base = run.parent if run.parent is not None else run

methods = [m for m in projection.METHODS if m != "umap" or projection.umap_available()]
c_method, c_color, c_splits = st.columns([1.4, 1.2, 1.6], vertical_alignment="bottom")
keep("em_method", "pca", options=methods)
method = c_method.segmented_control(
    "Projection",
    methods,
    format_func=projection.METHODS.get,
    key="em_method",
    required=True,
    help="PCA: instant, keeps large distances. t-SNE: keeps neighbourhoods, slow on large "
    "runs. UMAP appears when the umap-learn package is installed.",
)
table = columns_for(run)
kinds = slice_table.column_kinds(table)
colours = ["true class", "predicted class", OUTCOME, "confidence", "split"]
colours += [c for c in kinds if c not in slice_table.BASE_COLUMNS or c == "subfolder"]
keep("em_color", "true class", options=colours)
colour = c_color.selectbox("Colour by", colours, key="em_color")
keep("em_splits", list(run.splits), options=run.splits, many=True)
splits = c_splits.multiselect("Splits", run.splits, key="em_splits", placeholder="All splits")

task = tasks.submit(
    ("projection", base.run_id, method, SEED),
    partial(embedding_map.run_projection, method=method, seed=SEED),
    base,
    label=f"{projection.METHODS[method]} map of {base.run_id}",
    progress=True,
)
coords = ui_tasks.result(task, "Computing the embeddings and the map (once per run)")
coords = coords if run.parent is None else coords[run.rows]


@st.cache_resource(max_entries=8, show_spinner=False)
def _figure(
    run_id: str,
    method: str,
    colour: str,
    numeric: bool,
    splits: tuple[str, ...],
    columns: tuple[str, ...],
    _coords: np.ndarray,
    _table: pd.DataFrame,
    _run: Run,
) -> tuple[go.Figure, np.ndarray, np.ndarray]:
    """Return (figure, drawn rows, shown rows), built once per run, map, colour and splits
    (a 30,000-point figure takes ~0.2 s to build; reruns reuse it)."""
    correct = _table["correct"].to_numpy(dtype=bool)
    shown = np.isin(_table["split"].to_numpy(), splits) & np.isfinite(_coords[:, 0])
    rows = np.flatnonzero(shown)
    drawn = rows[projection.drawn_rows(~correct[rows], seed=SEED)]
    values = _table[colour if colour != OUTCOME else "correct"].to_numpy()[drawn]
    if colour == OUTCOME:
        values = np.where(values.astype(bool), "correct", "wrong")
    p = _run.predictions()
    hover = projection.hover_lines(
        p["y_true"].to_numpy()[drawn],
        p["y_pred"].to_numpy()[drawn],
        p["confidence"].to_numpy()[drawn],
        _run.class_names,
    )
    n_wrong = int((~correct[rows]).sum())
    fig = map_figure(
        _coords[drawn, 0],
        _coords[drawn, 1],
        values,
        numeric=numeric,
        hover=hover,
        color_label=colour,
        title=f"{len(drawn):,} of {len(rows):,} images drawn ({n_wrong:,} mistakes, all drawn)",
    )
    return fig, drawn, rows


shown_splits = tuple(splits or run.splits)
numeric = kinds.get(colour) == "numeric"
fig, drawn, rows = _figure(
    run.run_id, method, colour, numeric, shown_splits, tuple(table.columns), coords, table, run
)
correct = table["correct"].to_numpy(dtype=bool)
shown = np.zeros(len(coords), dtype=bool)
shown[rows] = True
predictions = run.predictions()
event = st.plotly_chart(
    fig, key="em_map", on_select="rerun", selection_mode=("box", "lasso"), width="stretch"
)
shapes = event.get("selection") if event else None  # a dict (attribute access too)
chosen = selection.selected(coords[:, 0], coords[:, 1], shapes)
if not selection.has_shape(shapes):
    st.caption("Draw a box or a lasso on the map (toolbar, top right) to list its images.")
    st.stop()
chosen &= shown
stats = projection.selection_stats(chosen, correct, drawn)
hidden = stats.n - stats.n_drawn
st.markdown(
    f"**Your selection: {stats.n:,} images, accuracy {stats.accuracy:.1%}** "
    f"({stats.n - stats.n_correct:,} mistakes)"
    if stats.n
    else "**Your selection holds no image.**"
)
if hidden:
    st.caption(f"{hidden:,} of them are correct images of the background not drawn on the map.")
if not stats.n:
    st.stop()
st.button(
    "Use as filter",
    key="em_use_filter",
    icon=":material/filter_alt:",
    on_click=use_selection,
    args=(run, chosen),
    help="Compute every page on these images (the sidebar's Images filter; the link keeps it).",
)
picked = predictions.iloc[np.flatnonzero(chosen)]
picked = picked.assign(_ok=picked["y_true"] == picked["y_pred"]).sort_values(
    ["_ok", "confidence"], ascending=[True, False], kind="stable"
)
page, size = pager(len(picked), key="em_gallery", reset_on=(run.run_id, stats.n, splits))
thumbnail_grid(paginate(picked, page=page, page_size=size), run, key="em_gallery")
st.caption("Mistakes first, most confident first.")
