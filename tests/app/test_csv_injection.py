"""CSV downloads carry no spreadsheet formulas (issue 13, item 5; OWASP CSV injection).

Class names, file paths and checkpoint names come from users. A run whose class folders,
single-split image paths and checkpoint start with = + - @ is opened on every page with a
download, every CSV those pages offer is built, and no cell or header may start like a formula.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator

import pandas as pd
import pytest
import streamlit as st

from core.analysis.exports import FORMULA_START, csv_bytes, neutralise
from core.engine.evaluate import evaluate
from core.runs import Run
from tests.app.conftest import Visitor
from tests.conftest import SIZE, classlens_meta, make_model, save_safetensors, write_dataset
from ui.state import RUN_KEY, list_runs

FORMULA_NAMES = ("=1+1", "+SUM(A1)", "-2+3", "@cmd")


# --- the writer --------------------------------------------------------------------------------


@pytest.mark.parametrize("start", FORMULA_START, ids=repr)
def test_every_formula_start_is_neutralised(start: str) -> None:
    cell = f'{start}HYPERLINK("http://x")'
    assert neutralise(cell) == "'" + cell
    text = csv_bytes(pd.DataFrame({start + "h": [cell]})).decode()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows == [["'" + start + "h"], ["'" + cell]]


def test_numbers_and_plain_text_are_unchanged() -> None:
    df = pd.DataFrame(
        {
            "class": pd.Categorical(["cat", "-dog"]),
            "n": [-3, 4],
            "x": [-0.25, float("nan")],
            "ok": [True, False],
            "path": ["a/=b.png", None],
        }
    )
    back = pd.read_csv(io.BytesIO(csv_bytes(df)))
    assert list(back.columns) == ["class", "n", "x", "ok", "path"]
    assert back["class"].tolist() == ["cat", "'-dog"]
    assert back["n"].tolist() == [-3, 4] and back["x"].iloc[0] == -0.25
    assert back["ok"].tolist() == [True, False]
    assert back["path"].iloc[0] == "a/=b.png" and pd.isna(back["path"].iloc[1])
    assert df["class"].tolist() == ["cat", "-dog"]  # the caller's table is not modified


def test_the_index_is_neutralised_when_written() -> None:
    df = pd.DataFrame({"=a": [1]}, index=pd.Index(["@x"], name="true"))
    assert csv_bytes(df, index=True).decode().splitlines() == ['"true","\'=a"', '"\'@x",1']


# --- every download of the dashboard ----------------------------------------------------------


@pytest.fixture(scope="module")
def formula_runs(sample_runs: dict[str, Run], tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Two runs (for Compare) of a train/test dataset whose class folders start like
    formulas; the first checkpoint's name does as well."""
    base = tmp_path_factory.mktemp("formula")
    root = write_dataset(base / "d", classes=FORMULA_NAMES, per_class=3)
    meta = classlens_meta(class_names=None, preprocessing={"image_size": SIZE, "channels": 1})
    store = os.environ["CLASSLENS_RUNS_DIR"]
    first = save_safetensors(make_model(num_classes=4), base / "=evil.safetensors", meta)
    other = save_safetensors(make_model(num_classes=4, seed=1), base / "b.safetensors", meta)
    evaluate(other, root, device="cpu", runs_dir=store)
    run = evaluate(first, root, device="cpu", runs_dir=store)
    list_runs.clear()
    return run


@pytest.fixture(scope="module")
def formula_pages(formula_runs: Run) -> Visitor:
    """One AppTest session on the formula run that the page cases visit in turn."""
    return Visitor(formula_runs)


@pytest.fixture()
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict]]:
    """Record every st.download_button call (label, data, file name) the pages make."""
    calls: list[dict] = []
    real = st.download_button

    def spy(label, data, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        calls.append({"label": label, "data": data, "file_name": kwargs.get("file_name")})
        return real(label, data, *args, **kwargs)

    monkeypatch.setattr(st, "download_button", spy)
    yield calls


def _number(cell: str) -> bool:
    """Return whether a cell is a plain number (a negative one is a number, not a formula)."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _cells(data) -> list[str]:  # noqa: ANN001
    raw = data() if callable(data) else data
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]


PAGES_WITH_CSV = {
    "overview": 0,  # its report and metrics.json; and the Overview opens on this run
    "per_class": 1,
    "confusion": 2,
    "mistakes": 1,
    "overfitting": 2,
    "leakage": 0,  # no near-copy pairs in this tiny set: its table goes through offer() too
    "compare": 3,
    "thresholds": 2,
    "calibration": 2,
    "suspicious": 1,
    "runs": 1,
}


@pytest.mark.parametrize("page", sorted(PAGES_WITH_CSV))
def test_no_csv_download_starts_a_cell_like_a_formula(
    formula_runs: Run, formula_pages: Visitor, recorded: list[dict], page: str
) -> None:
    at = formula_pages.visit(page)
    assert at.session_state[RUN_KEY] == formula_runs.run_id
    csvs = [c for c in recorded if str(c["file_name"]).endswith(".csv")]
    names = sorted({c["file_name"] for c in csvs})
    assert len(names) >= PAGES_WITH_CSV[page], (page, names)
    seen_names = False
    for call in csvs:
        cells = _cells(call["data"])
        assert cells, call["file_name"]
        bad = [c for c in cells if c.startswith(FORMULA_START) and not _number(c)]
        assert not bad, (page, call["file_name"], bad[:5])
        # The names are there, neutralised, not dropped.
        seen_names |= any(c == "'" + n or c.startswith("'" + n + "/") for c in cells
                          for n in (*FORMULA_NAMES, "=evil.safetensors"))  # fmt: skip
    if names:
        assert seen_names, (page, names)
