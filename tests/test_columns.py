"""The slice table (core.images.columns): rows, base columns, metadata and properties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.engine import metadata
from core.images import columns, properties
from tests.slice_helpers import image_run


def _grey(value: int, size: int = 8) -> Image.Image:
    return Image.fromarray(np.full((size, size), value, np.uint8), mode="L")


@pytest.fixture
def run(tmp_path: Path):
    files = {
        "test/a/001.png": _grey(10),
        "test/a/indoor/002.png": _grey(200),
        "test/b/003.png": _grey(100, size=16),
        "train/b/deep/er/004.png": _grey(50),
    }
    root = tmp_path / "data"
    root.mkdir()
    (root / "metadata.csv").write_text(
        "path,scanner,age\ntest/a/001.png,A,3\ntest/b/003.png,B,5\n"
        "train/b/deep/er/004.png,A,7\nelsewhere/x.png,C,1\n"
    )
    return image_run(root, tmp_path / "runs", files, y_true=[0, 0, 1, 1], y_pred=[0, 1, 1, 0])


def test_slice_columns_rows_and_order(run) -> None:
    df = columns.slice_columns(run)
    pred = run.predictions()
    assert list(df.index) == list(pred.index)
    assert list(df.columns[:6]) == list(columns.BASE_COLUMNS)
    assert list(df["split"]) == ["test", "test", "test", "train"]
    assert list(df["true class"]) == ["a", "a", "b", "b"]
    assert list(df["predicted class"]) == ["a", "b", "b", "a"]
    assert list(df["correct"]) == [True, False, True, False]
    assert list(df["subfolder"]) == ["", "indoor", "", "deep/er"]
    # metadata joined on the root-relative path; the image with no row is empty, not dropped
    assert list(df["scanner"].fillna("-")) == ["A", "-", "B", "A"]
    np.testing.assert_allclose(df["age"].to_numpy(), [3, np.nan, 5, 7])
    # properties after the metadata
    assert list(df.columns[-len(properties.COLUMNS) :]) == list(properties.COLUMNS)
    np.testing.assert_allclose(df["brightness"], np.array([10, 200, 100, 50]) / 255, atol=1e-6)
    assert list(df["width"]) == [8, 8, 16, 8]
    assert df["near-blank"].all()  # flat grey squares


def test_unmatched_paths_are_counted_and_listed(run) -> None:
    columns.slice_columns(run)
    info = metadata.info(run)
    assert info["match"]["images_without_metadata"] == 1
    assert info["match"]["images_without_metadata_examples"] == ["test/a/indoor/002.png"]
    assert info["match"]["rows_without_image"] == 1
    assert any("elsewhere/x.png" in w for w in info["warnings"])
    # nothing lost: the unmatched row is kept in the run's copy
    table, _ = metadata.stored(run)
    assert "elsewhere/x.png" in set(table["path"])


def test_column_kinds(run) -> None:
    df = columns.slice_columns(run)
    kinds = columns.column_kinds(df)
    assert kinds["split"] == "categorical"
    assert kinds["correct"] == "bool"
    assert kinds["confidence"] == "numeric"
    assert kinds["scanner"] == "categorical"
    assert kinds["age"] == "numeric"
    assert kinds["near-blank"] == "bool"
    assert kinds["format"] == "categorical"


def test_many_distinct_values_refused_with_reason() -> None:
    import pandas as pd

    df = pd.DataFrame({"id": [f"x{i}" for i in range(10_000)], "n": np.arange(10_000)})
    assert columns.column_kinds(df) == {"n": "numeric"}
    why = columns.refused_columns(df)["id"]
    assert "10,000 distinct values" in why


def test_without_properties_reads_no_pixels(run) -> None:
    df = columns.slice_columns(run, with_properties=False)
    assert "brightness" not in df.columns
    assert not properties.cache_path(run).exists()
