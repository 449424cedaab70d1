"""The Slices page through AppTest, and its agreement with the CLI and the report (issue 14)."""

from __future__ import annotations

import json
from html import escape

import numpy as np
import pandas as pd
import pytest
from scipy import stats
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
    # Agreement, whatever the search finds: the same segments, in the same order, on the page,
    # the CLI and the report (what it must find on the sample: the test below).
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


def test_the_samples_degraded_scanner_is_the_top_segment_on_page_cli_and_report(
    sample_runs: dict[str, Run], capsys: pytest.CaptureFixture[str]
) -> None:
    # sample_data/build_sample.py degrades scanner D's test images (skewed, dimmer): the search
    # must rank that scanner (or a brightness / sharpness proxy of it) first.
    run = sample_runs["good"]
    proc = cli_inprocess(capsys, "slices", run.path, "--json")
    assert proc.returncode == 0, proc.stderr
    top = json.loads(proc.stdout)["segments"][0]
    conds = top["conditions"]
    names_scanner = {"column": "scanner", "op": "==", "value": "D"} in conds
    assert names_scanner or {c["column"] for c in conds} <= {"brightness", "sharpness"}, conds
    assert top["q_value"] <= 0.05

    # Its numbers from the predictions and metadata.csv, with sklearn and scipy.
    meta = pd.read_csv(conftest.ROOT / "sample_data/digits/metadata.csv")
    pred = run.predictions()
    test = pred[pred["split"] == "test"]
    scanner = ("test/" + test["path"]).map(dict(zip(meta["path"], meta["scanner"], strict=True)))
    if names_scanner:
        rows = (scanner == "D").to_numpy()
        y_true, y_pred = test["y_true"].to_numpy(), test["y_pred"].to_numpy()
        assert top["images"] == rows.sum()
        assert top["accuracy"] == pytest.approx(accuracy_score(y_true[rows], y_pred[rows]))
        assert top["rest_accuracy"] == pytest.approx(accuracy_score(y_true[~rows], y_pred[~rows]))
        right = y_true == y_pred
        table = [
            [right[rows].sum(), (~right[rows]).sum()],
            [right[~rows].sum(), (~right[~rows]).sum()],
        ]
        want_p = stats.fisher_exact(table, alternative="less").pvalue
        assert top["p_value"] == pytest.approx(want_p, rel=1e-6)

    at = _open(run)
    shown = _segments(at)
    assert shown and top["text"] in shown[0].replace("\\", "")
    assert f"{top['images']} images" in shown[0]
    html = build_report(run, "test")
    first = html.split('<ol id="segments">')[1].split("</li>")[0]
    assert f"<li data-segment='{escape(top['text'])}'>" in first


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


def test_overview_searches_the_slices_the_slices_page_searched(sample_runs: dict[str, Run]) -> None:
    # Journey: Overview before the image properties are measured, Slices (which measures
    # them on a sample this small), Overview again. The Overview's weak-segment line must then
    # count the slices the Slices page tried, not keep its search from before (60 vs 256).
    import re

    from core.images import properties

    run = sample_runs["good"]
    properties.cache_path(run).unlink(missing_ok=True)  # a derived cache: rebuilt when needed

    def tried(at) -> int:  # noqa: ANN001
        """The slice count in the top weak segment's line (both pages write the same words)."""
        found = [re.search(r"correcting for ([\d,]+) slices tried", m.value) for m in at.markdown]
        hits = [int(f.group(1).replace(",", "")) for f in found if f]
        assert hits, [m.value for m in at.markdown]
        return hits[0]

    at = conftest.open_page("overview", run)
    before = tried(at)
    at.switch_page("pages/slices.py")
    at.run()
    assert not at.exception, at.exception
    assert properties.cache_path(run).exists()
    on_slices = tried(at)
    at.switch_page("pages/overview.py")
    at.run()
    assert not at.exception, at.exception
    assert tried(at) == on_slices > before


def test_the_table_shows_every_share_with_one_decimal(sample_runs: dict[str, Run]) -> None:
    # Journey: the scanner table showed "97.66%" beside "97.6%" and "100%" beside "98.19%"
    # (Streamlit's "percent" trims zeros); now as the chart and sentences: one decimal.
    import pyarrow as pa

    at = _open(sample_runs["good"])
    at.selectbox(key="sl_column").set_value("scanner").run()
    table = at.dataframe[0].value
    styler = at.dataframe[0].proto.arrow_data.styler
    shown = pa.ipc.open_stream(styler.display_values).read_all().to_pandas()
    for col in ("share", "accuracy", "ci low", "ci high", "rest accuracy"):
        assert shown[col].tolist() == [f"{100 * x:.1f}%" for x in table[col]], col
    assert shown["gap (points)"].tolist() == [f"{x:+.1f}" for x in table["gap (points)"]]
    assert shown["accuracy"].iloc[3] == "85.5%"  # scanner D: 47 of 55
