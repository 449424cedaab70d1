"""Metadata files (core.engine.metadata): typing, and every bad input with a clear message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.analysis import exports
from core.engine import metadata
from core.images import columns
from tests.conftest import cli_inprocess
from tests.slice_helpers import image_run
from tests.test_columns import _grey


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "meta.csv"
    path.write_text(text)
    return path


def test_columns_are_typed(tmp_path: Path) -> None:
    f = _csv(
        tmp_path,
        "path,site,age,when,flag,empty\n"
        "./test/a/1.png,x,3,2024-01-02,true,\n"
        "test\\a\\2.png,y,4.5,2024-02-03,false,\n",
    )
    table, warnings = metadata.read(f)
    assert warnings == []
    assert list(table["path"]) == ["test/a/1.png", "test/a/2.png"]
    assert table["site"].tolist() == ["x", "y"]
    assert pd.api.types.is_float_dtype(table["age"])
    assert pd.api.types.is_datetime64_any_dtype(table["when"])
    assert table["flag"].tolist() == [True, False]
    kinds = columns.column_kinds(table.drop(columns="path"))
    assert kinds == {"site": "categorical", "age": "numeric", "when": "date", "flag": "bool"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("file,site\na.png,x\n", r"no 'path' column \(found: 'file', 'site'\)"),
        ("path,site\na.png,x\na.png,y\n", r"1 paths appear more than once \('a.png'\)"),
        ("path,site\n,x\n", r"1 rows have an empty path \(lines 2\)"),
        ("path,site,Site\na.png,x,y\n", r"columns named twice \('site'\)"),
    ],
    ids=["no-key", "duplicate-keys", "empty-key", "duplicate-columns"],
)
def test_bad_files_are_refused_saying_how_to_fix(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(metadata.MetadataError, match=match):
        metadata.read(_csv(tmp_path, text))


def test_missing_file_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(metadata.MetadataError, match="does not exist"):
        metadata.read(tmp_path / "nope.csv")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(metadata.MetadataError, match="could not be read"):
        metadata.read(bad)


def test_mixed_types_kept_as_text_with_the_odd_cells_named(tmp_path: Path) -> None:
    rows = "".join(f"i{i}.png,{i}\n" for i in range(8)) + "x.png,n/a\ny.png,abc\n"
    table, warnings = metadata.read(_csv(tmp_path, "path,age\n" + rows))
    assert table["age"].tolist()[-2:] == ["n/a", "abc"]  # nothing lost
    assert len(warnings) == 1
    assert (
        "column 'age' mixes numbers and text (2 cells are not numbers: line 10: 'n/a'"
        in (warnings[0])
    )


def test_ten_thousand_distinct_values_are_kept_but_not_sliced(tmp_path: Path) -> None:
    rows = "".join(f"i{i}.png,id{i},{i % 3}\n" for i in range(10_000))
    table, _ = metadata.read(_csv(tmp_path, "path,patient,site\n" + rows))
    assert table["patient"].nunique() == 10_000
    frame = table.drop(columns="path")
    assert columns.column_kinds(frame) == {"site": "numeric"}
    assert "10,000 distinct values" in columns.refused_columns(frame)["patient"]


def test_injection_in_names_is_data_and_csv_neutralised(tmp_path: Path) -> None:
    f = _csv(tmp_path, 'path,=HYPERLINK("x"),<script>\na.png,=1+1,<b>\n')
    table, _ = metadata.read(f)
    assert list(table.columns) == ["path", '=HYPERLINK("x")', "<script>"]
    text = exports.csv_bytes(table).decode()
    assert "'=HYPERLINK" in text and "'=1+1" in text


def test_attach_counts_and_keeps_unmatched_rows(tmp_path: Path) -> None:
    files = {f"test/a/{i}.png": _grey(i * 20) for i in range(3)}
    run = image_run(tmp_path / "data", tmp_path / "runs", files, y_true=[0] * 3, y_pred=[0] * 3)
    f = _csv(tmp_path, "path,site\ntest/a/0.png,x\nother/9.png,y\n")
    info = metadata.attach(run, f, columns.root_paths(run))
    assert info["match"]["matched"] == 1
    assert info["match"]["images_without_metadata"] == 2
    assert info["match"]["rows_without_image"] == 1
    assert any("2 of 3 images have no row in meta.csv" in w for w in info["warnings"])
    assert any("1 rows of meta.csv match no evaluated image" in w for w in info["warnings"])
    df = columns.slice_columns(run, with_properties=False)
    assert df["site"].tolist()[0] == "x" and df["site"].isna().sum() == 2
    stored, _ = metadata.stored(run)
    assert sorted(stored["path"]) == ["other/9.png", "test/a/0.png"]


def test_refused_root_file_is_said_not_raised(tmp_path: Path) -> None:
    files = {"test/a/0.png": _grey(10)}
    root = tmp_path / "data"
    root.mkdir()
    (root / "metadata.csv").write_text("path,site\ntest/a/0.png,x\ntest/a/0.png,y\n")
    run = image_run(root, tmp_path / "runs", files, y_true=[0], y_pred=[0])
    df = columns.slice_columns(run, with_properties=False)
    assert list(df.columns) == list(columns.BASE_COLUMNS)
    assert "appear more than once" in metadata.problem(run)


def test_cli_slices_and_metadata(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    files = {f"test/{'ab'[i % 2]}/{i}.png": _grey(int(rng.integers(0, 255))) for i in range(200)}
    y_true = [i % 2 for i in range(200)]
    site = ["bad" if i < 50 else "ok" for i in range(200)]
    y_pred = [t if i >= 50 else 1 - t for i, t in enumerate(y_true)]  # site "bad" all wrong
    run = image_run(tmp_path / "data", tmp_path / "runs", files, y_true=y_true, y_pred=y_pred)
    f = _csv(
        tmp_path, "path,site\n" + "".join(f"{p},{s}\n" for p, s in zip(files, site, strict=True))
    )
    proc = cli_inprocess(capsys, "slices", run.path, "--metadata", f, "--json")
    assert proc.returncode == 0, proc.stderr
    import json

    top = json.loads(proc.stdout)["segments"][0]
    assert top["conditions"] == [{"column": "site", "op": "==", "value": "bad"}]
    assert top["images"] == 50 and top["accuracy"] == 0.0 and top["rest_accuracy"] == 1.0
    text = cli_inprocess(capsys, "slices", run.path)
    assert text.stdout.splitlines()[0] == top["sentence"]
    bad = cli_inprocess(capsys, "slices", run.path, "--split", "train")
    assert bad.returncode == 1 and bad.stderr.startswith("error: run ") and "--split" in bad.stderr
    dup = _csv(tmp_path, "path,site\na,x\na,y\n")
    refused = cli_inprocess(capsys, "slices", run.path, "--metadata", dup)
    assert refused.returncode == 1 and "appear more than once" in refused.stderr
    assert "Traceback" not in refused.stderr
