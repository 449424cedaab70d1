"""The confusion matrix of a large label set drawn as one image, light enough to send.

From :data:`IMAGE_FROM` shown classes on, a plotly Heatmap with one hover/click target per
cell grows with the square of the classes (1,000 classes: a million cells, tens of MB of
JSON). Here the matrix is colored in numpy and sent as a single PNG (a ``go.Image`` with a
data URI, as ``px.imshow(binary_string=True)`` does): a 1,000 x 1,000 matrix is a few
hundred KB whatever its counts. The path to the pixels is kept by a transparent marker on
each of the :data:`TARGETS_MAX` most frequent mistakes (hover names the pair, a click opens
its images, as in the small heatmap) and by the class search and pairs table on the page.

Colors follow a log scale (``log1p``) because at this size a confusion of a few images sits
next to a diagonal of hundreds; a linear scale would leave every mistake white.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import sequential

from core.analysis.confusion import Normalize, normalize_cm
from core.figures.theme import plot_text

if TYPE_CHECKING:  # core.figures.confusion draws through this module: no import at run time
    from core.figures.confusion import Matrix

IMAGE_FROM = 100  # from this many shown classes on, the heatmap is an image
TARGETS_MAX = 2_000  # most frequent off-diagonal cells that get a hover/click target
TARGET_TRACE = 2  # curve number of the click targets (0: image, 1: colorbar carrier)
SHARE_GAIN = 100.0  # shares are drawn as log1p(100 * share): 1% is a visible tint
MIN_TICK_GAP = 0.05  # closest two colorbar labels may be, as a share of its length (~25 px)
FLOOR = 0.3  # the lightest color of a non-empty cell: one image must survive the browser
# shrinking a 1,000-pixel image into a 500-pixel plot (empty cells stay white)


def _lut() -> np.ndarray:
    """Return the (256, 3) uint8 Blues colors, the same scale as the small heatmap."""
    stops = np.array(
        [[int(v) for v in c[4:-1].split(",")] for c in sequential.Blues], dtype=np.float64
    )
    pos = np.linspace(0, 1, len(stops))
    x = np.linspace(0, 1, 256)
    return np.stack([np.interp(x, pos, stops[:, ch]) for ch in range(3)], axis=1).astype(np.uint8)


LUT = _lut()


def intensity(z: Any, normalize: Normalize, zmax: float) -> np.ndarray:
    """Return the color position in [0, 1] of each value: 0 for empty cells, else from
    FLOOR up by log1p of counts over log1p of ``zmax`` (log1p(100 x share) over log1p(100)
    for shares)."""
    z = np.asarray(z, dtype=np.float64)
    if normalize:
        scaled = np.log1p(SHARE_GAIN * np.clip(z, 0, 1)) / np.log1p(SHARE_GAIN)
    else:
        scaled = np.log1p(np.clip(z, 0, None)) / np.log1p(max(zmax, 1.0))
    return np.where(z > 0, FLOOR + (1 - FLOOR) * scaled, 0.0)


def png_data_uri(z01: np.ndarray) -> str:
    """Return a (rows, cols) array of positions in [0, 1] as a Blues PNG data URI."""
    rgb = LUT[np.rint(np.clip(z01, 0, 1) * 255).astype(np.uint8)]
    out = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def target_cells(
    cm: Any, classes: Sequence[int], *, top: int = TARGETS_MAX
) -> list[tuple[int, int]]:
    """Return the (true_idx, pred_idx) of the click targets: the ``top`` largest off-diagonal
    cells with images among the shown ``classes``, largest first (ties in class order)."""
    cm = np.asarray(cm, dtype=np.int64)
    shown = np.asarray(classes, dtype=np.int64)
    sub = cm[np.ix_(shown, shown)].copy()
    np.fill_diagonal(sub, 0)
    ti, pj = np.nonzero(sub)
    order = np.argsort(-sub[ti, pj], kind="stable")[:top]
    return [(int(shown[i]), int(shown[j])) for i, j in zip(ti[order], pj[order], strict=True)]


def _ticks(normalize: Normalize, zmax: float) -> tuple[list[float], list[str]]:
    """Return colorbar tick positions (in [0, 1]) and labels for the log scale."""
    if normalize:
        values = [0.0, 0.01, 0.05, 0.2, 1.0]
        return [float(intensity(v, normalize, 1)) for v in values], [f"{v:.0%}" for v in values]
    values = [v for v in (0, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000) if v <= zmax]
    if zmax not in values:
        values.append(int(zmax))
    at = [float(intensity(v, None, zmax)) for v in values]
    if len(at) > 2 and at[-1] - at[-2] < MIN_TICK_GAP:  # "30" printed over the top's "31"
        del values[-2], at[-2]
    return at, [f"{v:,}" for v in values]


def image_figure(m: Matrix, cells: Sequence[tuple[int, int]]) -> go.Figure:
    """Return the confusion matrix ``m`` as one image (rows true, columns predicted, log
    Blues; highlight: the cell to ring); drawn through
    :func:`core.figures.confusion.matrix_figure`.

    Trace ``TARGET_TRACE`` holds a transparent marker per cell of ``cells`` (the
    :func:`target_cells`), in that order.
    """
    cm, class_names, shown, normalize = m.cm, m.class_names, m.shown, m.normalize
    k = len(shown)
    pos = {c: p for p, c in enumerate(shown)}
    z = normalize_cm(cm, normalize)[np.ix_(shown, shown)]
    zmax = 1.0 if normalize else float(max(1, z.max()))
    fig = go.Figure(go.Image(source=png_data_uri(intensity(z, normalize, zmax)), hoverinfo="skip"))
    tickvals, ticktext = _ticks(normalize, zmax)
    # The image has no colorbar of its own: an invisible marker carries one for the scale.
    fig.add_trace(
        go.Scatter(
            x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
            marker={"color": [0, 1], "colorscale": "Blues", "cmin": 0, "cmax": 1,
                    "showscale": True,
                    "colorbar": {"title": {"text": "images" if normalize is None
                                           else f"share of {normalize}"},
                                 "tickvals": tickvals, "ticktext": ticktext, "thickness": 14}},
        )
    )  # fmt: skip
    row_share, col_share = normalize_cm(cm, "true"), normalize_cm(cm, "pred")
    fig.add_trace(
        go.Scatter(
            x=np.array([pos[j] for _, j in cells], dtype=np.int64),
            y=np.array([pos[i] for i, _ in cells], dtype=np.int64),
            mode="markers",
            marker={"size": 7, "symbol": "square", "opacity": 0},
            selected={"marker": {"opacity": 0}},
            unselected={"marker": {"opacity": 0}},
            # An object array, not nested lists: plotly validates lists element by element.
            # Names escaped as the small heatmap's hover (plotly reads HTML in hover text).
            customdata=np.array(
                [[plot_text(class_names[i]), plot_text(class_names[j]), int(cm[i, j]),
                  round(row_share[i, j], 4), round(col_share[i, j], 4)] for i, j in cells]
                or np.zeros((0, 5)),
                dtype=object,
            ),
            hovertemplate=(
                "<b>True %{customdata[0]} → predicted %{customdata[1]}</b><br>"
                "%{customdata[2]:,} images<br>"
                "%{customdata[3]:.1%} of true %{customdata[0]} (row)<br>"
                "%{customdata[4]:.1%} of predicted %{customdata[1]} (column)<br>"
                "<i>click to see the images</i><extra></extra>"
            ),
            showlegend=False,
        )
    )  # fmt: skip
    shapes = []
    if m.highlight is not None and m.highlight[0] in pos and m.highlight[1] in pos:
        r, c = pos[m.highlight[0]], pos[m.highlight[1]]
        pad = max(0.5, k / 120)  # a one-pixel cell needs a ring a few pixels wide to be seen
        shapes.append(
            {"type": "rect", "xref": "x", "yref": "y", "x0": c - pad, "x1": c + pad,
             "y0": r - pad, "y1": r + pad, "line": {"color": "#e8590c", "width": 2.5},
             "fillcolor": "rgba(0,0,0,0)", "layer": "above"}
        )  # fmt: skip
    axis = {"showgrid": False, "zeroline": False, "showticklabels": False}
    fig.update_layout(
        height=640,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        plot_bgcolor="white",
        hoverlabel={"bgcolor": "white", "bordercolor": "#0b3d91", "font_size": 13},
        clickmode="event+select",
        dragmode="zoom",
        shapes=shapes,
    )
    fig.update_xaxes(
        **axis, title={"text": f"Predicted class ({k} shown, class order)", "font": {"size": 14}},
        side="top", range=[-0.5, k - 0.5], constrain="domain",
    )  # fmt: skip
    fig.update_yaxes(
        **axis, title={"text": "True class", "font": {"size": 14}},
        range=[k - 0.5, -0.5], scaleanchor="x", constrain="domain",
    )  # fmt: skip
    return fig
