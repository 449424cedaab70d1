"""The Overfitting page under AppTest: the sample runs, and a run without a train split."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import plotly.io as pio
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from core.engine.evaluate import evaluate
from core.engine.nets import DigitsCNN
from core.runs import Run
from ui.state import list_runs

from .conftest import open_page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def test_only_run(sample_runs: dict[str, Run], tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Return a run of a tiny random 2-class model on root/<class>/<image> (a test split only),
    evaluated into the same store the app reads."""
    base = tmp_path_factory.mktemp("test-only")
    rng = np.random.default_rng(0)
    for name in ("circle", "square"):
        (base / "data" / name).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (16, 16), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(base / "data" / name / f"{i}.png")
    torch.manual_seed(0)
    model = DigitsCNN(num_classes=2, in_channels=1).eval()
    meta = {
        "architecture": "digits_cnn",
        "class_names": ["circle", "square"],
        "preprocessing": {"image_size": 16, "channels": 1, "mean": [0.5], "std": [0.5]},
    }
    ckpt = base / "tiny.safetensors"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(ckpt), metadata={"classlens": json.dumps(meta)})
    run = evaluate(
        ckpt, base / "data", device="cpu", num_workers=0, runs_dir=os.environ["CLASSLENS_RUNS_DIR"]
    )
    assert run.splits == ["test"]
    list_runs.clear()  # the app re-reads the store every few seconds; make it see this run now
    return run


def test_overfit_model_is_flagged_with_its_gap(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["overfit"]
    splits = run.metrics["splits"]
    gap = splits["train"]["accuracy"] - splits["test"]["accuracy"]
    at = open_page("overfitting", run)

    alert = (at.error or at.warning)[0].value
    shown = re.search(r"a gap of (-?[\d.]+) points", alert)
    assert shown, alert
    assert float(shown.group(1)) == pytest.approx(100 * gap, abs=0.05)
    assert alert.startswith("Overfitting:" if gap > 0.10 else "Some overfitting:")
    # The class named first is the one with the largest recall gap.
    recall = {
        s: {c["class"]: c["recall"] for c in splits[s]["per_class"]} for s in ("train", "test")
    }
    worst = max(recall["test"], key=lambda k: recall["train"][k] - recall["test"][k])
    assert f"Largest per-class recall gaps: '{worst}'" in alert


def test_overall_and_per_class_tables_equal_metrics_json(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["overfit"]
    splits = run.metrics["splits"]
    at = open_page("overfitting", run)
    overall = at.dataframe[0].value
    assert list(overall.columns) == ["train", "test", "gap"]
    assert overall.loc["accuracy", "train"] == splits["train"]["accuracy"]
    assert overall.loc["macro F1", "test"] == splits["test"]["macro"]["f1"]
    assert overall.loc["accuracy", "gap"] == pytest.approx(
        splits["train"]["accuracy"] - splits["test"]["accuracy"]
    )
    by_class = at.dataframe[1].value.set_index("class")
    pairs = zip(splits["train"]["per_class"], splits["test"]["per_class"], strict=True)
    for c_train, c_test in pairs:
        row = by_class.loc[c_test["class"]]
        assert (row["train"], row["test"]) == (c_train["recall"], c_test["recall"])
        assert row["gap"] == pytest.approx(c_train["recall"] - c_test["recall"])
    assert list(by_class["gap"]) == sorted(by_class["gap"], reverse=True)


def test_gap_chart_and_distributions(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["overfit"]
    at = open_page("overfitting", run)
    figs = [pio.from_json(el.proto.spec) for el in at.get("plotly_chart")]
    assert len(figs) == 3
    gap_fig, conf_fig, loss_fig = figs
    by_class = at.dataframe[1].value
    assert list(gap_fig.data[0].x) == list(by_class["class"])
    assert list(gap_fig.data[0].y) == pytest.approx(list(by_class["gap"]))

    df = run.predictions()
    test_right = df[(df.split == "test") & (df.y_true == df.y_pred)]
    correct = conf_fig.data[0]
    assert correct.name == "correct"
    assert correct.x[0] == "test"
    assert correct.median[0] == pytest.approx(float(np.median(test_right.confidence)))
    wrong = loss_fig.data[1]
    test_wrong = df[(df.split == "test") & (df.y_true != df.y_pred)]
    assert wrong.name == "wrong"
    assert wrong.median[0] == pytest.approx(float(np.median(test_wrong.loss)), rel=1e-5)


def test_a_slice_gap_is_stated_beside_the_whole_datasets(sample_runs: dict[str, Run]) -> None:
    # sample_data/build_sample.py degrades only scanner D's TEST images: on that slice the
    # train/test gap is the scanner's doing, which the page must not call overfitting
    run = sample_runs["good"]
    at = open_page("overfitting", run, where="scanner~is~D")
    assert not at.exception, at.exception
    overall = at.dataframe[0].value
    gap = overall.loc["accuracy", "train"] - overall.loc["accuracy", "test"]
    assert gap > 0.05, "the sample's degraded scanner shows a gap on its slice"
    alert = (at.error or at.warning)[0].value
    whole = run.metrics["splits"]
    whole_gap = whole["train"]["accuracy"] - whole["test"]["accuracy"]
    assert alert.startswith("Train/test gap on this slice: train accuracy"), alert
    assert f"a gap of {100 * gap:.1f} points" in alert
    assert f"compare with the whole dataset's gap: {100 * whole_gap:.1f} points." in alert
    assert "learned" not in alert and "overfitting" not in alert.lower()
    # Overview's gap check on the same slice: the gap, not the word
    ov = open_page("overview", run, where="scanner~is~D")
    assert not ov.exception, ov.exception
    shown = " ".join(e.value for e in [*ov.markdown, *ov.error, *ov.warning, *ov.success])
    assert f"a gap of {100 * gap:.1f} points" in shown
    assert f"the whole dataset's gap: {100 * whole_gap:.1f} points" in shown
    assert "overfitting, train accuracy" not in shown


def test_good_model_shows_no_overfitting_or_a_small_gap(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["good"]
    splits = run.metrics["splits"]
    gap = splits["train"]["accuracy"] - splits["test"]["accuracy"]
    at = open_page("overfitting", run)
    assert not at.error
    assert gap <= 0.10
    box = at.success if gap <= 0.05 else at.warning
    assert f"a gap of {100 * gap:.1f} points" in box[0].value


def test_run_without_train_split_says_so(test_only_run: Run) -> None:
    at = open_page("overfitting", test_only_run)
    assert at.info[0].value.startswith("No train split in this dataset")
    assert "root/train/<class>/" in at.info[0].value
    assert not at.dataframe and not at.get("plotly_chart")


@pytest.mark.parametrize("page", ["overview", "per_class"])
def test_run_without_train_split_renders_other_pages(test_only_run: Run, page: str) -> None:
    at = open_page(page, test_only_run)
    assert at.dataframe or at.metric
    if page == "overview":
        assert [m.label for m in at.metric] == [
            "Accuracy (test)", "Balanced accuracy (test)", "Macro F1 (test)", "Images (test)",
        ]  # fmt: skip
        assert int(at.metric[3].value) == 6
