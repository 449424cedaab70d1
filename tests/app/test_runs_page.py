"""The "All runs" page lists every stored run with the numbers of its metrics.json."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.runs import Run
from tests.app.conftest import open_page


@pytest.fixture(scope="module")
def runs_page(sample_runs: dict[str, Run]) -> AppTest:
    """The All runs page, opened once for the cases that only read it."""
    return open_page("runs", sample_runs["good"])


def test_runs_page_lists_the_sample_runs_with_their_metrics(
    sample_runs: dict[str, Run], runs_page: AppTest
) -> None:
    at = runs_page
    df = at.dataframe[0].value
    assert {"good.safetensors", "overfit.safetensors", "imbalanced.safetensors"} <= set(
        df["checkpoint"]
    )
    for run in sample_runs.values():
        for split, m in run.metrics["splits"].items():
            shown = df[(df.run == run.run_id) & (df.split == split)]
            assert shown["accuracy"].item() == m["accuracy"]
            assert shown["balanced accuracy"].item() == m["balanced_accuracy"]
            assert shown["images"].item() == m["n"]


def test_each_run_shows_overviews_verdict(sample_runs: dict[str, Run], runs_page: AppTest) -> None:
    """The verdict column is the headline Overview shows for that run and split."""
    at = runs_page
    df = at.dataframe[0].value
    for name, run in sample_runs.items():
        shown = df[(df.run == run.run_id) & (df.split == "test")]["verdict"].item()
        overview = open_page("overview", run)
        headline = next(
            e.value for e in (*overview.success, *overview.warning, *overview.error)
            if e.value.startswith(("**Good", "**Needs attention", "**Not production-ready"))
        )  # fmt: skip
        level = {"Good": "🟢", "Needs attention": "🟠", "Not production-ready": "🔴"}
        first = headline.removeprefix("**").split("**")[0]
        assert shown == f"{level[first.split(':')[0]]} {first}", (name, shown, first)


def test_headline_metric_in_the_run_picker(sample_runs: dict[str, Run], runs_page: AppTest) -> None:
    at = runs_page
    (picker,) = [s for s in at.sidebar.selectbox if s.label == "Stored runs"]
    for run in sample_runs.values():
        test = run.metrics["splits"]["test"]
        (label,) = [o for o in picker.options if o.endswith(run.run_id[:6])]
        assert f" · test acc {100 * test['accuracy']:.1f}% · " in label, label


def test_clicking_a_row_opens_its_run(sample_runs: dict[str, Run]) -> None:
    at = open_page("runs", sample_runs["good"])
    df = at.dataframe[0].value
    target = sample_runs["imbalanced"]
    row = int(df.index[(df.run == target.run_id) & (df.split == "test")][0])
    # what st.dataframe's row selection sends when the row is clicked
    at.session_state["runs_table"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Overview"
    assert at.session_state["run_id"] == target.run_id
    assert at.query_params["run"] == [target.run_id] or at.query_params["run"] == target.run_id
    at.switch_page("pages/runs.py").run()  # back on All runs: it stays there, nothing picked
    assert not at.exception, at.exception
    assert at.title[0].value == "All runs"
