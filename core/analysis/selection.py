"""The points a plotly box or lasso selection encloses, over every point (drawn or not).

A Streamlit ``st.plotly_chart(on_select="rerun")`` event carries the selection's shapes in
data coordinates: ``selection["box"]`` is a list of ``{"x": [x0, x1], "y": [y0, y1], ...}``
and ``selection["lasso"]`` a list of ``{"x": [x...], "y": [y...], ...}`` polygons. The map
draws only a sample of the background, so the selection is recomputed here from the shapes
over all coordinates instead of read from the event's drawn ``points``. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def in_box(x: Any, y: Any, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
    """Return the (n,) bool mask of points inside the box spanning ``xs`` and ``ys`` (edges
    included; the corners may come in either order)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    x0, x1 = sorted((float(xs[0]), float(xs[-1])))
    y0, y1 = sorted((float(ys[0]), float(ys[-1])))
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def in_polygon(x: Any, y: Any, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
    """Return the (n,) bool mask of points inside the closed polygon (xs, ys), by the
    even-odd rule (a ray to the right crosses its edges an odd number of times)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    px, py = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    inside = np.zeros(x.shape, dtype=bool)
    if len(px) < 3:
        return inside
    qx, qy = np.roll(px, -1), np.roll(py, -1)
    for ax, ay, bx, by in zip(px, py, qx, qy, strict=True):
        straddles = (ay > y) != (by > y)
        if not straddles.any():
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            cross_x = ax + (y - ay) * (bx - ax) / (by - ay)
        inside ^= straddles & (x < cross_x)
    return inside


def selected(x: Any, y: Any, selection: Mapping[str, Any] | None) -> np.ndarray:
    """Return the (n,) bool mask of points inside any box or lasso of ``selection`` (the
    ``selection`` dict of a plotly chart event; None or no shape selects nothing)."""
    x = np.asarray(x, dtype=float)
    mask = np.zeros(x.shape, dtype=bool)
    if not selection:
        return mask
    for box in selection.get("box") or ():
        if box.get("x") and box.get("y"):
            mask |= in_box(x, y, box["x"], box["y"])
    for lasso in selection.get("lasso") or ():
        if lasso.get("x") and lasso.get("y"):
            mask |= in_polygon(x, y, lasso["x"], lasso["y"])
    return mask


def has_shape(selection: Mapping[str, Any] | None) -> bool:
    """Return True when ``selection`` holds at least one box or lasso."""
    return bool(selection) and bool(selection.get("box") or selection.get("lasso"))  # type: ignore[union-attr]
