"""The embedding map: a WebGL scatter of projected points, coloured by one column. No maths.

Coordinates go in as float32 numpy arrays, which plotly sends as base64 typed arrays (8 bytes
a point), so 30,000 drawn points stay well under a megabyte; hover text is one short string
per point. A column with few values gets one trace (and legend entry) per value; a numeric
column or one with more than ``LEGEND_MAX`` values is one trace on a colour scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.figures import theme
from core.figures.theme import plot_text

LEGEND_MAX = 30  # more values than this: one trace on a colour scale, no legend
PALETTE = (
    "#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#eeca3b", "#ff9da6",
    "#9d755d", "#bab0ac", "#1f77b4", "#8c564b", "#17becf", "#bcbd22", "#7f7f7f",
)  # fmt: skip
FIXED = {"correct": theme.OUTCOME_COLORS["correct"], "wrong": theme.OUTCOME_COLORS["wrong"]}
MARKER_PX = 5


def map_figure(
    x: Any,
    y: Any,
    values: Any,
    *,
    numeric: bool,
    hover: Sequence[str],
    color_label: str,
    title: str,
    height: int = 560,
) -> go.Figure:
    """Return the scatter of the drawn points (x, y) coloured by ``values`` (one per point).

    numeric: colour on a scale (confidence, brightness) instead of one trace per value.
    hover: one line per point (already formatted; escaped here).
    """
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    hover_arr = np.asarray([plot_text(h) for h in hover], dtype=object)
    values = np.asarray(values)
    fig = go.Figure()
    common = {"mode": "markers", "hovertemplate": "%{text}<extra></extra>"}
    if numeric:
        fig.add_trace(
            go.Scattergl(
                x=x,
                y=y,
                text=hover_arr,
                marker={
                    "size": MARKER_PX,
                    "color": values.astype(np.float32),
                    "colorscale": "Viridis",
                    "colorbar": {"title": {"text": plot_text(color_label)}},
                },
                name=plot_text(color_label),
                showlegend=False,
                **common,
            )
        )
    else:
        labels = values.astype(str)
        order = sorted(set(labels.tolist()), key=_natural)
        if len(order) > LEGEND_MAX:
            codes = pd.Index(order).get_indexer(labels).astype(np.int32)
            fig.add_trace(
                go.Scattergl(
                    x=x,
                    y=y,
                    text=hover_arr,
                    marker={"size": MARKER_PX, "color": codes, "colorscale": "Turbo"},
                    showlegend=False,
                    **common,
                )
            )
        else:
            for i, value in enumerate(order):
                on = labels == value
                fig.add_trace(
                    go.Scattergl(
                        x=x[on],
                        y=y[on],
                        text=hover_arr[on],
                        marker={
                            "size": MARKER_PX,
                            "color": FIXED.get(value, PALETTE[i % len(PALETTE)]),
                        },
                        name=plot_text(value),
                        **common,
                    )
                )
    theme.layout(
        fig,
        title=title,
        height=height,
        legend={**theme.LEGEND_BELOW, "title": {"text": plot_text(color_label)}},
        dragmode="lasso",
        plot_bgcolor="white",
    )
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, title=None)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, title=None)
    return fig


def _natural(text: str) -> tuple[int, float | str]:
    """Sort numbers by value before text (class "10" after "9")."""
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)
