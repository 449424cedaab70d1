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


def test_sample_degraded_scanner_ranks_first_on_page_cli_and_report(
    sample_runs: dict[str, Run], capsys: pytest.CaptureFixture[str]
) -> None:
    run = sample_runs["good"]
    proc = cli_inprocess(capsys, "slices", run.path, "--json")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    top = found["segments"][0]
    assert top["conditions"] == [{"column": "scanner", "op": "==", "value": "D"}]
    # the numbers behind the sentence, recounted from the sample's metadata file
    meta = pd.read_csv(conftest.ROOT / "sample_data/digits/metadata.csv")
    pred = run.predictions()
    test = pred[pred["split"] == "test"]
    keys = "test/" + test["path"]
    scanner = keys.map(dict(zip(meta["path"], meta["scanner"], strict=True)))
    d = (scanner == "D").to_numpy()
    ok = (test["y_true"] == test["y_pred"]).to_numpy()
    assert top["images"] == d.sum()
    assert top["accuracy"] == pytest.approx(ok[d].mean(), abs=1e-6)
    assert top["rest_accuracy"] == pytest.approx(ok[~d].mean(), abs=1e-6)
    assert top["accuracy"] < top["rest_accuracy"] - 0.03  # measurably worse

    at = _open(run)
    assert _segments(at)[0].startswith("Images with scanner is D \\(")
    html = build_report(run, "test")
    assert "<li data-segment='scanner is D'>" in html.split('<ol id="segments">')[1]


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
    at.button(key="sl_apply_0").click().run()
    assert not at.exception, at.exception
    assert (
        at.query_params["where"] == ["scanner~is~D"] or at.query_params["where"] == "scanner~is~D"
    )
    notes = [i.value for i in at.info if "Images where" in i.value]
    assert notes and "scanner" in notes[0]


def test_column_choices_hold_metadata_and_properties_not_outcomes(
    sample_runs: dict[str, Run],
) -> None:
    at = _open(sample_runs["good"])
    options = at.selectbox(key="sl_column").options
    assert "scanner" in options and "writer" in options and "brightness" in options
    assert not np.isin(["split", "correct"], options).any()
