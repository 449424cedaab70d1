"""Confusion-matrix analysis that keeps the path to the pixels, and its plotly figure.

:class:`ConfusionResults` holds one split's counts together with the prediction rows behind
every cell (as FiftyOne's results do), so any count on screen can be opened as its images.
Normalised views, the ranked most-confused pairs and the default class filter for large
label sets are plain functions over the count matrix; :func:`heatmap_figure` draws it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.analysis import metrics
from core.figures.charts import plot_text

Normalize = Literal["true", "pred"] | None
# The heatmap's views: name -> (what the selector says, the normalisation it applies).
VIEWS: dict[str, tuple[str, Normalize]] = {
    "count": ("Counts", None),
    "true": ("% of true class (recall)", "true"),
    "pred": ("% of predicted class (precision)", "pred"),
}
PAIRS_FROM = 30  # from this many classes on, the heatmap opens on the most confused classes
TEXT_MAX_CLASSES = 30  # above this, per-cell numbers are unreadable: hover only
OVERLAY_TRACE = 1  # curve number of the transparent click targets in heatmap_figure
TICK_CHARS = 18  # longer class names are cut on the axes ("…"); the cell hover shows them whole
PAIR_COLUMNS = ["true", "predicted", "count", "share_of_true", "true_idx", "pred_idx"]


@dataclass(frozen=True)
class ConfusionResults:
    """One split's confusion matrix and the prediction rows behind each of its cells."""

    class_names: tuple[str, ...]  # label order of both axes
    cm: np.ndarray  # (n_classes, n_classes) int64 counts; rows true, columns predicted
    y_true: np.ndarray  # (n,) int64 class indices
    y_pred: np.ndarray  # (n,) int64 class indices
    rows: np.ndarray  # (n,) int64 row labels of the samples, e.g. run.predictions().index

    @property
    def n_classes(self) -> int:
        """Return the number of classes (the matrix side)."""
        return len(self.class_names)

    def cell_rows(self, true_idx: int, pred_idx: int) -> np.ndarray:
        """Return the row labels of the samples of true class ``true_idx`` predicted
        ``pred_idx``, in their original order; its length is ``cm[true_idx, pred_idx]``."""
        for name, idx in (("true_idx", true_idx), ("pred_idx", pred_idx)):
            if not 0 <= idx < self.n_classes:
                raise ValueError(
                    f"{name} must be a class index in [0, {self.n_classes}), got {idx}."
                )
        return self.rows[(self.y_true == true_idx) & (self.y_pred == pred_idx)]


def confusion_results(
    y_true: Any, y_pred: Any, *, class_names: Sequence[str], rows: Any = None
) -> ConfusionResults:
    """Return the confusion results of one split.

    y_true, y_pred: (n,) class indices into class_names; rows: (n,) labels that identify each
    sample (default 0..n-1), e.g. ``df.index`` of the split's slice of ``run.predictions()``.
    """
    n_classes = len(class_names)
    cm = metrics.confusion_matrix(y_true, y_pred, n_classes=n_classes)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    rows = np.arange(len(y_true)) if rows is None else np.asarray(rows, dtype=np.int64)
    if rows.shape != y_true.shape:
        raise ValueError(
            f"rows must label each of the {len(y_true)} samples, got shape {rows.shape}. "
            "Pass the index of the predictions the labels came from."
        )
    return ConfusionResults(tuple(str(c) for c in class_names), cm, y_true, y_pred, rows)


def split_results(
    predictions: pd.DataFrame, split: str, class_names: Sequence[str]
) -> ConfusionResults:
    """Return the :class:`ConfusionResults` of ``split`` from a run's predictions table,
    keeping the table's index as the rows behind each cell."""
    part = predictions[predictions["split"] == split]
    return confusion_results(
        part["y_true"].to_numpy(),
        part["y_pred"].to_numpy(),
        class_names=class_names,
        rows=part.index.to_numpy(),
    )


def normalize_cm(cm: Any, normalize: Normalize = None) -> np.ndarray:
    """Return ``cm`` as float64: raw counts, or divided by the true-class totals (``"true"``,
    rows sum to 1) or the predicted-class totals (``"pred"``, columns sum to 1).

    An empty row or column stays 0.0, as scikit-learn's ``confusion_matrix(normalize=...)``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if normalize is None:
        return cm
    if normalize not in ("true", "pred"):
        raise ValueError(f"normalize must be None, 'true' or 'pred', got {normalize!r}.")
    totals = cm.sum(axis=1, keepdims=True) if normalize == "true" else cm.sum(axis=0)
    return np.divide(cm, totals, out=np.zeros_like(cm), where=totals != 0)


def most_confused_pairs(
    cm: Any, class_names: Sequence[str], *, top: int | None = None
) -> pd.DataFrame:
    """Return the off-diagonal cells with at least one sample, most frequent first.

    A DataFrame with columns true, predicted (names), count, share_of_true (count over the
    true class's support) and true_idx, pred_idx; ties keep the class order. ``top`` keeps the
    first rows only.
    """
    cm = np.asarray(cm, dtype=np.int64)
    if cm.shape != (len(class_names), len(class_names)):
        raise ValueError(
            f"cm is {cm.shape} but there are {len(class_names)} class names. "
            "Pass the class names of the matrix's axes."
        )
    off = cm.copy()
    np.fill_diagonal(off, 0)
    ti, pi = np.nonzero(off)  # row-major: class order breaks ties below
    counts = off[ti, pi]
    order = np.argsort(-counts, kind="stable")
    if top is not None:
        order = order[:top]
    ti, pi, counts = ti[order], pi[order], counts[order]
    support = cm.sum(axis=1)
    return pd.DataFrame(
        {
            "true": [str(class_names[i]) for i in ti],
            "predicted": [str(class_names[j]) for j in pi],
            "count": counts.astype(np.int64),
            "share_of_true": counts / support[ti] if len(ti) else np.zeros(0),
            "true_idx": ti.astype(np.int64),
            "pred_idx": pi.astype(np.int64),
        },
        columns=PAIR_COLUMNS,
    )


def focus_classes(cm: Any, *, n_pairs: int = 10) -> list[int]:
    """Return the class indices in the ``n_pairs`` most confused pairs, in class order
    (every class when nothing is confused), the default class filter for large label sets."""
    cm = np.asarray(cm)
    pairs = most_confused_pairs(cm, [str(i) for i in range(len(cm))], top=n_pairs)
    if pairs.empty:
        return list(range(len(cm)))
    return sorted(set(pairs["true_idx"]) | set(pairs["pred_idx"]))


def _percent(share: float) -> str:
    if share == 0:
        return "0%"
    if share < 0.01:
        return "<1%"
    if share > 0.99 and share < 1:
        return ">99%"
    return f"{share:.0%}"


def cell_text(cm: Any, normalize: Normalize = None) -> np.ndarray:
    """Return the (n, n) labels written in the cells: counts, or percentages of the chosen
    normalisation; empty cells are blank so the mistakes stand out."""
    cm = np.asarray(cm, dtype=np.int64)
    shares = normalize_cm(cm, normalize)
    text = np.full(cm.shape, "", dtype=object)
    for i, j in zip(*np.nonzero(cm), strict=True):
        text[i, j] = str(cm[i, j]) if normalize is None else _percent(shares[i, j])
    return text


def overlay_cells(classes: Sequence[int]) -> list[tuple[int, int]]:
    """Return the (true_idx, pred_idx) of each click target of :func:`heatmap_figure`, in
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


def heatmap_figure(
    cm: Any,
    class_names: Sequence[str],
    *,
    normalize: Normalize = None,
    classes: Sequence[int] | None = None,
    highlight: tuple[int, int] | None = None,
) -> go.Figure:
    """Return the confusion-matrix heatmap (rows true, columns predicted, Blues).

    cm: (n, n) counts; classes: the class indices to show (default all), percentages stay
    relative to whole classes; highlight: a (true_idx, pred_idx) cell to outline. Trace 1 is a
    transparent marker per shown cell in :func:`overlay_cells` order, the click targets that
    Streamlit can select (heatmap cells themselves cannot be selected).
    """
    cm = np.asarray(cm, dtype=np.int64)
    shown = list(range(len(cm))) if classes is None else [int(c) for c in classes]
    if not shown:
        raise ValueError("classes is empty: choose at least one class to show.")
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
        shapes=_outlines(shown, highlight),
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
