"""Threshold figures: one class's precision-recall and ROC curves, a chosen threshold marked.

They draw what core.analysis.thresholds computed (:class:`ClassCurves`, :class:`ThresholdPoint`).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from core.analysis.thresholds import ClassCurves, ThresholdPoint
from core.figures import theme
from core.figures.theme import GRID, plot_text

PR_COLOR, ROC_COLOR, POINT_COLOR, CHANCE_COLOR = "#4c78a8", "#f58518", "#d62728", "#999999"


def _square(fig: go.Figure, *, title: str, x: str, y: str) -> go.Figure:
    fig.update_xaxes(title=x, range=[-0.01, 1.01], tickformat=".0%", gridcolor=GRID)
    fig.update_yaxes(title=y, range=[-0.01, 1.03], tickformat=".0%", gridcolor=GRID)
    return theme.layout(fig, title=title, height=420, plot_bgcolor="white")


def _marker(x: float, y: float, point: ThresholdPoint) -> go.Scatter:
    return go.Scatter(
        x=[x],
        y=[y],
        mode="markers",
        marker={"size": 13, "color": POINT_COLOR, "symbol": "circle-open", "line": {"width": 3}},
        name=f"P ≥ {point.threshold:.3g}",
        hovertemplate=f"threshold {point.threshold:.3g}<br>%{{x:.1%}}, %{{y:.1%}}<extra></extra>",
    )


def pr_figure(
    curves: ClassCurves, *, class_name: str, point: ThresholdPoint | None = None
) -> go.Figure:
    """Return the precision-recall curve of one class, with ``point`` (a threshold) marked."""
    thr = ["none"] + [f"{t:.3g}" for t in curves.thresholds]
    fig = go.Figure(
        go.Scatter(
            x=curves.recall.tolist(),
            y=curves.precision.tolist(),
            mode="lines",
            line={"shape": "hv", "color": PR_COLOR, "width": 2},
            customdata=thr,
            name=f"AP {curves.average_precision:.3f}",
            hovertemplate="P ≥ %{customdata}<br>recall %{x:.1%}<br>precision %{y:.1%}"
            "<extra></extra>",
        )
    )
    if curves.n_pos + curves.n_neg:
        base = curves.n_pos / (curves.n_pos + curves.n_neg)
        fig.add_trace(
            go.Scatter(
                x=[0, 1],
                y=[base, base],
                mode="lines",
                line={"color": CHANCE_COLOR, "dash": "dot"},
                name=f"chance {base:.1%}",
                hoverinfo="skip",
            )
        )
    if point is not None and not np.isnan(point.recall) and not np.isnan(point.precision):
        fig.add_trace(_marker(point.recall, point.precision, point))
    return _square(
        fig, title=f"Precision-recall: '{plot_text(class_name)}'", x="recall", y="precision"
    )


def roc_figure(
    curves: ClassCurves, *, class_name: str, point: ThresholdPoint | None = None
) -> go.Figure:
    """Return the ROC curve of one class with its AUC in the legend and ``point`` marked."""
    thr = ["none"] + [f"{t:.3g}" for t in curves.thresholds]
    fig = go.Figure(
        go.Scatter(
            x=curves.fpr.tolist(),
            y=curves.tpr.tolist(),
            mode="lines",
            line={"color": ROC_COLOR, "width": 2},
            customdata=thr,
            name=f"AUC {curves.roc_auc:.3f}",
            hovertemplate="P ≥ %{customdata}<br>false-positive rate %{x:.1%}<br>"
            "recall %{y:.1%}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line={"color": CHANCE_COLOR, "dash": "dot"},
            name="chance (AUC 0.5)",
            hoverinfo="skip",
        )
    )
    if point is not None and curves.n_neg and curves.n_pos:
        fig.add_trace(_marker(point.fp / curves.n_neg, point.recall, point))
    return _square(
        fig,
        title=f"ROC: '{plot_text(class_name)}'",
        x="false-positive rate",
        y="recall (true-positive rate)",
    )
