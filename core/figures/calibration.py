"""Calibration figures: the reliability diagram and the confidence histogram.

They draw what core.analysis.calibration computed (reliability bins, outcome counts per bin).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.analysis.calibration import Reliability, bin_labels, outcome_counts
from core.figures import theme
from core.figures.theme import GRID, LEGEND_BELOW, OUTCOME_COLORS

ACC_COLOR, CONF_COLOR, COUNT_COLOR = "#4c78a8", "#d62728", "#c7c7c7"


def reliability_figure(rel: Reliability, *, title: str = "Reliability diagram") -> go.Figure:
    """Return the reliability diagram: accuracy bars per bin against the diagonal, each bin's
    mean confidence, and a lower panel of images per bin. Both bar traces' points are bins."""
    width = np.diff(rel.edges)
    centers = (rel.edges[:-1] + width / 2).tolist()
    labels = bin_labels(rel)
    acc = [None if np.isnan(a) else float(a) for a in rel.accuracy]
    conf = [None if np.isnan(c) else float(c) for c in rel.confidence]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22])

    def bin_bars(y: list[Any], color: str, name: str) -> go.Bar:
        # one bar per bin, 90% of its width, the bin's range as hover text
        return go.Bar(
            x=centers,
            y=y,
            width=(width * 0.9).tolist(),
            marker_color=color,
            name=name,
            hovertext=labels,
            hovertemplate="%{hovertext}<extra></extra>",
        )

    fig.add_trace(bin_bars(rel.count.tolist(), COUNT_COLOR, "images per bin"), row=2, col=1)
    fig.add_trace(bin_bars(acc, ACC_COLOR, "accuracy"), row=1, col=1)
    fig.add_trace(
        go.Scatter(
            x=centers,
            y=conf,
            mode="markers",
            marker={
                "color": CONF_COLOR,
                "symbol": "line-ew-open",
                "size": 18,
                "line": {"width": 3},
            },
            name="mean confidence",
            hovertemplate="mean confidence %{y:.1%}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line={"color": "#555", "dash": "dash", "width": 1},
            name="perfect calibration",
            hoverinfo="skip",
        ),
        row=1,
        col=1,
    )
    fig.update_xaxes(range=[0, 1], tickformat=".0%", dtick=0.1, gridcolor=GRID)
    fig.update_xaxes(title="confidence", row=2, col=1)
    fig.update_yaxes(title="accuracy", range=[0, 1.02], tickformat=".0%", gridcolor=GRID, row=1)
    fig.update_yaxes(title="images", rangemode="tozero", gridcolor=GRID, row=2, col=1)
    return theme.layout(
        fig,
        title=title,
        height=500,
        legend=LEGEND_BELOW,
        plot_bgcolor="white",
        clickmode="event+select",
    )


def confidence_histogram(
    y_true: Any, y_pred: Any, confidence: Any, *, n_bins: int = 20, title: str = "Confidence"
) -> go.Figure:
    """Return side-by-side counts of correct and wrong predictions per confidence bin.

    y_true, y_pred: (n,) class indices; confidence: (n,) the predicted class's probability.
    """
    edges, n_correct, n_wrong = outcome_counts(y_true, y_pred, confidence, n_bins=n_bins)
    centers = ((edges[:-1] + edges[1:]) / 2).tolist()
    fig = go.Figure()
    for name, counts in (("correct", n_correct), ("wrong", n_wrong)):
        fig.add_trace(
            go.Bar(
                x=centers,
                y=counts.tolist(),
                name=f"{name} ({int(counts.sum()):,})",
                marker_color=OUTCOME_COLORS[name],
                customdata=[f"{lo:.2f}–{hi:.2f}" for lo, hi in zip(edges, edges[1:], strict=False)],
                hovertemplate=f"{name}<br>confidence %{{customdata}}<br>%{{y:,}} images"
                "<extra></extra>",
            )
        )
    fig.update_xaxes(title="confidence", range=[0, 1], tickformat=".0%", dtick=0.1, gridcolor=GRID)
    fig.update_yaxes(title="images", gridcolor=GRID)
    return theme.layout(
        fig, title=title, height=360, plot_bgcolor="white", barmode="group", bargap=0.1
    )
