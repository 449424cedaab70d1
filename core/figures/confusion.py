"""The confusion-matrix heatmap: counts or shares per cell, click targets, outlines.

Draws what core.analysis.confusion computed (the count matrix, its normalisations and cell
labels). :func:`matrix_figure` is the one entry point: a heatmap here, or from
``confusion_image.IMAGE_FROM`` shown classes on one image (core.figures.confusion_image).
Heatmap cells themselves cannot be selected in Streamlit, so trace ``OVERLAY_TRACE`` is a
transparent marker per shown cell in :func:`overlay_cells` order, and :func:`selected_cell`
maps a plotly selection back to its (true, predicted) cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from core.analysis.confusion import Normalize, cell_text, normalize_cm
from core.figures import confusion_image
from core.figures.theme import plot_text

TEXT_MAX_CLASSES = 30  # above this, per-cell numbers are unreadable: hover only
OVERLAY_TRACE = 1  # curve number of the heatmap's transparent click targets
TICK_CHARS = 18  # longer class names are cut on the axes ("…"); the cell hover shows them whole


def overlay_cells(classes: Sequence[int]) -> list[tuple[int, int]]:
    """Return the (true_idx, pred_idx) of each click target of the heatmap, in
    point order, for the shown ``classes``."""
    return [(i, j) for i in classes for j in classes]


def selected_cell(
    points: Sequence[dict[str, Any]],
    classes: Sequence[int],
    *,
    cells: Sequence[tuple[int, int]] | None = None,
    trace: int = OVERLAY_TRACE,
) -> tuple[int, int] | None:
    """Return the (true_idx, pred_idx) of the first clicked overlay point in a plotly
    selection, or None when no cell was clicked.

    cells, trace: the click targets in point order and their curve number, when not
    :func:`overlay_cells` of ``classes`` on ``OVERLAY_TRACE`` (the image-mode heatmap's).
    """
    cells = overlay_cells(classes) if cells is None else cells
    for p in points:
        idx = p.get("point_index", p.get("pointIndex"))
        curve = p.get("curve_number", p.get("curveNumber", trace))
        if curve == trace and idx is not None and 0 <= int(idx) < len(cells):
            return cells[int(idx)]
    return None


def _hover_data(cm: np.ndarray, class_names: Sequence[str], classes: list[int]) -> list[list]:
    """Return per shown cell [true name, predicted name, count, row share, column share,
    the noun for the count]."""
    row_share, col_share = normalize_cm(cm, "true"), normalize_cm(cm, "pred")
    return [
        [
            plot_text(class_names[i]),
            plot_text(class_names[j]),
            int(cm[i, j]),
            row_share[i, j],
            col_share[i, j],
            "image" if cm[i, j] == 1 else "images",
        ]
        for i, j in overlay_cells(classes)
    ]


def tick_text(name: object, *, max_chars: int = TICK_CHARS) -> str:
    """Return a class name short enough for an axis tick: cut to ``max_chars`` with "…"."""
    name = str(name)
    return name if len(name) <= max_chars else name[: max_chars - 1] + "…"


@dataclass(frozen=True)
class Matrix:
    """What a renderer draws: the counts of every class, their names, the classes shown
    (indices, in order), the normalisation and the cell to outline."""

    cm: np.ndarray  # (n, n) int64 counts; rows true, columns predicted
    class_names: Sequence[str]
    shown: list[int]
    normalize: Normalize
    highlight: tuple[int, int] | None


@dataclass(frozen=True)
class MatrixFigure:
    """The drawn matrix and its click targets (for :func:`selected_cell`)."""

    figure: go.Figure
    cells: list[tuple[int, int]]  # the (true_idx, pred_idx) of each click target, point order
    trace: int  # the curve number of the click targets
    image: bool  # drawn as one image (core.figures.confusion_image), not a heatmap


def matrix_figure(
    cm: Any,
    class_names: Sequence[str],
    *,
    normalize: Normalize = None,
    classes: Sequence[int] | None = None,
    highlight: tuple[int, int] | None = None,
    image: bool | None = None,
) -> MatrixFigure:
    """Return the confusion matrix drawn (rows true, columns predicted, Blues): the one entry
    point to both renderers.

    cm: (n, n) counts; classes: the class indices to show (default all; ValueError when
    empty), percentages stay relative to whole classes; highlight: a (true_idx, pred_idx) cell
    to outline; image: draw one image with the most frequent mistakes as click targets
    (core.figures.confusion_image), default from ``IMAGE_FROM`` shown classes on; else a
    heatmap whose every cell is a click target.
    """
    cm = np.asarray(cm, dtype=np.int64)
    shown = list(range(len(cm))) if classes is None else [int(c) for c in classes]
    if not shown:
        raise ValueError("classes is empty: choose at least one class to show.")
    m = Matrix(cm, class_names, shown, normalize, highlight)
    if image is None:
        image = len(shown) >= confusion_image.IMAGE_FROM
    if image:
        cells = confusion_image.target_cells(cm, shown)
        figure = confusion_image.image_figure(m, cells)
        return MatrixFigure(figure, cells, confusion_image.TARGET_TRACE, image=True)
    return MatrixFigure(_heatmap(m), overlay_cells(shown), OVERLAY_TRACE, image=False)


def _heatmap(m: Matrix) -> go.Figure:
    """Return the heatmap of ``m``. Trace 1 is a transparent marker per shown cell in
    :func:`overlay_cells` order, the click targets that Streamlit can select (heatmap cells
    themselves cannot be selected)."""
    cm, class_names, shown, normalize = m.cm, m.class_names, m.shown, m.normalize
    sub = np.ix_(shown, shown)
    names = [plot_text(class_names[c]) for c in shown]
    k = len(shown)
    z = normalize_cm(cm, normalize)[sub]
    text = cell_text(cm, normalize)[sub] if k <= TEXT_MAX_CLASSES else None
    cell_px = 56 if k <= 12 else 32 if k <= TEXT_MAX_CLASSES else max(8, 900 // k)
    height = min(1400, max(380, cell_px * k + 170))
    hover = (
        "<b>True %{customdata[0]} → predicted %{customdata[1]}</b><br>"
        "%{customdata[2]:,} %{customdata[5]}<br>"
        "%{customdata[3]:.1%} of true %{customdata[0]} (row)<br>"
        "%{customdata[4]:.1%} of predicted %{customdata[1]} (column)<br>"
        "<i>click to see the images</i><extra></extra>"
    )
    zmax = 1.0 if normalize else max(1, int(z.max()))
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            text=text,
            texttemplate="%{text}" if text is not None else None,
            textfont={"size": 13 if k <= 12 else 10},
            colorscale="Blues",
            zmin=0,
            zmax=zmax,
            xgap=1,
            ygap=1,
            hoverinfo="skip",
            colorbar={
                "title": {"text": "images" if normalize is None else f"share of {normalize}"},
                "tickformat": ".0%" if normalize else ",d",
                "thickness": 14,
            },
        )
    )
    cells = overlay_cells(shown)
    fig.add_trace(
        go.Scatter(
            x=[plot_text(class_names[j]) for _, j in cells],
            y=[plot_text(class_names[i]) for i, _ in cells],
            mode="markers",
            marker={"size": max(6, cell_px - 2), "symbol": "square", "opacity": 0},
            selected={"marker": {"opacity": 0}},
            unselected={"marker": {"opacity": 0}},
            customdata=_hover_data(cm, class_names, shown),
            hovertemplate=hover,
            showlegend=False,
        )
    )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        plot_bgcolor="white",
        hoverlabel={"bgcolor": "white", "bordercolor": "#0b3d91", "font_size": 13},
        clickmode="event+select",
        dragmode=False,
        shapes=_outlines(shown, m.highlight),
    )
    # Full names stay the categories (hover, clicks); the ticks show them cut to TICK_CHARS.
    # Few classes: plotly tilts the labels only when they would overlap; many: always.
    ticks = {"tickvals": names, "ticktext": [plot_text(tick_text(class_names[c])) for c in shown]}
    fig.update_xaxes(
        title={"text": "Predicted class", "font": {"size": 14}},
        type="category",
        side="top",
        tickangle=-45 if k > 12 else None,  # None: plotly's auto
        automargin=True,
        **ticks,
        tickfont={"size": 12 if k <= 12 else 10 if k <= TEXT_MAX_CLASSES else 8},
        showticklabels=k <= 60,
        showgrid=False,
    )
    fig.update_yaxes(
        title={"text": "True class", "font": {"size": 14}},
        type="category",
        autorange="reversed",
        automargin=True,
        **ticks,
        tickfont={"size": 12 if k <= 12 else 10 if k <= TEXT_MAX_CLASSES else 8},
        showticklabels=k <= 60,
        showgrid=False,
    )
    return fig


def _outlines(shown: list[int], highlight: tuple[int, int] | None) -> list[dict[str, Any]]:
    """Return the shapes that outline the diagonal (correct) cells and the selected cell."""
    pos = {c: p for p, c in enumerate(shown)}
    k = len(shown)
    if k <= TEXT_MAX_CLASSES:
        shapes = [_box(p, p, color="#0b3d91", width=1.5, dash="dot") for p in range(k)]
    else:  # cells too small to outline one by one: one dotted line along the diagonal
        line = {"color": "#0b3d91", "width": 1, "dash": "dot"}
        shapes = [{"type": "line", "x0": -0.5, "y0": -0.5, "x1": k - 0.5, "y1": k - 0.5,
                   "xref": "x", "yref": "y", "line": line, "layer": "above"}]  # fmt: skip
    if highlight is not None and highlight[0] in pos and highlight[1] in pos:
        shapes.append(_box(pos[highlight[0]], pos[highlight[1]], color="#e8590c", width=3))
    return shapes


def _box(row: int, col: int, *, color: str, width: float, dash: str = "solid") -> dict[str, Any]:
    return {
        "type": "rect",
        "xref": "x",
        "yref": "y",
        "x0": col - 0.5,
        "x1": col + 0.5,
        "y0": row - 0.5,
        "y1": row + 0.5,
        "line": {"color": color, "width": width, "dash": dash},
        "fillcolor": "rgba(0,0,0,0)",
        "layer": "above",
    }
