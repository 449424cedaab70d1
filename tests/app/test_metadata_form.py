"""New run form: the metadata field (the CLI's --metadata) attaches a file to the run; bad
files are refused before anything runs; hosted, only paths inside the allowed roots."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.engine import metadata
from core.engine.sample import DATASET
from core.images.columns import root_paths, slice_columns
from core.runs import Run, RunStore
from tests.app.conftest import open_page
from tests.app.test_security import _hosted_editor, _Upload
from ui.new_run import save_metadata_upload

SLOW = pytest.mark.slow  # AppTests over the evaluated sample


pytestmark = pytest.mark.usefixtures("no_settings_leak")  # tests/app/conftest.py


def _sites(path: Path) -> pd.DataFrame:
    """Write a metadata file with a 'site' column for every sample image; return it."""
    meta = pd.read_csv(DATASET / "metadata.csv")
    table = pd.DataFrame(
        {"path": meta["path"], "site": np.where(meta["scanner"] < "C", "north", "south")}
    )
    table.to_csv(path, index=False)
    return table


def _errors(at) -> list[str]:  # noqa: ANN001 - an AppTest
    return [e.value for e in at.sidebar.error]


@SLOW
def test_the_forms_metadata_file_is_attached_to_the_run(
    sample_runs: dict[str, Run],
    sample_store: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = tmp_path / "runs"  # its own store: attaching writes into the run folder
    shutil.copytree(sample_store, store)
    monkeypatch.setenv("CLASSLENS_RUNS_DIR", str(store))
    good = RunStore(store).get(sample_runs["good"].run_id)
    assert good is not None
    file = tmp_path / "sites.csv"
    want = _sites(file)

    at = open_page("overview", good)  # the form's defaults: good checkpoint, bundled digits
    at.sidebar.radio(key="md_src").set_value("Server path").run()
    at.sidebar.text_input(key="md_path").input(str(file)).run()
    assert not at.exception, at.exception
    assert not _errors(at)
    before = metadata.info(good)  # the stored run may carry the dataset's own metadata.csv
    next(b for b in at.sidebar.button if b.label == "Evaluate").click().run()
    deadline = time.monotonic() + 240  # the child process finds the stored run: no inference
    while metadata.info(good) == before and time.monotonic() < deadline:
        time.sleep(0.5)
    info = metadata.info(good)
    assert info is not None, "the job attached nothing"
    assert info["source"] == str(file.resolve())
    assert info["columns"] == ["site"]
    assert info["match"]["matched"] == len(good.predictions())

    fresh = RunStore(store).get(good.run_id)  # a new Run: no in-memory slice table
    got = slice_columns(fresh, with_properties=False)["site"]
    expected = pd.Series(want["site"].to_numpy(), index=want["path"]).reindex(root_paths(fresh))
    assert got.tolist() == expected.tolist()


@SLOW
def test_a_bad_metadata_file_is_refused_before_anything_runs(
    sample_runs: dict[str, Run], tmp_path: Path
) -> None:
    bad = tmp_path / "meta.csv"
    bad.write_text("file,site\ntest/0/x.png,north\n")
    at = open_page("overview", sample_runs["good"])
    at.sidebar.radio(key="md_src").set_value("Server path").run()
    at.sidebar.text_input(key="md_path").input(str(bad)).run()
    assert not at.exception, at.exception
    assert any("has no 'path' column (found: 'file', 'site')" in e for e in _errors(at))
    assert not any(b.label == "Evaluate" for b in at.sidebar.button)

    at.sidebar.text_input(key="md_path").input(str(tmp_path / "missing.csv")).run()
    assert any("missing.csv does not exist: check the path" in e for e in _errors(at))

    at.sidebar.radio(key="md_src").set_value("From the dataset").run()  # back: no error
    assert not _errors(at)
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "Metadata: `metadata.csv` at the dataset root." in captions


def test_uploaded_metadata_is_stored_by_content_and_refused_when_unreadable(
    tmp_path: Path,
) -> None:
    file = tmp_path / "m.csv"
    _sites(file)
    first = save_metadata_upload(_Upload("my sites.csv", file.read_bytes()))
    again = save_metadata_upload(_Upload("other name.csv", file.read_bytes()))
    assert first == again and first.read_bytes() == file.read_bytes()
    assert metadata.read(first)[0].equals(metadata.read(file)[0])
    with pytest.raises(metadata.MetadataError, match=r"notes\.txt is not a metadata file"):
        save_metadata_upload(_Upload("notes.txt", b"path\n"))
    with pytest.raises(metadata.MetadataError, match=r"bad\.csv has no 'path' column"):
        save_metadata_upload(_Upload("bad.csv", b"file,site\nx.png,a\n"))
    assert not list(first.parent.parent.glob("*/.*")), "no temporary file left behind"


@SLOW
def test_hosted_metadata_is_a_path_inside_the_roots_only(
    sample_runs: dict[str, Run], tmp_path: Path
) -> None:
    at = _hosted_editor(sample_runs["good"])  # no roots: no server paths, no uploads of it
    assert not [r for r in at.sidebar.radio if r.key == "md_src"]

    root = (tmp_path / "data").resolve()
    root.mkdir()
    inside = root / "meta.csv"
    _sites(inside)
    outside = tmp_path / "meta.csv"
    _sites(outside)
    at = _hosted_editor(sample_runs["good"], allowed_roots=[str(root)])
    assert at.sidebar.radio(key="md_src").options == ["From the dataset", "Server path"]
    at.sidebar.radio(key="md_src").set_value("Server path").run()
    at.sidebar.text_input(key="md_path").input(str(outside)).run()
    assert any("outside the folders this server may read" in e for e in _errors(at))
    at.sidebar.text_input(key="md_path").input(str(inside)).run()
    assert not at.exception, at.exception
    assert not _errors(at)
    assert any(b.label == "Evaluate" for b in at.sidebar.button)
