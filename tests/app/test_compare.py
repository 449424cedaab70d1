"""The Compare page through AppTest: its numbers against metrics.json and the two runs'
predictions(), counted independently with plain loops."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from core.runs import Run
from tests.app.conftest import open_page
from ui.state import list_runs

pytestmark = pytest.mark.slow

ZOOM = "cmp_gallery-zoom-"
COUNT = re.compile(r"^\*\*([\d,]+)\*\* images right in (\w+), wrong in (\w+)$")


def _compare(at: AppTest, *runs: Run) -> AppTest:
    at.multiselect(key="cmp_runs").set_value([r.run_id for r in runs]).run()
    assert not at.exception, at.exception
    return at


def _correct(run: Run, split: str = "test") -> dict[str, bool]:
    """Return {path: prediction is right} for one split, from a plain loop."""
    df = run.predictions()
    return {r.path: r.y_true == r.y_pred for r in df.itertuples(index=False) if r.split == split}


def _flip_count(at: AppTest) -> tuple[int, str, str]:
    found = [
        (int(m[1].replace(",", "")), m[2], m[3]) for e in at.markdown if (m := COUNT.match(e.value))
    ]
    assert len(found) == 1, [e.value for e in at.markdown]
    return found[0]


def test_good_vs_overfit_is_significant_and_matches_the_runs(sample_runs: dict[str, Run]) -> None:
    good, overfit = sample_runs["good"], sample_runs["overfit"]
    at = _compare(open_page("compare", good), good, overfit)
    assert at.title[0].value == "Compare runs"

    # overall: the accuracies shown are those of metrics.json (every test image is shared)
    overall = at.dataframe[0].value.set_index("model")
    for name, run in (("good", good), ("overfit", overfit)):
        m = run.metrics["splits"]["test"]
        assert overall.loc[name, "accuracy"] == pytest.approx(m["accuracy"], abs=1e-12)
        assert overall.loc[name, "balanced accuracy"] == pytest.approx(
            m["balanced_accuracy"], abs=1e-12
        )
        assert overall.loc[name, "macro F1"] == pytest.approx(m["macro"]["f1"], abs=1e-12)
    delta = overall.loc["overfit", "Δ accuracy"]
    assert delta == pytest.approx(
        overfit.metrics["splits"]["test"]["accuracy"] - good.metrics["splits"]["test"]["accuracy"]
    )

    # McNemar: b and c counted independently from the two runs' predictions
    a_ok, b_ok = _correct(good), _correct(overfit)
    assert a_ok.keys() == b_ok.keys()
    b = sum(a_ok[p] and not b_ok[p] for p in a_ok)
    c = sum(not a_ok[p] and b_ok[p] for p in a_ok)
    mcnemar = at.dataframe[2].value
    assert mcnemar.iloc[0]["A"] == "good" and mcnemar.iloc[0]["B"] == "overfit"
    assert (mcnemar.iloc[0]["b: A right, B wrong"], mcnemar.iloc[0]["c: A wrong, B right"]) == (
        b,
        c,
    )
    assert mcnemar.iloc[0]["p-value"] < 0.05

    # the conclusion says so in words
    boxes = [e.value for e in (*at.success, *at.warning, *at.info)]
    verdict = next(v for v in boxes if "on accuracy by" in v)
    assert verdict.startswith("overfit is worse than good on accuracy by")
    assert "the difference is significant." in verdict

    # the flip gallery: right in good, wrong in overfit, then the other way round
    assert _flip_count(at) == (b, "good", "overfit")
    shown = [k for bt in at.button if (k := bt.key or "").startswith(ZOOM)]
    assert len(shown) == min(b, 24)
    flipped = {p for p in a_ok if a_ok[p] and not b_ok[p]}
    rows = overfit.predictions().loc[[int(k.removeprefix(ZOOM)) for k in shown]]
    assert set(rows["path"]) <= flipped and (rows["split"] == "test").all()
    at.segmented_control(key="cmp_flip_dir").set_value("b").run()
    assert not at.exception, at.exception
    assert _flip_count(at) == (c, "overfit", "good")


def test_per_class_table_matches_metrics_json(sample_runs: dict[str, Run]) -> None:
    good, overfit = sample_runs["good"], sample_runs["overfit"]
    at = _compare(open_page("compare", good), good, overfit)
    table = at.dataframe[1].value.set_index("class")
    for name, run in (("good", good), ("overfit", overfit)):
        for row in run.metrics["splits"]["test"]["per_class"]:
            assert table.loc[row["class"], f"recall {name}"] == pytest.approx(row["recall"])
    at.segmented_control(key="cmp_metric").set_value("precision").run()
    table = at.dataframe[1].value.set_index("class")
    for row in overfit.metrics["splits"]["test"]["per_class"]:
        assert table.loc[row["class"], "precision overfit"] == pytest.approx(row["precision"])


def test_baseline_switch_flips_the_sign(sample_runs: dict[str, Run]) -> None:
    good, overfit = sample_runs["good"], sample_runs["overfit"]
    at = _compare(open_page("compare", good), good, overfit)
    at.selectbox(key="cmp_baseline").set_value(overfit.run_id).run()
    assert not at.exception, at.exception
    overall = at.dataframe[0].value.set_index("model")
    assert overall.loc["good", "Δ accuracy"] > 0
    assert any(v.value.startswith("good is better than overfit") for v in at.success)


def test_three_runs_give_every_pair(sample_runs: dict[str, Run]) -> None:
    names = ["good", "overfit", "imbalanced"]
    runs = [sample_runs[n] for n in names]
    at = _compare(open_page("compare", runs[0]), *runs)
    overall = at.dataframe[0].value.set_index("model")
    pairs = at.dataframe[2].value
    assert len(pairs) == 3
    for name, run in zip(names, runs, strict=True):
        assert overall.loc[name, "accuracy"] == pytest.approx(
            run.metrics["splits"]["test"]["accuracy"]
        )
    for row in pairs.itertuples(index=False):
        a_ok, b_ok = _correct(sample_runs[row.A]), _correct(sample_runs[row.B])
        b = sum(a_ok[p] and not b_ok[p] for p in a_ok)
        c = sum(not a_ok[p] and b_ok[p] for p in a_ok)
        assert (row[2], row[3]) == (b, c)
    # the flip gallery compares the baseline with the run picked there
    at.selectbox(key="cmp_flip_b").set_value(runs[2].run_id).run()
    assert not at.exception, at.exception
    a_ok, b_ok = _correct(runs[0]), _correct(runs[2])
    assert _flip_count(at) == (sum(a_ok[p] and not b_ok[p] for p in a_ok), "good", "imbalanced")


def test_one_run_asks_for_another(sample_runs: dict[str, Run]) -> None:
    good = sample_runs["good"]
    at = _compare(open_page("compare", good), good)
    assert at.info[0].value.startswith("Pick at least two runs")
    assert not at.dataframe


@pytest.fixture
def foreign_run(sample_runs: dict[str, Run]) -> Iterator[Run]:
    """Return a copy of the good run claiming another dataset, removed afterwards."""
    good = sample_runs["good"]
    path = good.path.parent / "f0reign0000000000"
    shutil.copytree(good.path, path)
    meta = json.loads((path / "meta.json").read_text())
    meta["dataset"]["fingerprint"] = "another-dataset-fingerprint"
    meta["checkpoint"]["name"] = "elsewhere.safetensors"
    (path / "meta.json").write_text(json.dumps(meta))
    list_runs.clear()
    try:
        yield Run(path.name, path, meta, good.metrics)
    finally:
        shutil.rmtree(path)
        list_runs.clear()


def test_runs_of_different_datasets_are_refused(
    sample_runs: dict[str, Run], foreign_run: Run
) -> None:
    good = sample_runs["good"]
    at = _compare(open_page("compare", good), good, foreign_run)
    assert len(at.error) == 1
    assert at.error[0].value.startswith(
        "run elsewhere was evaluated on a different dataset (fingerprint another-data"
    )
    assert "compare runs of the same dataset" in at.error[0].value
    assert not at.dataframe


def test_disagreement_cards_show_both_models_predictions(sample_runs: dict[str, Run]) -> None:
    """Each card names the true class and both models' predictions with their confidence,
    read back by path from each run's own predictions()."""
    good, overfit = sample_runs["good"], sample_runs["overfit"]
    at = _compare(open_page("compare", good), good, overfit)
    shown = [int(k.removeprefix(ZOOM)) for bt in at.button if (k := bt.key or "").startswith(ZOOM)]
    assert shown
    g = good.predictions().set_index(["split", "path"])
    names = good.class_names
    cards = {e.value for e in at.markdown}
    for row in overfit.predictions().loc[shown].itertuples():
        mine = g.loc[(row.split, row.path)]
        pred, conf = int(mine["y_pred"]), float(mine["confidence"])
        head = (
            f"true '{names[row.y_true]}'  \n"
            f"good '{names[pred]}' {conf:.0%} {'✓' if pred == row.y_true else '✗'}  \n"
            f"overfit '{names[row.y_pred]}' {row.confidence:.0%} ✗"
        )
        assert head in cards, head
        assert pred == row.y_true  # right in good, wrong in overfit
