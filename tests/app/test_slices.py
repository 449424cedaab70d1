"""The Slices page through AppTest, and its agreement with the CLI and the report (issue 14)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from core.figures.report import build_report
from core.runs import Run
from tests.app import conftest
from tests.conftest import cli_inprocess

pytestmark = pytest.mark.slow


def _open(run: Run):  # noqa: ANN202 - an AppTest
    return conftest.open_page("slices", run)


def _segments(at) -> list[str]:  # noqa: ANN001
    return [md.value for md in at.markdown if md.value.startswith("Images with ")]


def test_page_cli_and_report_agree_on_the_samples_weak_segments(
    sample_runs: dict[str, Run], capsys: pytest.CaptureFixture[str]
) -> None:
    # The sample no longer plants a degraded scanner (it broke the good model's per-class
    # lesson; see sample_data/build_sample.py DEGRADED), so this checks agreement, whatever
    # the search finds: the same segments, in the same order, on the page, the CLI and the report.
    run = sample_runs["good"]
    proc = cli_inprocess(capsys, "slices", run.path, "--json")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)["segments"]
    at = _open(run)
    shown = _segments(at)
    assert len(shown) == min(10, len(found))
    html = build_report(run, "test")
    if not found:
        assert any("is significantly worse than the rest" in s.value for s in at.success)
        return
    for seg, text in zip(found, shown, strict=False):
        assert text.startswith("Images with ")
        assert f"{seg['images']}" in text.replace(",", "")
    assert "<li data-segment=" in html.split('<ol id="segments">')[1]


def test_per_value_accuracy_equals_sklearn_on_each_scanner(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["good"]
    at = _open(run)
    at.selectbox(key="sl_column").set_value("scanner").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    meta = pd.read_csv(conftest.ROOT / "sample_data/digits/metadata.csv")
    pred = run.predictions()
    test = pred[pred["split"] == "test"]
    scanner = ("test/" + test["path"]).map(dict(zip(meta["path"], meta["scanner"], strict=True)))
    assert list(table["slice"]) == [f"scanner is {s}" for s in "ABCD"]
    for s, (_, row) in zip("ABCD", table.iterrows(), strict=True):
        rows = (scanner == s).to_numpy()
        assert row["images"] == rows.sum()
        want = accuracy_score(test["y_true"][rows], test["y_pred"][rows])
        assert row["accuracy"] == pytest.approx(want)
        assert row["ci low"] <= want <= row["ci high"]


def test_apply_as_filter_narrows_every_page(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["good"]
    at = _open(run)
    at.selectbox(key="sl_column").set_value("scanner").run()
    at.button(key="sl_value_0").click().run()
    assert not at.exception, at.exception
    assert at.query_params["where"] in (["scanner~is~A"], "scanner~is~A")
    notes = [i.value for i in at.info if "Images where" in i.value]
    assert notes and "scanner" in notes[0]


def test_column_choices_hold_metadata_and_properties_not_outcomes(
    sample_runs: dict[str, Run],
) -> None:
    at = _open(sample_runs["good"])
    options = at.selectbox(key="sl_column").options
    assert "scanner" in options and "writer" in options and "brightness" in options
    assert not np.isin(["split", "correct"], options).any()
