"""The Slices page's chart: accuracy per value / bin with its 95% interval and the rest's line."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from core.figures import theme
from core.figures.theme import plot_text


def slice_figure(table: pd.DataFrame, *, column: str, overall: float) -> go.Figure:
    """Return horizontal bars of accuracy per slice (core.analysis.slices.per_value) with
    their bootstrap intervals, and the split's overall accuracy as a dotted line."""
    labels = [plot_text(s) for s in table["slice"]]
    acc = table["accuracy"].to_numpy()
    fig = go.Figure(
        go.Bar(
            x=acc,
            y=labels,
            orientation="h",
            marker_color=theme.LEVEL_COLORS["good"],
            error_x={
                "type": "data",
                "symmetric": False,
                "array": table["ci high"].to_numpy() - acc,
                "arrayminus": acc - table["ci low"].to_numpy(),
                "color": "#333",
            },
            customdata=table[["images", "ci low", "ci high"]].to_numpy(),
            hovertemplate="%{y}<br>accuracy %{x:.1%} (95% CI %{customdata[1]:.1%}–"
            "%{customdata[2]:.1%})<br>%{customdata[0]:,} images<extra></extra>",
            name="accuracy",
        )
    )
    if not math.isnan(overall):
        fig.add_vline(x=overall, line={"color": "#555", "dash": "dot", "width": 1.5})
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                line={"color": "#555", "dash": "dot"},
                name=f"all images {overall:.1%}",
            )
        )
    fig.update_xaxes(title_text="accuracy", tickformat=".0%", range=[0, 1.02])
    fig.update_yaxes(autorange="reversed", title_text=plot_text(column))
    height = max(260, 60 + 28 * len(table))
    return theme.layout(fig, title=f"Accuracy by {plot_text(column)}", height=height)
