"""core.analysis.tables and core.figures.charts behind the Overview, Per-class and Overfitting
pages.

Tables are checked against scikit-learn and numpy; figures for content (traces, values,
colors, threshold lines), not looks.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import classification_report, precision_recall_fscore_support

from core.analysis import tables
from core.analysis.diagnostics import Thresholds, overfitting
from core.analysis.metrics import split_report
from core.figures import charts

CLASSES = ["cat", "dog", "bird"]
RED, AMBER, GREEN = charts.COLORS["bad"], charts.COLORS["needs attention"], charts.COLORS["good"]


def labels_from_cm(cm: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(t, p) for t, row in enumerate(cm) for p, n in enumerate(row) for _ in range(n)]
    y_true, y_pred = np.array(pairs, dtype=np.int64).T
    return y_true, y_pred


# cat recall 50%, dog recall 75% (between the thresholds), bird recall 100%.
CM = [[10, 6, 4], [2, 30, 8], [0, 0, 40]]


@pytest.fixture()
def m() -> dict:
    y_true, y_pred = labels_from_cm(CM)
    return split_report(y_true, y_pred, class_names=CLASSES)


@pytest.fixture()
def sk() -> dict:
    y_true, y_pred = labels_from_cm(CM)
    return classification_report(y_true, y_pred, target_names=CLASSES, output_dict=True)


def metrics_with_train() -> dict:
    y_true, y_pred = labels_from_cm(CM)
    train = split_report(y_true, y_true, class_names=CLASSES)  # perfect on train
    test = split_report(y_true, y_pred, class_names=CLASSES)
    return {"classes": CLASSES, "splits": {"train": train, "test": test}}


# -- tables -----------------------------------------------------------------------------------


def test_per_class_table_matches_sklearn_and_has_status(m: dict, sk: dict) -> None:
    df = tables.per_class_table(m)
    assert list(df.columns) == [
        "class", "precision", "recall", "f1", "specificity", "support", "status",
    ]  # fmt: skip
    for row in df.itertuples():
        ref = sk[row[1]]
        assert (row.precision, row.recall, row.f1) == pytest.approx(
            (ref["precision"], ref["recall"], ref["f1-score"])
        )
        assert row.support == ref["support"]
    # specificity of cat: images not cat (80) minus those called cat (2) over 80
    assert df.loc[0, "specificity"] == pytest.approx(78 / 80)
    assert list(df["status"]) == ["bad", "needs attention", "needs attention"]  # bird P 40/52


def test_averages_table_matches_sklearn(m: dict, sk: dict) -> None:
    df = tables.averages_table(m).set_index("class")
    for kind in ("macro", "weighted"):
        ref = sk[f"{kind} avg"]
        row = df.loc[f"{kind} avg"]
        assert (row.precision, row.recall, row.f1) == pytest.approx(
            (ref["precision"], ref["recall"], ref["f1-score"])
        )
        assert row.support == 100


def test_failing_classes_worst_first_with_the_weakest_metric(m: dict) -> None:
    df = tables.failing_classes(m)
    assert list(df["class"]) == ["cat", "dog", "bird"]
    assert list(df["weakest"]) == ["recall", "recall", "precision"]
    assert list(df["score"]) == pytest.approx([10 / 20, 30 / 40, 40 / 52])
    assert list(df["status"]) == ["bad", "needs attention", "needs attention"]
    assert tables.failing_classes(m, Thresholds(good_class=0.5, bad_class=0.5)).empty


def test_per_class_csv_parses_back_to_the_same_numbers(m: dict) -> None:
    df = pd.read_csv(io.BytesIO(tables.per_class_csv(m)))
    body = df.iloc[:3]
    y_true, y_pred = labels_from_cm(CM)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred)
    assert list(body["class"]) == CLASSES
    np.testing.assert_allclose(body[["precision", "recall", "f1"]].to_numpy().T, [p, r, f])
    assert list(body["support"]) == list(s)
    assert list(df["class"].iloc[3:]) == ["macro avg", "weighted avg"]


def test_headline_table_puts_test_first() -> None:
    metrics = metrics_with_train()
    df = tables.headline_table(metrics)
    assert list(df["split"]) == ["test", "train"]
    assert df.loc[0, "accuracy"] == pytest.approx(80 / 100)
    assert df.loc[1, "macro_f1"] == 1.0
    assert list(df["n"]) == [100, 100]


def test_ordered_splits() -> None:
    assert tables.ordered_splits(["train", "extra", "test", "val"]) == [
        "test", "val", "train", "extra",
    ]  # fmt: skip


def test_split_comparison_and_recall_by_split() -> None:
    metrics = metrics_with_train()
    ov = overfitting(metrics)
    cmp = tables.split_comparison(metrics, ov)
    assert list(cmp.columns) == ["train", "test", "gap"]
    assert list(cmp.index) == ["accuracy", "balanced accuracy", "macro F1"]
    assert cmp.loc["accuracy", "gap"] == pytest.approx(0.2)
    by_class = tables.recall_by_split(metrics, ov)
    assert list(by_class["class"]) == ["cat", "dog", "bird"]  # largest gap first
    assert list(by_class["test"]) == pytest.approx([0.5, 0.75, 1.0])
    assert list(by_class["gap"]) == pytest.approx([0.5, 0.25, 0.0])


def test_outcome_stats_match_numpy_per_split_and_outcome() -> None:
    preds = pd.DataFrame(
        {
            "split": ["test"] * 6 + ["train"] * 3,
            "y_true": [0, 0, 1, 1, 2, 2, 0, 1, 2],
            "y_pred": [0, 0, 1, 2, 2, 0, 0, 1, 2],
            "confidence": [0.9, 0.8, 0.7, 0.6, 0.95, 0.55, 1.0, 0.99, 0.98],
        }
    )
    df = tables.outcome_stats(preds, "confidence").set_index(["split", "outcome"])
    assert list(df.index) == [("test", "correct"), ("test", "wrong"), ("train", "correct")]
    right = np.array([0.9, 0.8, 0.7, 0.95])
    row = df.loc[("test", "correct")]
    assert row.n == 4 and row["mean"] == pytest.approx(right.mean())
    assert (row.q1, row["median"], row.q3) == pytest.approx(
        tuple(np.percentile(right, [25, 50, 75]))
    )
    assert (row.lowerfence, row.upperfence) == (0.7, 0.95)
    assert df.loc[("test", "wrong"), "n"] == 2


def test_outcome_stats_fences_leave_outliers_out() -> None:
    x = [1.0, 1.1, 1.2, 1.3, 1.4, 9.0]
    preds = pd.DataFrame({"split": "test", "y_true": 0, "y_pred": [0] * 6, "loss": x})
    row = tables.outcome_stats(preds, "loss").iloc[0]
    assert row.upperfence == 1.4 and row["max"] == 9.0


META = {
    "checkpoint": {"name": "good.safetensors", "sha256": "abcdef0123456789" * 4, "format": "x"},
    "architecture": "digits_cnn",
    "class_names": CLASSES,
    "preprocessing": {"image_size": 32, "channels": 1, "mean": [0.5], "std": [0.25],
                      "resize": "stretch"},
    "dataset": {"root": "/data/digits", "splits": {"train": 1257, "test": 540}},
    "skipped": [{"split": "test", "path": "3/bad.png", "reason": "cannot identify image"}],
    "device": "cpu",
    "timings": {"load_s": 0.5, "scan_s": 0.25, "inference_s": 1.25, "images_per_s": 898.5},
}  # fmt: skip


def test_run_facts_from_meta() -> None:
    facts = {section: dict(items) for section, items in tables.run_facts(META).items()}
    assert facts["Checkpoint"]["sha256"] == "abcdef012345"
    assert facts["Model"]["input"] == "32px, 1 channel(s), resize stretch"
    assert facts["Model"]["mean / std"] == "0.5 / 0.25"
    assert list(facts["Dataset"]) == ["root", "test images", "train images", "skipped files"]
    assert facts["Dataset"]["train images"] == "1,257"
    assert facts["Dataset"]["skipped files"] == "1"
    assert facts["Evaluation"]["time taken"] == "2.0 s"
    assert facts["Evaluation"]["speed"] == "898 images/s"


def test_skipped_table_lists_reasons() -> None:
    df = tables.skipped_table(META)
    assert df.to_dict("records") == META["skipped"]
    assert tables.skipped_table({}).empty


def test_cell_styles_color_each_score_by_level(m: dict) -> None:
    table = tables.per_class_table(m)
    css = tables.cell_styles(table, Thresholds())
    assert css.loc[0, "recall"] == tables.CELL_COLORS["bad"]  # cat 50%
    assert css.loc[1, "recall"] == tables.CELL_COLORS["needs attention"]  # dog 75%
    assert css.loc[2, "recall"] == tables.CELL_COLORS["good"]  # bird 100%
    assert css.loc[2, "status"] == tables.CELL_COLORS["needs attention"]
    assert set(css["support"]) == {""}
    html = tables.styled_per_class(table).to_html()
    assert "50.0%" in html and "rgba(214, 39, 40, 0.28)" in html


# -- charts -----------------------------------------------------------------------------------


def _lines(fig) -> list[tuple[str, float]]:
    return [
        ("h", s.y0) if s.y0 == s.y1 and s.xref != "x" else ("v", s.x0) for s in fig.layout.shapes
    ]


def test_recall_bars_values_colors_and_threshold_lines(m: dict) -> None:
    t = Thresholds()
    fig = charts.recall_bars(tables.per_class_table(m, t), t, accuracy=m["accuracy"])
    bar, *lines = fig.data
    assert list(bar.x) == CLASSES
    assert list(bar.y) == pytest.approx([0.5, 0.75, 1.0])
    assert list(bar.marker.color) == [RED, AMBER, GREEN]
    assert fig.layout.xaxis.type == "category"
    assert [v for _, v in _lines(fig)] == pytest.approx([0.85, 0.6, 0.8])
    assert [tr.name for tr in lines] == ["good ≥ 85%", "bad < 60%", "accuracy 80%"]
    assert [tr.line.color for tr in lines] == [AMBER, RED, "#555555"]


def test_recall_bars_follow_the_thresholds(m: dict) -> None:
    t = Thresholds(good_class=0.7, bad_class=0.4)
    fig = charts.recall_bars(tables.per_class_table(m, t), t)
    assert list(fig.data[0].marker.color) == [AMBER, GREEN, GREEN]


def many_classes(n: int = 40) -> dict:
    rng = np.random.default_rng(0)
    y_true = np.repeat(np.arange(n), 10)
    y_pred = np.where(rng.random(y_true.size) < 0.8, y_true, rng.integers(0, n, y_true.size))
    return split_report(y_true, y_pred, class_names=[f"class_{i:02d}" for i in range(n)])


def test_recall_bars_turn_horizontal_for_many_classes() -> None:
    table = tables.per_class_table(many_classes())
    fig = charts.recall_bars(table)
    assert fig.data[0].orientation == "h"
    assert fig.data[0].y[-1] == "class_00"  # first class drawn on top
    assert fig.layout.height == 120 + charts.ROW_PX * 40


def test_per_class_bars_three_metrics_grouped(m: dict) -> None:
    fig = charts.per_class_bars(tables.per_class_table(m))
    assert [tr.name for tr in fig.data] == ["precision", "recall", "F1", "good ≥ 85%", "bad < 60%"]
    y_true, y_pred = labels_from_cm(CM)
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred)
    for trace, ref in zip(fig.data[:3], (p, r, f), strict=True):
        assert list(trace.x) == CLASSES
        assert list(trace.y) == pytest.approx(ref)
    assert fig.layout.barmode == "group"
    assert sorted(v for _, v in _lines(fig)) == pytest.approx([0.6, 0.85])


def test_per_class_bars_many_classes_sorted_by_f1_and_taller() -> None:
    table = tables.per_class_table(many_classes())
    fig = charts.per_class_bars(table)
    f1 = fig.data[2]
    assert f1.orientation == "h"
    assert list(f1.x) == sorted(table["f1"], reverse=True)
    assert set(f1.y) == set(table["class"])
    assert fig.layout.height > 1000


def test_gap_bars_sorted_as_given_and_colored_by_overfit_gap() -> None:
    ov = overfitting(metrics_with_train())
    fig = charts.gap_bars(ov.class_gaps, Thresholds(overfit_gap=0.1))
    bar, line = fig.data
    assert line.name == "flagged above 10 pts"
    assert list(bar.x) == ["cat", "dog", "bird"]
    assert list(bar.y) == pytest.approx([0.5, 0.25, 0.0])
    assert list(bar.marker.color) == [RED, RED, GREEN]
    fig = charts.gap_bars(ov.class_gaps, Thresholds(overfit_gap=0.2))
    assert list(fig.data[0].marker.color) == [RED, AMBER, GREEN]
    assert [v for _, v in _lines(fig)] == [0.2]


def test_outcome_boxes_draw_the_precomputed_stats() -> None:
    preds = pd.DataFrame(
        {
            "split": ["test", "test", "test", "train"],
            "y_true": [0, 1, 1, 0],
            "y_pred": [0, 1, 0, 0],
            "loss": [0.1, 0.3, 2.0, 0.01],
        }
    )
    stats = tables.outcome_stats(preds, "loss")
    fig = charts.outcome_boxes(stats, column="loss", title="Loss")
    correct, wrong = fig.data
    assert (correct.name, wrong.name) == ("correct", "wrong")
    assert list(correct.x) == ["test", "train"]
    assert list(correct.median) == pytest.approx([0.2, 0.01])
    assert list(wrong.x) == ["test"] and list(wrong.median) == [2.0]
    assert correct.marker.color == GREEN and wrong.marker.color == RED


def test_styled_failing_colors_status_and_score(m: dict) -> None:
    failing = tables.failing_classes(m)
    html = tables.styled_failing(failing).to_html()
    assert "50.0%" in html  # cat's recall as the score
    assert html.count("rgba(214, 39, 40, 0.28)") >= 1 and "rgba(255, 159, 28, 0.30)" in html


def test_split_comparison_against_val_keeps_every_split() -> None:
    metrics = metrics_with_train()
    y_true, _ = labels_from_cm(CM)
    y_val = np.where(y_true == 0, 1, y_true)  # val: every cat called dog
    metrics["splits"]["val"] = split_report(y_true, y_val, class_names=CLASSES)
    ov = overfitting(metrics, other="val")
    cmp = tables.split_comparison(metrics, ov)
    assert list(cmp.columns) == ["train", "val", "test", "gap"]
    assert cmp.loc["accuracy", "gap"] == pytest.approx(0.2)  # 20 cats of 100 images
    by_class = tables.recall_by_split(metrics, ov)
    assert list(by_class.columns) == ["class", "train", "val", "test", "gap"]
    assert by_class.iloc[0]["class"] == "cat" and by_class.iloc[0]["gap"] == 1.0


@pytest.mark.parametrize(
    ("before", "after", "shown"),
    [
        (0.9870, 0.9872, None),  # +0.02 points: "+0.0 pts" with an up arrow before
        (0.9872, 0.9870, None),  # and no "-0.0" either
        (0.98, 0.99, "+1.0 pts"),
        (0.50, 0.4994, "-0.1 pts"),  # 50.0% -> 49.9%: visible, so shown
        (0.98744, 0.98756, "+0.1 pts"),  # 98.7% -> 98.8%, although only 0.012 points apart
    ],
    ids=["tiny-up", "tiny-down", "one-point", "shows-as-0.1", "straddles-a-rounding"],
)
def test_points_delta_only_for_a_visible_change(before, after, shown) -> None:
    assert tables.points_delta(before, after) == shown
    a, b = (f"{x:.1%}" for x in (before, after))  # what the page shows beside the delta
    assert (shown is None) == (a == b)


def test_count_delta() -> None:
    assert tables.count_delta(555, 544) == "-11"
    assert tables.count_delta(10, 10) is None
    assert tables.count_delta(999, 1_200) == "+201"


def _skipped_run() -> tuple[dict, dict]:
    """A test split of 13 files found (one a truncated PNG: evaluated 12) and 2 files the scan
    set aside (a text file, a hidden file); a train split with nothing skipped."""
    meta = {**META, "dataset": {"root": "/d", "splits": {"train": 9, "test": 13}}}
    metrics = {
        "splits": {
            "train": {"n": 9, "skipped": []},
            "test": {"n": 12, "skipped": ["cat/broken.png", "dog/notes.txt", "dog/.x.png"]},
        }
    }
    return meta, metrics


def test_image_counts_tell_found_from_evaluated() -> None:
    meta, metrics = _skipped_run()
    counts = tables.image_counts(meta, metrics).set_index("split")
    assert counts.loc["test"].tolist() == [13, 12, 1, 2]
    assert counts.loc["train"].tolist() == [9, 9, 0, 0]
    assert (counts["found"] - counts["unreadable"] == counts["evaluated"]).all()


def test_count_note_explains_the_headline_count() -> None:
    meta, metrics = _skipped_run()
    note = tables.count_note(meta, metrics, "test")
    # the headline shows metrics' n (12), the dataset card the files found (13)
    assert note.startswith("12 of the 13 test images found were evaluated: 1 file could not")
    assert "2 other files were not counted as images" in note
    assert tables.count_note(meta, metrics, "train") == ""
    facts = {section: dict(items) for section, items in tables.run_facts(meta, metrics).items()}
    assert facts["Dataset"]["test images"] == "12 evaluated of 13 found"
    assert facts["Dataset"]["train images"] == "9"
    assert dict(tables.run_facts(meta)["Dataset"])["test images"] == "13"  # no metrics: as before


def test_headline_metric_is_the_held_out_accuracy() -> None:
    m = {"splits": {"train": {"n": 10, "accuracy": 1.0}, "test": {"n": 4, "accuracy": 0.75}}}
    assert tables.headline_metric(m) == "test acc 75.0%"  # 3 of 4, test before train
    m["splits"]["test"] = {"n": 0, "accuracy": 0.0}
    assert tables.headline_metric(m) == "train acc 100.0%"  # an empty split has no headline
    assert tables.headline_metric({"splits": {}}) == "no images"
