"""Embedding map: the selection maths against hand counts and an independent half-plane test,
the projection against numpy's SVD and deterministic for a seed, the drawn sample, the figure,
and the per-run projection cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.analysis import projection, selection
from core.figures.embedding_map import map_figure
from core.images import embedding_map, embeddings


def _grid() -> tuple[np.ndarray, np.ndarray]:
    gx, gy = np.meshgrid(np.arange(10), np.arange(10))
    return gx.ravel().astype(float), gy.ravel().astype(float)


def test_box_selects_exactly_the_points_inside_edges_included() -> None:
    x, y = _grid()
    # x in [2, 4] (3 columns) and y in [5, 6] (2 rows): 6 points, corners in either order
    mask = selection.selected(x, y, {"box": [{"x": [4.0, 2.0], "y": [5.0, 6.0]}]})
    assert sorted(zip(x[mask], y[mask], strict=True)) == [
        (a, b) for a in (2.0, 3.0, 4.0) for b in (5.0, 6.0)
    ]


def test_lasso_equals_an_independent_convex_half_plane_test() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, 5000), rng.uniform(-1, 1, 5000)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
    px, py = 0.8 * np.cos(angles), 0.6 * np.sin(angles)  # a convex polygon, anticlockwise
    mask = selection.selected(x, y, {"lasso": [{"x": px.tolist(), "y": py.tolist()}]})
    # inside a convex anticlockwise polygon: left of (or on) every edge
    qx, qy = np.roll(px, -1), np.roll(py, -1)
    cross = (qx - px)[:, None] * (y - py[:, None]) - (qy - py)[:, None] * (x - px[:, None])
    expected = (cross > 0).all(axis=0)
    assert mask.sum() > 100
    np.testing.assert_array_equal(mask, expected)


def test_concave_lasso_and_union_of_shapes_hand_counted() -> None:
    x, y = _grid()
    # an L shape: [0,4]x[0,1] plus [0,1]x[0,4] (corners at .5 so no point sits on an edge)
    lx = [-0.5, 4.5, 4.5, 1.5, 1.5, -0.5]
    ly = [-0.5, -0.5, 1.5, 1.5, 4.5, 4.5]
    mask = selection.in_polygon(x, y, lx, ly)
    assert mask.sum() == 10 + 6  # 5x2 bottom bar + 2x3 on top of its left end
    assert not mask[(x == 3) & (y == 3)].any()  # the notch of the L
    both = selection.selected(
        x, y, {"lasso": [{"x": lx, "y": ly}], "box": [{"x": [8, 9], "y": [8, 9]}]}
    )
    assert both.sum() == 16 + 4


@pytest.mark.parametrize("event", [None, {}, {"points": [], "box": [], "lasso": []}])
def test_no_shape_selects_nothing(event: dict | None) -> None:
    x, y = _grid()
    assert not selection.selected(x, y, event).any()
    assert not selection.has_shape(event)


def test_pca_matches_numpy_svd_up_to_sign_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(300, 12)).astype(np.float32) * np.linspace(3, 0.1, 12)
    emb[7] = 0  # an unreadable image
    coords = projection.project(emb, method="pca", seed=3)
    assert coords.dtype == np.float32 and coords.shape == (300, 2)
    assert np.isnan(coords[7]).all()
    ok = np.ones(300, bool)
    ok[7] = False
    centred = emb[ok] - emb[ok].mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    ref = centred @ vt[:2].T
    for axis in range(2):
        assert np.allclose(np.abs(coords[ok, axis]), np.abs(ref[:, axis]), atol=1e-3)
    np.testing.assert_array_equal(coords, projection.project(emb, method="pca", seed=3))


def test_tsne_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(60, 5)).astype(np.float32)
    a = projection.project(emb, method="tsne", seed=1)
    np.testing.assert_array_equal(a, projection.project(emb, method="tsne", seed=1))
    assert np.isfinite(a).all() and a.std(axis=0).min() > 0  # spread, not collapsed


def test_unknown_method_says_what_exists() -> None:
    with pytest.raises(ValueError, match="use one of pca, tsne, umap"):
        projection.project(np.ones((4, 3)), method="mds")


def test_drawn_rows_keep_every_mistake_and_a_seeded_sample() -> None:
    wrong = np.zeros(50_000, bool)
    wrong[::97] = True
    drawn = projection.drawn_rows(wrong, max_drawn=1000, seed=4)
    assert set(np.flatnonzero(wrong)) <= set(drawn.tolist())
    assert len(drawn) == wrong.sum() + 1000
    np.testing.assert_array_equal(drawn, projection.drawn_rows(wrong, max_drawn=1000, seed=4))
    small = projection.drawn_rows(wrong[:500], max_drawn=1000)
    np.testing.assert_array_equal(small, np.arange(500))


def test_selection_stats_hand_counted() -> None:
    mask = np.array([1, 1, 1, 0, 1], bool)
    correct = np.array([1, 0, 1, 1, 0], bool)
    s = projection.selection_stats(mask, correct, drawn=[0, 1, 3])
    assert (s.n, s.n_correct, s.n_drawn) == (4, 2, 2)
    assert s.accuracy == 0.5


def test_hover_lines() -> None:
    lines = projection.hover_lines([0, 1], [0, 2], [0.97, 0.624], ["cat", "dog", "<b>"])
    assert lines == ["cat ✓ · 97%", "dog → <b> · 62%"]


def test_figure_one_trace_per_value_and_escaped_hover() -> None:
    x, y = np.arange(4.0), np.arange(4.0)
    fig = map_figure(
        x, y, np.array(["b", "a", "b", "10"]), numeric=False,
        hover=["<b>", "2", "3", "4"], color_label="true class", title="t",
    )  # fmt: skip
    assert [t.name for t in fig.data] == ["10", "a", "b"]
    assert list(fig.data[2].x) == [0.0, 2.0]
    assert fig.data[2].text[0] == "&lt;b&gt;"
    assert all(t.type == "scattergl" for t in fig.data)
    many = map_figure(
        np.arange(40.0), np.arange(40.0), np.arange(40).astype(str), numeric=False,
        hover=[""] * 40, color_label="c", title="t",
    )  # fmt: skip
    assert len(many.data) == 1 and list(many.data[0].marker.color[:3]) == [0, 1, 2]
    num = map_figure(
        x, y, np.array([0.1, 0.5, 0.9, 1.0]), numeric=True, hover=[""] * 4,
        color_label="confidence", title="t",
    )  # fmt: skip
    assert len(num.data) == 1
    json.loads(num.to_json())


class _FakeRun:
    def __init__(self, path, n: int) -> None:
        import pandas as pd

        self.path = path
        self.parent = None
        self._df = pd.DataFrame({"split": ["test"] * n})

    def predictions(self):
        return self._df


def test_projection_cached_in_the_run_folder(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 6)).astype(np.float32)
    calls = []

    def fake_embeddings(run, progress=None):
        calls.append(1)
        return emb

    monkeypatch.setattr(embeddings, "run_embeddings", fake_embeddings)
    run = _FakeRun(tmp_path, 40)
    first = embedding_map.run_projection(run, method="pca", seed=0)
    assert (tmp_path / "projection-pca-0.npy").exists()
    assert embedding_map.has_cached(run, "pca", 0)
    second = embedding_map.run_projection(run, method="pca", seed=0)
    np.testing.assert_array_equal(first, second)
    assert len(calls) == 1  # read back, not recomputed
    np.testing.assert_array_equal(first, projection.project(emb, method="pca", seed=0))
