"""The Embedding map in a real browser: a lasso drawn with the mouse lists exactly the images
inside it. The polygon plotly keeps (data coordinates, in its layout's selections) is read
from the page, and the points inside are counted independently (a convex polygon: on one
side of every edge) over the run's cached map file."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from core.runs import RunStore
from tests.browser.conftest import WAIT_MS, Server, idle
from tests.browser.test_e2e import shoot

pytestmark = [pytest.mark.browser, pytest.mark.slow]
COUNT = re.compile(r"Your selection: ([\d,]+) images, accuracy ([\d.]+)%")


def test_lasso_lists_the_images_inside(server: Server, page) -> None:  # noqa: ANN001
    run = next(
        r
        for r in RunStore(server.runs_dir).list()
        if r.meta["checkpoint"]["name"].startswith("overfit")
    )
    page.goto(f"{server.url}/embedding_map?run={run.run_id}")
    page.get_by_text("Draw a box or a lasso").wait_for(timeout=WAIT_MS)
    idle(page)
    area = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    # an anticlockwise (on screen: y grows down) 16-gon around the map's left-middle
    cx, cy = area["x"] + 0.35 * area["width"], area["y"] + 0.5 * area["height"]
    rx, ry = 0.12 * area["width"], 0.2 * area["height"]
    angles = [2 * math.pi * i / 16 for i in range(17)]
    screen = [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]
    page.mouse.move(*screen[0])
    page.mouse.down()
    for q in screen[1:]:  # one move per vertex: plotly restyles every point on each move
        page.mouse.move(*q)
    page.mouse.up()
    line = page.get_by_text(COUNT)
    line.wait_for(timeout=WAIT_MS)
    idle(page)
    shown = int(COUNT.search(line.inner_text())[1].replace(",", ""))

    # the lasso as plotly keeps it (data coordinates: "M x,y L x,y ... Z"), what it sent
    path = page.evaluate(
        "() => { const l = document.querySelector('.js-plotly-plot').layout;"
        " return (l.selections || []).map(s => s.path).join(' '); }"
    )
    nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", path)]
    px, py = nums[0::2], nums[1::2]
    coords = np.load(f"{run.path}/projection-pca-0.npy")
    x, y = coords[:, 0].astype(float), coords[:, 1].astype(float)
    ax, ay = np.array(px), np.array(py)
    step = np.hypot(np.roll(ax, -1) - ax, np.roll(ay, -1) - ay) > 0  # drop repeated vertices
    ax, ay = ax[step], ay[step]
    bx, by = np.roll(ax, -1), np.roll(ay, -1)
    cross = (bx - ax)[:, None] * (y - ay[:, None]) - (by - ay)[:, None] * (x - ax[:, None])
    inside = (cross < 0).all(axis=0) | (cross > 0).all(axis=0)  # either orientation
    # a point within a hair of an edge may fall either way (pixel-rounded vertices)
    span = float(np.nanmax(x) - np.nanmin(x))
    margin = np.abs(cross).min(axis=0) / np.hypot(bx - ax, by - ay).max()
    near_edge = int((margin < 1e-6 * span).sum())
    print(f"lasso: page {shown}, independent count {int(inside.sum())}, near an edge {near_edge}")
    assert shown > 20
    assert abs(shown - int(inside.sum())) <= near_edge, (shown, int(inside.sum()), near_edge)
    shoot(page, "embedding-map")  # `make screenshots`: the README's picture
