"""The Embedding map and Failure clusters pages through AppTest: a synthetic box / lasso
selection event lists exactly the images inside it (counted independently from the cached
map file with pandas), with their accuracy (scikit-learn); the cluster cards' numbers."""

from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score
from streamlit.testing.v1 import AppTest

from core.analysis import failure_clusters as fc
from core.images import embeddings
from core.runs import Run
from tests.app.conftest import open_page

pytestmark = pytest.mark.slow

ZOOM = "em_gallery-zoom-"
LINE = re.compile(r"^\*\*Your selection: ([\d,]+) images, accuracy ([\d.]+)%\*\* \(([\d,]+) mist")


def _settle(at: AppTest) -> AppTest:
    """Rerun while the shared task (embeddings, map, clusters) is still computing."""
    for _ in range(120):
        if not len(at.get("progress")):
            return at
        time.sleep(0.5)
        at.run()
    raise AssertionError("the page kept computing")


def _select(at: AppTest, selection: dict) -> AppTest:
    at.session_state["em_map"] = {"selection": {"points": [], "box": [], "lasso": [], **selection}}
    at.run()
    assert not at.exception, at.exception
    return at


def _line(at: AppTest) -> tuple[int, float, int]:
    found = [m for e in at.markdown if (m := LINE.match(e.value))]
    assert len(found) == 1, [e.value for e in at.markdown]
    m = found[0]
    return int(m[1].replace(",", "")), float(m[2]), int(m[3].replace(",", ""))


def _points(run: Run) -> pd.DataFrame:
    coords = np.load(f"{run.path}/projection-pca-0.npy")
    df = run.predictions()[["split", "y_true", "y_pred"]].copy()
    df["x"], df["y"] = coords[:, 0], coords[:, 1]
    return df


def test_box_and_lasso_list_exactly_the_images_inside(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["overfit"]
    at = _settle(open_page("embedding_map", run))
    assert not at.exception, at.exception
    assert any("Draw a box or a lasso" in c.value for c in at.caption)
    pts = _points(run)
    x0, x1 = np.nanpercentile(pts["x"], [20, 60])
    y0, y1 = np.nanpercentile(pts["y"], [10, 70])
    _select(at, {"box": [{"x": [float(x1), float(x0)], "y": [float(y0), float(y1)]}]})
    inside = pts.query("@x0 <= x <= @x1 and @y0 <= y <= @y1")
    n, acc, wrong = _line(at)
    assert n == len(inside) > 20
    assert acc == round(100 * accuracy_score(inside["y_true"], inside["y_pred"]), 1)
    assert wrong == int((inside["y_true"] != inside["y_pred"]).sum())
    shown = [int(b.key.removeprefix(ZOOM)) for b in at.button if (b.key or "").startswith(ZOOM)]
    assert set(shown) <= set(inside.index) and len(shown) == min(len(inside), 24)
    # mistakes first
    first = inside.loc[shown]
    assert (first["y_true"] != first["y_pred"]).tolist() == sorted(
        (first["y_true"] != first["y_pred"]).tolist(), reverse=True
    )

    # a lasso: the triangle (x0, y0), (x1, y0), (x0, y1); inside when below the hypotenuse
    tri = {"x": [float(x0), float(x1), float(x0)], "y": [float(y0), float(y0), float(y1)]}
    _select(at, {"lasso": [tri]})
    u, v = (pts["x"] - x0) / (x1 - x0), (pts["y"] - y0) / (y1 - y0)
    inside = pts[(u > 0) & (v > 0) & (u + v < 1)]
    assert _line(at)[0] == len(inside) > 5


def test_failure_cluster_cards(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["overfit"]
    at = _settle(open_page("failure_clusters", run))
    assert not at.exception, at.exception
    df = run.predictions()
    rows = np.flatnonzero(df["split"].to_numpy() == "test")
    emb = embeddings.run_embeddings(run)[rows]
    k = fc.default_k(len(rows), len(run.class_names))
    assert at.number_input(key="fc_k").value == k
    labels = fc.cluster(emb, k=k, seed=0)
    y_true, y_pred = df["y_true"].to_numpy()[rows], df["y_pred"].to_numpy()[rows]
    worst = fc.failure_clusters(emb, labels, y_true, y_pred)[0]
    inside = labels == worst.label
    acc_in = accuracy_score(y_true[inside], y_pred[inside])
    acc_out = accuracy_score(y_true[~inside], y_pred[~inside])
    head = (
        f"#### #1 · {inside.sum():,} images · accuracy {acc_in:.0%} "
        f"(rest of the split {acc_out:.0%})"
    )
    assert head in [m.value for m in at.markdown]
    assert acc_in < acc_out
    assert any(m.value.startswith("The worst failure cluster holds") for m in at.markdown)
