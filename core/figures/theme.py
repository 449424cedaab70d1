"""The one look every ClassLens figure shares: colours, margins, legend, grid, safe text.

Figure builders in core/figures/ call :func:`layout` (title, height, margins, legend, room for
axis labels) instead of repeating plotly layout settings, and :func:`plot_text` on every class
name they draw. No maths here.
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

LEVEL_COLORS = {"bad": "#d62728", "needs attention": "#ff9f1c", "good": "#2ca02c"}
OUTCOME_COLORS = {"correct": LEVEL_COLORS["good"], "wrong": LEVEL_COLORS["bad"]}
GRID = "#eee"  # grid lines on white plot backgrounds
MARGIN = {"l": 10, "r": 10, "t": 50, "b": 10}  # tight: label_room grows it where labels need
LEGEND_TOP = {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1}
LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.12, "xanchor": "left", "x": 0}


def plot_text(name: object) -> str:
    """Return ``name`` safe as plotly text (labels, hover, titles): plotly reads a small HTML
    subset there, so a class called <b>x</b> or <script> must be entity-escaped to show as
    typed (plotly decodes the entities back for display)."""
    return html.escape(str(name), quote=False)


def label_room(fig: go.Figure) -> go.Figure:
    """Return ``fig`` with automargin on every axis: the figures keep 10 px margins, and
    Streamlit's plotly template (the default inside the dashboard) has no automargin, so axis
    titles and tick labels were clipped at the edges."""
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def layout(
    fig: go.Figure,
    *,
    title: str,
    height: int,
    legend: dict[str, Any] | None = None,
    **extra: Any,
) -> go.Figure:
    """Return ``fig`` with the shared layout: ``title`` at the top left, ``height`` px, tight
    margins, a horizontal legend (``LEGEND_TOP`` unless given) and room for axis labels.

    extra: further plotly layout settings of this figure (plot_bgcolor, barmode, ...).
    """
    fig.update_layout(
        title={"text": title, "x": 0, "xanchor": "left"},
        height=height,
        margin=MARGIN,
        legend=LEGEND_TOP if legend is None else legend,
        **extra,
    )
    return label_room(fig)
