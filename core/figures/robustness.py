"""The Robustness page's chart: accuracy against severity, one line per corruption, with the
clean run's accuracy on the same images as a dashed reference line."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go

from core.figures import theme
from core.figures.theme import GRID, plot_text

CLEAN_COLOR = "#555"
LEGEND = {**theme.LEGEND_BELOW, "y": -0.2}  # below the x axis' title, not over it
# plotly's D3 palette: ten corruptions get ten distinct colours (hflip is the ninth)
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip


def severity_figure(
    table: pd.DataFrame,
    *,
    clean_accuracy: float,
    labels: Mapping[str, str] | None = None,
    title: str = "Accuracy under corruption",
) -> go.Figure:
    """Return accuracy vs severity lines, one per corruption (core.analysis.robustness
    ``severity_table``: corruption, severity, n, accuracy, drop), each point's hover with its n and
    the drop from clean, and ``clean_accuracy`` as a dashed horizontal line.

    labels: corruption name -> the words shown (default: the name).
    """
    names = labels or {}
    fig = go.Figure()
    top = int(table["severity"].max()) if len(table) else 1
    if not math.isnan(clean_accuracy):
        fig.add_trace(
            go.Scatter(
                x=[0, max(top, 1)],
                y=[clean_accuracy, clean_accuracy],
                mode="lines",
                line={"color": CLEAN_COLOR, "dash": "dash", "width": 1.5},
                name=f"clean {clean_accuracy:.1%}",
                hovertemplate=f"clean images: accuracy {clean_accuracy:.1%}<extra></extra>",
            )
        )
    for i, (corruption, rows) in enumerate(table.groupby("corruption", sort=False)):
        rows = rows.sort_values("severity")
        label = plot_text(names.get(str(corruption), corruption))
        fig.add_trace(
            go.Scatter(
                x=rows["severity"].tolist(),
                y=rows["accuracy"].tolist(),
                mode="lines+markers",
                line={"color": COLORS[i % len(COLORS)], "width": 2},
                name=label,
                customdata=list(zip(rows["n"], 100 * rows["drop"], strict=True)),
                hovertemplate=f"{label}<br>severity %{{x}}: accuracy %{{y:.1%}}"
                "<br>%{customdata[0]:,} images, %{customdata[1]:.1f} points below clean"
                "<extra></extra>",
            )
        )
    fig.update_xaxes(
        title_text="severity", dtick=1, range=[-0.1, max(top, 1) + 0.1], gridcolor=GRID
    )
    fig.update_yaxes(title_text="accuracy", tickformat=".0%", range=[0, 1.02], gridcolor=GRID)
    return theme.layout(fig, title=title, height=440, legend=LEGEND, plot_bgcolor="white")
