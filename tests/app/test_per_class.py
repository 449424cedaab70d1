"""The Per-class metrics page under AppTest, on the bundled sample runs."""

from __future__ import annotations

import io

import pandas as pd
import plotly.io as pio
import pytest

from core.runs import Run

from .conftest import RecordingStorage, open_page

pytestmark = pytest.mark.slow
COLUMNS = ["precision", "recall", "f1", "specificity", "support"]


@pytest.mark.parametrize("name", ["good", "overfit", "imbalanced"])
def test_table_rows_equal_metrics_json(sample_runs: dict[str, Run], name: str) -> None:
    run = sample_runs[name]
    at = open_page("per_class", run)
    shown = at.dataframe[0].value
    expected = pd.DataFrame(run.metrics["splits"]["test"]["per_class"])
    assert list(shown["class"]) == list(expected["class"])
    pd.testing.assert_frame_equal(
        shown[COLUMNS].reset_index(drop=True),
        expected[COLUMNS].reset_index(drop=True),
        check_dtype=False,
    )
    averages = at.dataframe[1].value.set_index("class")
    test = run.metrics["splits"]["test"]
    for kind in ("macro", "weighted"):
        for k in ("precision", "recall", "f1"):
            assert averages.loc[f"{kind} avg", k] == test[kind][k]


def test_csv_download_parses_to_the_same_numbers(
    sample_runs: dict[str, Run], media: type[RecordingStorage]
) -> None:
    run = sample_runs["imbalanced"]
    at = open_page("per_class", run)
    (button,) = at.get("download_button")
    assert button.proto.label == "Download the per-class table (CSV)"
    csv = pd.read_csv(io.BytesIO(media.read(button.proto.url)), dtype={"class": str})
    per_class = pd.DataFrame(run.metrics["splits"]["test"]["per_class"])
    body = csv.iloc[: len(per_class)].reset_index(drop=True)
    assert list(body["class"]) == list(per_class["class"])
    pd.testing.assert_frame_equal(body[COLUMNS], per_class[COLUMNS], check_dtype=False)
    assert list(csv["class"].iloc[len(per_class) :]) == ["macro avg", "weighted avg"]


def test_imbalanced_low_recall_class_is_flagged_and_colored(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["imbalanced"]
    test = run.metrics["splits"]["test"]
    worst = min(test["per_class"], key=lambda c: c["recall"])
    at = open_page("per_class", run)
    flag = at.error[0].value
    assert f"'{worst['class']}' (recall {100 * worst['recall']:.1f}%)" in flag
    assert at.dataframe[0].value.set_index("class").loc[worst["class"], "status"] == "bad"


def test_good_model_has_no_flagged_class(sample_runs: dict[str, Run]) -> None:
    at = open_page("per_class", sample_runs["good"])
    assert not at.error and not at.warning
    assert at.success[0].value.startswith("Every class has precision and recall")
    assert set(at.dataframe[0].value["status"]) == {"good"}


def test_bar_chart_and_split_switch(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["overfit"]
    at = open_page("per_class", run)
    at.segmented_control(key="split").set_value("train").run()
    assert not at.exception
    train = run.metrics["splits"]["train"]["per_class"]
    assert list(at.dataframe[0].value["recall"]) == [c["recall"] for c in train]
    (chart,) = at.get("plotly_chart")
    fig = pio.from_json(chart.proto.spec)
    assert [t.name for t in fig.data] == ["precision", "recall", "F1", "good ≥ 85%", "bad < 60%"]
    assert list(fig.data[2].y) == pytest.approx([c["f1"] for c in train])


def test_precision_recall_help_is_there(sample_runs: dict[str, Run]) -> None:
    at = open_page("per_class", sample_runs["good"])
    text = "\n".join(md.value for md in at.markdown)
    assert "when the model says X, is it right?" in text
    assert "of all the X images, how many did it find?" in text
