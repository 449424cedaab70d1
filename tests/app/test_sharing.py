"""Sharing under AppTest: a link's query params restore the view; downloads are offered."""

from __future__ import annotations

import pytest

from core.runs import Run

from .conftest import open_page

pytestmark = pytest.mark.slow


def param(at, name: str) -> list[str]:
    """Return the app's URL parameter ``name`` as a list of values."""
    value = at.query_params.get(name, [])
    return value if isinstance(value, list) else [value]


def labels_of_downloads(at) -> list[str]:
    return [el.proto.label for el in at.get("download_button")]


def test_split_param_restores_the_split_and_is_written_back(sample_runs: dict[str, Run]) -> None:
    at = open_page("overview", sample_runs["good"], split="train")
    assert at.session_state["split"] == "train"
    assert any(h.value == "Classes on the train split" for h in at.subheader)
    assert param(at, "split") == ["train"]
    # An unknown split in a hand-edited link falls back to the default, without an error.
    at = open_page("overview", sample_runs["good"], split="nope")
    assert at.session_state["split"] == "test"
    assert param(at, "split") == ["test"]


def test_mistakes_class_param_filters_the_gallery(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["imbalanced"]
    at = open_page("mistakes", run, split="test", **{"class": "8"})
    eight = run.class_names.index("8")
    assert at.session_state["mk_true"] == [eight]
    df = run.predictions()
    wrong = df[(df["split"] == "test") & (df["y_true"] == eight) & (df["y_pred"] != eight)]
    assert any(f"**{len(wrong):,}** misclassified" in m.value for m in at.markdown)
    assert param(at, "class") == ["8"]


def test_thresholds_class_param_selects_the_class(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["good"]
    at = open_page("thresholds", run, **{"class": "3"})
    assert at.session_state["th_class"] == run.class_names.index("3")
    at.selectbox(key="th_class").set_value(run.class_names.index("5")).run()
    assert param(at, "class") == ["5"]  # the user's change sticks and is linkable


def test_compare_params_restore_runs_and_baseline(sample_runs: dict[str, Run]) -> None:
    good, overfit = sample_runs["good"].run_id, sample_runs["overfit"].run_id
    # Not what the page picks by itself (good then overfit, the first as baseline).
    at = open_page("compare", sample_runs["good"], baseline=good, **{"with": [overfit, good]})
    assert at.session_state["cmp_runs"] == [overfit, good]
    assert at.session_state["cmp_baseline"] == good
    at.selectbox(key="cmp_baseline").set_value(overfit).run()
    assert param(at, "baseline") == [overfit]


def test_overview_offers_report_and_metrics_json(sample_runs: dict[str, Run]) -> None:
    at = open_page("overview", sample_runs["good"])
    labels = labels_of_downloads(at)
    assert "Export report" in labels and "metrics.json" in labels
