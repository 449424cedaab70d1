"""Plotly figures for the views, built from computed tables. Pure: no streamlit, no I/O.

Data go in as plain lists (not numpy), so a figure's JSON is readable and checkable as is.

Every builder takes numbers that core.analysis.tables / core.analysis.diagnostics already
computed and only draws them, so a chart can never disagree with the table beside it. Class
names are drawn on category axes (digit names such as "8" must not become numbers).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from core.analysis.diagnostics import ClassGap, Thresholds, level_of, pct_brief
from core.figures import theme
from core.figures.theme import OUTCOME_COLORS, plot_text
from core.figures.theme import label_room as label_room  # its home is theme; kept for callers

COLORS = theme.LEVEL_COLORS
METRIC_COLORS = {"precision": "#4c78a8", "recall": "#f58518", "f1": "#54a24b"}
SPLIT_COLORS = {"train": "#7f7f7f", "val": "#9467bd", "test": "#1f77b4"}
MANY_CLASSES = 30  # from this many classes on, bar charts turn horizontal
ROW_PX = 22  # height per class in horizontal bar charts
BARS_MAX = 60  # beyond this many classes the recall chart shows the worst ones only: 1,000
# bars would be a 22,000-pixel chart (the per-class table has every class)


def _layout(fig: go.Figure, *, title: str, height: int = 380) -> go.Figure:
    return theme.layout(fig, title=title, height=height, bargap=0.25)


def _line(
    fig: go.Figure, value: float, color: str, dash: str, name: str, *, vertical: bool
) -> None:
    """Draw a reference line across the plot, named in the legend (labels on the plot would
    sit on top of the bars)."""
    style = {"color": color, "dash": dash, "width": 1.5}
    if vertical:
        fig.add_vline(x=value, line=style)
    else:
        fig.add_hline(y=value, line=style)
    fig.add_trace(
        go.Scatter(x=[None], y=[None], mode="lines", line=style, name=name, hoverinfo="skip")
    )


def _threshold_lines(
    fig: go.Figure, t: Thresholds, *, horizontal: bool = False, accuracy: float | None = None
) -> None:
    """Draw the good_class and bad_class lines (and accuracy, when given) across the bars."""
    lines = [
        (t.good_class, COLORS["needs attention"], "dash", f"good ≥ {pct_brief(t.good_class)}"),
        (t.bad_class, COLORS["bad"], "dash", f"bad < {pct_brief(t.bad_class)}"),
    ]
    if accuracy is not None:
        lines.append((accuracy, "#555555", "dot", f"accuracy {pct_brief(accuracy)}"))
    for value, color, dash, name in lines:
        _line(fig, value, color, dash, name, vertical=horizontal)


def recall_bars(
    table: pd.DataFrame, t: Thresholds = Thresholds(), *, accuracy: float | None = None
) -> go.Figure:
    """Return per-class recall bars colored by level, with the threshold lines.

    table: core.analysis.tables.per_class_table output (class, recall, support used). ``accuracy``
    adds a dotted line: the picture of the accuracy paradox when one bar falls far below it.
    """
    df = table[table["support"] > 0]
    n_all = len(df)
    if n_all > BARS_MAX:  # the worst classes, still in class order
        df = df.loc[df["recall"].sort_values(kind="stable").index[:BARS_MAX]].sort_index()
    levels = [level_of(r, t) for r in df["recall"]]
    horizontal = len(df) >= MANY_CLASSES
    if horizontal:
        df = df.iloc[::-1]  # first class on top
        levels = levels[::-1]
    bar = go.Bar(
        x=df["recall"].tolist() if horizontal else [plot_text(c) for c in df["class"]],
        y=[plot_text(c) for c in df["class"]] if horizontal else df["recall"].tolist(),
        orientation="h" if horizontal else "v",
        marker_color=[COLORS[lv] for lv in levels],
        customdata=[[int(n), lv] for n, lv in zip(df["support"], levels, strict=True)],
        hovertemplate="'%{"
        + ("y" if horizontal else "x")
        + "}': recall %{"
        + ("x" if horizontal else "y")
        + ":.1%} of %{customdata[0]} images (%{customdata[1]})<extra></extra>",
        texttemplate="%{" + ("x" if horizontal else "y") + ":.0%}",
        textposition="outside",
        cliponaxis=False,
        name="recall",
        showlegend=False,
    )
    fig = go.Figure(bar)
    _threshold_lines(fig, t, horizontal=horizontal, accuracy=accuracy)
    value_axis = {"range": [0, 1.12], "tickformat": ".0%", "title": "recall"}  # room for labels
    class_axis = {"type": "category", "title": "class"}
    if horizontal:
        fig.update_layout(xaxis=value_axis, yaxis=class_axis)
        title = (
            f"Recall of the {len(df)} worst of {n_all:,} classes" if n_all > len(df)
            else "Recall per class"
        )  # fmt: skip
        return _layout(fig, title=title, height=120 + ROW_PX * len(df))
    fig.update_layout(xaxis=class_axis, yaxis=value_axis)
    return _layout(fig, title="Recall per class")


def per_class_bars(table: pd.DataFrame, t: Thresholds = Thresholds()) -> go.Figure:
    """Return grouped precision / recall / F1 bars per class with the threshold lines.

    table: core.analysis.tables.per_class_table output. With ``MANY_CLASSES`` classes or more the
    bars are horizontal, sorted by F1 (worst on top) and the height grows with the classes.
    """
    horizontal = len(table) >= MANY_CLASSES
    df = table.sort_values("f1", ascending=False, kind="stable") if horizontal else table
    fig = go.Figure()
    for metric, label in (("precision", "precision"), ("recall", "recall"), ("f1", "F1")):
        fig.add_trace(
            go.Bar(
                x=df[metric].tolist() if horizontal else [plot_text(c) for c in df["class"]],
                y=[plot_text(c) for c in df["class"]] if horizontal else df[metric].tolist(),
                orientation="h" if horizontal else "v",
                name=label,
                marker_color=METRIC_COLORS[metric],
                hovertemplate=f"'%{{{'y' if horizontal else 'x'}}}': {label} "
                f"%{{{'x' if horizontal else 'y'}:.1%}}<extra></extra>",
            )
        )
    _threshold_lines(fig, t, horizontal=horizontal)
    value_axis = {"range": [0, 1.05], "tickformat": ".0%"}
    class_axis = {"type": "category", "title": "class"}
    fig.update_layout(barmode="group")
    if horizontal:
        fig.update_layout(xaxis=value_axis, yaxis=class_axis)
        return _layout(
            fig, title="Precision, recall and F1 per class (worst F1 on top)",
            height=140 + 30 * len(df),
        )  # fmt: skip
    fig.update_layout(xaxis=class_axis, yaxis=value_axis)
    return _layout(fig, title="Precision, recall and F1 per class", height=420)


def gap_bars(
    gaps: Sequence[ClassGap], t: Thresholds = Thresholds(), *, other: str = "test"
) -> go.Figure:
    """Return the train-minus-``other`` recall gap per class as bars, in the given order
    (diagnostics.overfitting sorts largest first), red above 2x overfit_gap, amber above it;
    the first BARS_MAX only when there are more."""
    n_all = len(gaps)
    gaps = list(gaps)[:BARS_MAX]
    names = [plot_text(g.name) for g in gaps]
    values = [g.gap for g in gaps]
    colors = [
        COLORS["bad"]
        if v > 2 * t.overfit_gap
        else COLORS["needs attention"]
        if v > t.overfit_gap
        else COLORS["good"]
        for v in values
    ]
    horizontal = len(gaps) >= MANY_CLASSES
    fig = go.Figure(
        go.Bar(
            x=values if horizontal else names,
            y=names if horizontal else values,
            orientation="h" if horizontal else "v",
            marker_color=colors,
            customdata=[[g.train_recall, g.other_recall] for g in gaps],
            hovertemplate=f"'%{{{'y' if horizontal else 'x'}}}': train recall "
            f"%{{customdata[0]:.1%}}, {other} %{{customdata[1]:.1%}}<extra></extra>",
            showlegend=False,
        )
    )
    _line(
        fig, t.overfit_gap, COLORS["needs attention"], "dash",
        f"flagged above {100 * t.overfit_gap:.0f} pts", vertical=horizontal,
    )  # fmt: skip
    value_axis = {"tickformat": "+.0%", "title": f"train − {other} recall"}
    class_axis = {"type": "category", "title": "class"}
    if horizontal:
        fig.update_layout(xaxis=value_axis, yaxis={**class_axis, "autorange": "reversed"})
        title = (
            f"Recall gap of the first {len(gaps)} of {n_all:,} classes" if n_all > len(gaps)
            else "Recall gap per class"
        )  # fmt: skip
        return _layout(fig, title=title, height=120 + ROW_PX * len(gaps))
    fig.update_layout(xaxis=class_axis, yaxis=value_axis)
    return _layout(fig, title=f"Recall gap per class (train − {other}), largest first")


def outcome_boxes(
    stats: pd.DataFrame,
    *,
    column: str,
    title: str,
    tickformat: str | None = None,
    value_range: tuple[float, float] | None = None,
) -> go.Figure:
    """Return box plots of ``column`` per split, correct vs wrong side by side.

    stats: core.analysis.tables.outcome_stats output; the boxes are drawn from those precomputed
    quartiles and fences, so the figure stays small for any number of images. Splits read
    train, val, test from left to right.
    """
    fig = go.Figure()
    for outcome, color in OUTCOME_COLORS.items():
        s = stats[stats["outcome"] == outcome]
        fig.add_trace(
            go.Box(
                name=outcome,
                x=s["split"].tolist(),
                q1=s["q1"].tolist(),
                median=s["median"].tolist(),
                q3=s["q3"].tolist(),
                lowerfence=s["lowerfence"].tolist(),
                upperfence=s["upperfence"].tolist(),
                mean=s["mean"].tolist(),
                boxmean=True,
                marker_color=color,
                boxpoints=False,
            )
        )
    yaxis: dict = {"title": column}
    if tickformat:
        yaxis["tickformat"] = tickformat
    if value_range:
        yaxis["range"] = list(value_range)
    order = [s for s in ("train", "val", "test") if s in set(stats["split"])]
    order += [s for s in dict.fromkeys(stats["split"]) if s not in order]
    fig.update_layout(
        boxmode="group",
        xaxis={"type": "category", "title": "split", "categoryorder": "array",
               "categoryarray": order},
        yaxis=yaxis,
    )  # fmt: skip
    return _layout(fig, title=title, height=360)
