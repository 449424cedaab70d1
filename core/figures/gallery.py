"""Gallery figures: one image's class probabilities as bars (the gallery's detail view)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from core.figures.theme import GRID


def probability_figure(
    probs: Any, class_names: Sequence[str], *, y_true: int, y_pred: int, limit: int = 30
) -> go.Figure:
    """Return a horizontal bar chart of one image's class probabilities, highest on top.

    probs: (n_classes,); the true class is green, the (wrong) prediction red; with more than
    ``limit`` classes only the ``limit`` highest are drawn.
    """
    probs = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-probs, kind="stable")[:limit]
    colors = ["#2b8a3e" if c == y_true else "#c92a2a" if c == y_pred else "#74a9cf" for c in order]
    fig = go.Figure(
        go.Bar(
            x=probs[order],
            y=[str(class_names[c]) for c in order],
            orientation="h",
            marker_color=colors,
            text=[f"{p:.1%}" for p in probs[order]],
            textposition="outside",
            hovertemplate="%{y}: %{x:.2%}<extra></extra>",
        )
    )
    fig.update_layout(
        height=max(220, 24 * len(order) + 60),
        margin={"l": 10, "r": 10, "t": 10, "b": 30},
        showlegend=False,
        plot_bgcolor="white",
    )
    fig.update_xaxes(range=[0, 1.15], tickformat=".0%", title="probability", gridcolor=GRID)
    fig.update_yaxes(type="category", autorange="reversed", title=None)
    return fig
