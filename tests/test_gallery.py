"""core.images.gallery against pandas/numpy references computed another way, and real files."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.figures import gallery as gallery_fig
from core.images import gallery


def _predictions(seed: int = 0, n: int = 500, k: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, size=n)
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, k, size=n))
    return pd.DataFrame(
        {
            "split": rng.choice(["train", "val", "test"], size=n),
            "path": [f"{t}/{i:05d}.png" for i, t in enumerate(y_true)],
            "y_true": y_true.astype(np.int32),
            "y_pred": y_pred.astype(np.int32),
            # rounded, so ties happen and the tie order is tested too
            "confidence": np.round(rng.random(n), 2).astype(np.float32),
            "loss": np.round(rng.random(n) * 5, 1).astype(np.float32),
        }
    )


FILTERS = [
    pytest.param(None, None, None, id="all"),
    pytest.param(["test"], None, None, id="test"),
    pytest.param(["train", "val"], [1, 2], None, id="train-val-true12"),
    pytest.param([], [], [4], id="empty-means-all-pred4"),
    pytest.param(["test"], [0], [3, 5], id="test-true0-pred35"),
    pytest.param(["test"], [0], [0], id="diagonal-is-never-a-mistake"),
]


@pytest.mark.parametrize(("splits", "trues", "preds"), FILTERS)
def test_filter_matches_a_row_by_row_reference(splits, trues, preds) -> None:
    df = _predictions()
    got = gallery.filter_mistakes(df, splits=splits, true_classes=trues, pred_classes=preds)
    expected = [
        i
        for i, r in enumerate(df.itertuples())
        if r.y_true != r.y_pred
        and (not splits or r.split in splits)
        and (not trues or r.y_true in trues)
        and (not preds or r.y_pred in preds)
    ]
    assert got.index.tolist() == expected
    assert list(got.columns) == list(df.columns)


def test_filter_with_a_query_reference() -> None:
    df = _predictions(seed=1)
    got = gallery.filter_mistakes(df, splits=["val"], true_classes=[2])
    ref = df.query("y_true != y_pred and split == 'val' and y_true == 2")
    pd.testing.assert_frame_equal(got, ref)


@pytest.mark.parametrize("by", ["confidence", "loss"])
def test_sort_puts_the_highest_first_and_keeps_ties_in_row_order(by: str) -> None:
    df = gallery.filter_mistakes(_predictions(seed=2))
    got = gallery.sort_rows(df, by).index.tolist()
    expected = sorted(df.index, key=lambda i: (-float(df.at[i, by]), i))
    assert got == expected


def test_sort_rejects_an_unknown_key() -> None:
    with pytest.raises(ValueError, match="by must be one of confidence, loss, got 'name'"):
        gallery.sort_rows(_predictions(), "name")


@pytest.mark.parametrize("page_size", [24, 48, 96, 7])
def test_pages_cover_every_row_once_in_order(page_size: int) -> None:
    rows = gallery.sort_rows(gallery.filter_mistakes(_predictions(seed=3)), "loss")
    n_pages = gallery.page_count(len(rows), page_size)
    assert n_pages == -(-len(rows) // page_size)
    pages = [gallery.paginate(rows, page=p, page_size=page_size) for p in range(1, n_pages + 1)]
    assert all(len(p) == page_size for p in pages[:-1])
    assert 1 <= len(pages[-1]) <= page_size
    assert pd.concat(pages).index.tolist() == rows.index.tolist()


def test_page_numbers_are_clamped_and_empty_has_one_page() -> None:
    rows = _predictions(n=50)
    assert gallery.paginate(rows, page=0, page_size=24).index.tolist() == list(range(24))
    assert gallery.paginate(rows, page=9, page_size=24).index.tolist() == [48, 49]
    assert gallery.page_count(0, 24) == 1
    assert gallery.paginate(rows.iloc[:0], page=1, page_size=24).empty
    with pytest.raises(ValueError, match="page_size must be at least 1, got 0"):
        gallery.page_count(5, 0)


def test_top3_matches_argsort() -> None:
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(10), size=200).astype(np.float32)
    idx, p = gallery.top_k(probs, 3)
    ref = np.argsort(probs, axis=1)[:, ::-1][:, :3]  # no ties in continuous draws
    assert idx.shape == (200, 3)
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_array_equal(p, np.take_along_axis(probs, ref, axis=1))
    assert (np.diff(p, axis=1) <= 0).all()


def test_top_k_ties_rank_the_lower_class_first_and_k_is_capped() -> None:
    idx, p = gallery.top_k([[0.2, 0.4, 0.4], [0.5, 0.0, 0.5]], 3)
    assert idx.tolist() == [[1, 2, 0], [0, 2, 1]]
    assert gallery.top_k([[0.3, 0.7]], 3)[0].tolist() == [[1, 0]]


def _png(path: Path, size: tuple[int, int] = (4, 4), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128).save(path)


def _run(root: Path, **extra) -> SimpleNamespace:
    return SimpleNamespace(meta={"dataset": {"root": str(root), **extra}})


def test_image_path_in_a_split_layout_with_aliases(tmp_path: Path) -> None:
    _png(tmp_path / "Training" / "cat" / "1.png")
    _png(tmp_path / "validation" / "dog" / "2.png")
    _png(tmp_path / "test" / "dog" / "3.png")
    run = _run(tmp_path)
    assert gallery.image_path(run, "train", "cat/1.png") == tmp_path / "Training" / "cat/1.png"
    assert gallery.image_path(run, "val", "dog/2.png") == tmp_path / "validation" / "dog/2.png"
    assert gallery.image_path(run, "test", "dog/3.png").is_file()


def test_image_path_for_a_single_split_dataset_is_under_the_root(tmp_path: Path) -> None:
    _png(tmp_path / "cat" / "1.png")
    assert gallery.image_path(_run(tmp_path), "test", "cat/1.png") == tmp_path / "cat/1.png"


def test_image_path_prefers_stored_split_folders(tmp_path: Path) -> None:
    run = _run(tmp_path, split_dirs={"test": str(tmp_path / "elsewhere")})
    assert gallery.image_path(run, "test", "a/1.png") == tmp_path / "elsewhere" / "a/1.png"


def test_image_path_names_a_missing_split(tmp_path: Path) -> None:
    _png(tmp_path / "train" / "cat" / "1.png")
    with pytest.raises(ValueError, match=r"split 'val' has no folder .* \(found: train\)"):
        gallery.image_path(_run(tmp_path), "val", "cat/1.png")


def test_image_path_of_a_moved_dataset_does_not_raise(tmp_path: Path) -> None:
    path = gallery.image_path(_run(tmp_path / "gone"), "test", "cat/1.png")
    assert not path.exists()


def test_thumbnail_enlarges_tiny_images_nearest_neighbour(tmp_path: Path) -> None:
    pixels = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    Image.fromarray(pixels).save(tmp_path / "d.png")
    thumb = gallery.thumbnail(tmp_path / "d.png", size=96)
    assert thumb.shape == (96, 96, 3) and thumb.dtype == np.uint8
    # each source pixel becomes a 3x3 block of the same value (no smoothing)
    np.testing.assert_array_equal(thumb[..., 0], np.kron(pixels, np.ones((3, 3), np.uint8)))


def test_thumbnail_shrinks_large_images_keeping_the_aspect(tmp_path: Path) -> None:
    _png(tmp_path / "big.png", size=(400, 200), mode="RGB")
    assert gallery.thumbnail(tmp_path / "big.png", size=96).shape == (48, 96, 3)


def test_thumbnail_of_a_broken_file_raises_oserror(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(OSError):
        gallery.thumbnail(tmp_path / "bad.png")


def test_probability_figure_orders_bars_and_colours_true_and_predicted() -> None:
    probs = np.array([0.05, 0.6, 0.3, 0.05])
    fig = gallery_fig.probability_figure(probs, list("abcd"), y_true=2, y_pred=1)
    bar = fig.data[0]
    assert list(bar.y) == ["b", "c", "a", "d"]
    assert list(bar.x) == pytest.approx([0.6, 0.3, 0.05, 0.05])
    assert bar.marker.color[0] == "#c92a2a" and bar.marker.color[1] == "#2b8a3e"
    assert len(gallery_fig.probability_figure(np.ones(50) / 50, [str(i) for i in range(50)],
                                          y_true=0, y_pred=0).data[0].y) == 30  # fmt: skip
