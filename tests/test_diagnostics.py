"""core.analysis.diagnostics: the verdicts, checked on hand-built cases and against scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, recall_score

from core.analysis import diagnostics as dg
from core.analysis.diagnostics import Thresholds
from core.analysis.metrics import split_report

WORKED = json.loads((Path(__file__).parent / "data" / "worked_example.json").read_text())


def labels_from_cm(cm: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Return y_true, y_pred that produce the confusion matrix ``cm`` (rows true)."""
    pairs = [(t, p) for t, row in enumerate(cm) for p, n in enumerate(row) for _ in range(n)]
    y_true, y_pred = np.array(pairs, dtype=np.int64).T
    return y_true, y_pred


def report(cm: list[list[int]], class_names: list[str]) -> dict:
    y_true, y_pred = labels_from_cm(cm)
    return split_report(y_true, y_pred, class_names=class_names)


# The article's self-check: 98% accuracy, 12% recall on "cat" (6 of 50 found, 44 called dog).
SELF_CHECK_CM = [[6, 44, 0], [0, 1075, 0], [0, 0, 1075]]
CLASSES = ["cat", "dog", "bird"]


@pytest.fixture()
def self_check() -> dict:
    return report(SELF_CHECK_CM, CLASSES)


@pytest.fixture()
def worked() -> dict:
    return report(WORKED["confusion_matrix"], WORKED["classes"])


def balanced_good() -> dict:
    """Three classes of 100 images, 97 of each found, errors spread evenly."""
    return report([[97, 2, 1], [1, 97, 2], [2, 1, 97]], CLASSES)


# -- health -----------------------------------------------------------------------------------


def test_self_check_is_not_production_ready_and_names_cat(self_check: dict) -> None:
    y_true, y_pred = labels_from_cm(SELF_CHECK_CM)
    assert accuracy_score(y_true, y_pred) == pytest.approx(0.98)
    assert recall_score(y_true, y_pred, average=None)[0] == pytest.approx(0.12)

    v = dg.health(self_check)

    assert v.level == "bad"
    assert v.headline == ("Not production-ready: recall on 'cat' is 12% although accuracy is 98%.")
    assert v.failing[0] == dg.ClassIssue("cat", "recall", pytest.approx(0.12), 50)
    assert "the model misses 88% of the 'cat' images" in v.reasons[0]


def test_worked_example_needs_attention_because_accuracy_is_not_above_90(worked: dict) -> None:
    assert worked["accuracy"] == pytest.approx(WORKED["expected"]["accuracy"])

    v = dg.health(worked)

    assert v.level == "needs attention"
    assert v.failing == ()  # every class is between 0.888 and 0.909, above 0.85
    assert v.headline.startswith("Needs attention: accuracy is 90%, not above 90%")
    assert v.reasons == ("Accuracy is 90%, not above 90%.",)


def test_worked_example_is_good_once_the_accuracy_bar_is_lowered(worked: dict) -> None:
    v = dg.health(worked, Thresholds(good_accuracy=0.89))
    assert v.level == "good"
    assert v.headline == ("Good: accuracy 90%, and every class's precision and recall above 85%.")


def test_raising_the_class_bar_flips_the_worked_example_to_bad(worked: dict) -> None:
    # Bird recall is 40/45 = 0.8889, the lowest score of the example.
    v = dg.health(worked, Thresholds(good_class=0.95, bad_class=0.89))
    assert v.level == "bad"
    assert "recall on 'Bird' is 88.9%" in v.headline
    assert v.headline.endswith("and accuracy is only 90%.")


def test_good_model_is_good_with_a_reason() -> None:
    v = dg.health(balanced_good())
    assert v.level == "good"
    assert v.failing == ()
    assert v.reasons == (
        "Accuracy 97% is above 90% and the weakest class score is 97%, above 85%.",
    )


def test_class_between_thresholds_needs_attention_and_is_named() -> None:
    # "dog" recall 80/100: below 85%, above 60%; accuracy 94%.
    m = report([[100, 0, 0], [10, 80, 10], [0, 0, 100]], CLASSES)
    v = dg.health(m)
    assert v.level == "needs attention"
    assert v.headline == "Needs attention: recall on 'dog' is 80% although accuracy is 93.3%."
    assert [(i.name, i.metric) for i in v.failing] == [("dog", "recall")]


def test_accuracy_near_50_percent_is_bad() -> None:
    m = report([[50, 50], [50, 50]], ["a", "b"])
    v = dg.health(m)
    assert v.level == "bad"
    assert v.reasons[0] == "Accuracy is 50%, at or below the 60% floor."
    assert v.headline == "Not production-ready: recall on 'a' is 50% and accuracy is only 50%."


def test_empty_split_is_bad() -> None:
    m = split_report(np.array([], np.int64), np.array([], np.int64), class_names=CLASSES)
    assert dg.health(m).level == "bad"
    assert "No images" in dg.health(m).headline


def test_imbalance_does_not_lower_a_model_that_is_good_on_every_class() -> None:
    m = report([[1000, 0], [3, 97]], ["big", "small"])
    assert dg.imbalance_warning(m) is not None
    assert dg.health(m).level == "good"


# -- class issues -----------------------------------------------------------------------------


def test_class_issues_match_sklearn_and_are_worst_first(worked: dict) -> None:
    y_true, y_pred = labels_from_cm(WORKED["confusion_matrix"])
    precision, recall, _, support = precision_recall_fscore_support(y_true, y_pred)
    issues = dg.class_issues(worked, 0.91)
    expected = sorted(
        [
            (name, metric, value)
            for k, name in enumerate(WORKED["classes"])
            for metric, value in (("recall", recall[k]), ("precision", precision[k]))
            if value < 0.91
        ],
        key=lambda x: x[2],
    )
    assert [(i.name, i.metric) for i in issues] == [(n, m) for n, m, _ in expected]
    assert [i.value for i in issues] == pytest.approx([v for *_, v in expected])
    assert [i.support for i in issues][0] == support[WORKED["classes"].index(issues[0].name)]


def test_never_predicted_class_fails_on_recall_only() -> None:
    # "c" has 10 images and is never predicted: its precision is undefined, not 0%.
    m = report([[10, 0, 0], [0, 10, 0], [5, 5, 0]], ["a", "b", "c"])
    assert [(i.name, i.metric) for i in dg.class_issues(m, 0.6)] == [("c", "recall")]


def test_class_without_images_is_judged_on_precision_when_predicted() -> None:
    # "c" has no images but the model called 4 "a" images "c": precision 0, recall undefined.
    m = report([[6, 0, 4], [0, 10, 0], [0, 0, 0]], ["a", "b", "c"])
    issues = dg.class_issues(m, 0.85)
    assert ("c", "precision") in [(i.name, i.metric) for i in issues]
    assert ("c", "recall") not in [(i.name, i.metric) for i in issues]
    assert dg.class_levels(m) == ["needs attention", "good", "bad"]


def test_class_without_images_or_predictions_is_not_a_failure() -> None:
    m = report([[10, 0, 0], [0, 10, 0], [0, 0, 0]], ["a", "b", "c"])
    assert dg.class_issues(m, 0.85) == []
    assert dg.class_levels(m) == ["good", "good", "good"]
    assert dg.health(m).level == "good"


@pytest.mark.parametrize(
    ("value", "level"),
    [(0.59, "bad"), (0.60, "needs attention"), (0.849, "needs attention"), (0.85, "good")],
    ids=["below-bad", "at-bad", "below-good", "at-good"],
)
def test_level_of_uses_both_class_thresholds(value: float, level: str) -> None:
    assert dg.level_of(value) == level


# -- imbalance --------------------------------------------------------------------------------


def test_imbalance_warning_on_names_both_classes_and_ratio(self_check: dict) -> None:
    w = dg.imbalance_warning(self_check)
    assert dg.imbalance_ratio(self_check) == pytest.approx(1075 / 50)
    assert w is not None
    assert "'dog' has 1075 images and 'cat' 50 (21.5x)" in w
    assert "balanced accuracy (" in w


def test_imbalance_warning_off_for_balanced_classes(worked: dict) -> None:
    assert dg.imbalance_ratio(worked) == pytest.approx(55 / 45)
    assert dg.imbalance_warning(worked) is None


def test_imbalance_ratio_threshold_switches_the_warning(worked: dict) -> None:
    assert dg.imbalance_warning(worked, Thresholds(imbalance_ratio=1.2)) is not None
    assert dg.imbalance_warning(worked, Thresholds(imbalance_ratio=1.25)) is None


# -- overfitting ------------------------------------------------------------------------------


def two_splits(train_cm: list[list[int]], test_cm: list[list[int]], **more) -> dict:
    splits = {"train": report(train_cm, CLASSES), "test": report(test_cm, CLASSES)}
    splits.update({k: report(v, CLASSES) for k, v in more.items()})
    return {"classes": CLASSES, "splits": splits}


PERFECT = [[100, 0, 0], [0, 100, 0], [0, 0, 100]]


def test_overfitting_bad_gap_equals_sklearn_and_names_the_worst_classes() -> None:
    test_cm = [[70, 20, 10], [5, 90, 5], [0, 1, 99]]
    metrics = two_splits(PERFECT, test_cm)
    y_true, y_pred = labels_from_cm(test_cm)
    test_recall = recall_score(y_true, y_pred, average=None)

    ov = dg.overfitting(metrics)

    assert ov.available and ov.level == "bad" and ov.other == "test"
    assert ov.accuracy_gap == pytest.approx(1.0 - accuracy_score(y_true, y_pred))
    assert [g.name for g in ov.class_gaps] == ["cat", "dog", "bird"]
    assert [g.gap for g in ov.class_gaps] == pytest.approx(1.0 - test_recall)
    assert f"a gap of {100 * ov.accuracy_gap:.1f} points" in ov.message
    assert "'cat' (+30 pts), 'dog' (+10 pts)" in ov.message
    assert "'bird'" not in ov.message  # 1 point: below the 5-point flag


def test_a_slice_gap_is_stated_beside_the_whole_datasets_not_called_overfitting() -> None:
    # as 'scanner is D' in the sample: only the slice's test images are degraded
    test_cm = [[70, 20, 10], [5, 90, 5], [0, 1, 99]]
    sliced = two_splits(PERFECT, test_cm)
    whole = two_splits(PERFECT, [[97, 2, 1], [1, 98, 1], [0, 1, 99]])
    y_true, y_pred = labels_from_cm(test_cm)
    gap = 100 * (1.0 - accuracy_score(y_true, y_pred))  # 13.7 points, by sklearn
    w_true, w_pred = labels_from_cm([[97, 2, 1], [1, 98, 1], [0, 1, 99]])
    whole_gap = 100 * (1.0 - accuracy_score(w_true, w_pred))  # 2.0 points

    ov = dg.overfitting(sliced, whole=whole)

    assert ov.level == "bad" and ov.accuracy_gap == pytest.approx(gap / 100)
    assert ov.message.startswith("Train/test gap on this slice: train accuracy 100% vs test")
    assert f"a gap of {gap:.1f} points" in ov.message
    assert f"compare with the whole dataset's gap: {whole_gap:.1f} points." in ov.message
    assert "how the slice's train and test images differ" in ov.message
    assert "learned" not in ov.message and "Overfitting" not in ov.message
    assert "'cat' (+30 pts), 'dog' (+10 pts)" in ov.message
    # unfiltered, the same numbers keep the overfitting wording
    assert "learned its training images" in dg.overfitting(sliced).message
    # a moderate gap on a slice: the same caveat, the level unchanged
    moderate = two_splits(PERFECT, [[90, 10, 0], [5, 95, 0], [6, 0, 94]])
    ov = dg.overfitting(moderate, whole=whole)
    assert ov.level == "needs attention" and "Some overfitting" not in ov.message
    assert "the whole dataset's gap: 2.0 points" in ov.message
    # no gap on a slice: the unfiltered sentence
    fine = two_splits(PERFECT, [[99, 1, 0], [0, 99, 1], [1, 0, 99]])
    assert dg.overfitting(fine, whole=whole).message == dg.overfitting(fine).message


def test_overfitting_moderate_gap_needs_attention() -> None:
    ov = dg.overfitting(two_splits(PERFECT, [[90, 10, 0], [5, 95, 0], [6, 0, 94]]))
    assert ov.accuracy_gap == pytest.approx(0.07)
    assert ov.level == "needs attention"
    assert ov.message.startswith("Some overfitting: train accuracy 100% vs test 93%")


def test_overfitting_one_class_gap_alone_needs_attention() -> None:
    ov = dg.overfitting(two_splits(PERFECT, [[92, 8, 0], [0, 100, 0], [0, 0, 100]]))
    assert ov.accuracy_gap == pytest.approx(8 / 300)
    assert ov.level == "needs attention"
    assert "'cat' (+8 pts)" in ov.message


def test_no_overfitting_is_good() -> None:
    ov = dg.overfitting(two_splits(PERFECT, [[99, 1, 0], [0, 99, 1], [1, 0, 99]]))
    assert ov.level == "good"
    assert ov.message.startswith("No sign of overfitting")
    assert ov.macro_f1_gap == pytest.approx(0.01)


def test_overfit_gap_threshold_flips_the_level() -> None:
    metrics = two_splits(PERFECT, [[90, 10, 0], [5, 95, 0], [6, 0, 94]])
    assert dg.overfitting(metrics, Thresholds(overfit_gap=0.02)).level == "bad"
    assert dg.overfitting(metrics, Thresholds(overfit_gap=0.2)).level == "good"


def test_overfitting_compares_with_val_when_asked_and_defaults_to_test() -> None:
    metrics = two_splits(PERFECT, [[99, 1, 0], [0, 99, 1], [1, 0, 99]], val=PERFECT)
    assert dg.overfitting(metrics).other == "test"
    val = dg.overfitting(metrics, other="val")
    assert val.other == "val" and val.accuracy_gap == 0.0 and val.level == "good"


def test_overfitting_unavailable_without_train_split() -> None:
    metrics = {"classes": CLASSES, "splits": {"test": report(PERFECT, CLASSES)}}
    ov = dg.overfitting(metrics)
    assert not ov.available
    assert ov.class_gaps == ()
    assert ov.message.startswith("No train split in this dataset")
    assert "root/train/<class>" in ov.message


def test_overfitting_unavailable_without_held_out_split() -> None:
    metrics = {"classes": CLASSES, "splits": {"train": report(PERFECT, CLASSES)}}
    ov = dg.overfitting(metrics)
    assert not ov.available
    assert ov.message.startswith("No test or val split")
    assert dg.overfitting(metrics, other="val").message.startswith("No 'val' split")


# -- thresholds -------------------------------------------------------------------------------


def test_thresholds_reject_bad_above_good() -> None:
    with pytest.raises(ValueError, match="bad' threshold is above its 'good' one"):
        Thresholds(bad_class=0.9, good_class=0.85)
    with pytest.raises(ValueError, match=r"good_accuracy must be a fraction in \[0, 1\]"):
        Thresholds(good_accuracy=90)
    with pytest.raises(ValueError, match="imbalance_ratio must be at least 1"):
        Thresholds(imbalance_ratio=0.5)


def test_percent_formatting() -> None:
    assert dg.pct(0.91234) == "91.2%"
    assert dg.pct(1.0, 0) == "100%"
    assert dg._pct(0.12) == "12%"
    assert dg._pct(0.9996) == "100.0%"  # not rounded up to a whole "100%"


def test_many_weak_scores_share_one_reason_line() -> None:
    # Five classes each at 80% recall (40/50, errors to the next class): five recall and five
    # precision scores between 60% and 85%.
    cm = [[40 if j == i else 10 if j == (i + 1) % 5 else 0 for j in range(5)] for i in range(5)]
    m = report(cm, list("abcde"))
    v = dg.health(m)
    assert v.level == "needs attention"
    assert len(v.failing) == 10
    assert v.reasons[0] == "Accuracy is 80%, not above 90%."
    assert v.reasons[1].startswith("10 more scores below 85%: recall on 'a' 80%, ")
    assert len(v.reasons) == 2


def test_few_weak_scores_get_a_line_each() -> None:
    m = report([[100, 0, 0], [10, 80, 10], [0, 0, 100]], CLASSES)
    assert dg.health(m).reasons == ("Recall on 'dog' is 80% (below 85%).",)


def test_many_bad_scores_are_summed_up_after_the_worst_three() -> None:
    # 12 classes, each finding 5 of its 10 images (the rest go to the next class): 24 scores
    # at 50%, below the 60% floor.
    k = 12
    cm = [[5 if j == i else 5 if j == (i + 1) % k else 0 for j in range(k)] for i in range(k)]
    v = dg.health(report(cm, [f"c{i}" for i in range(k)]))
    assert v.level == "bad"
    assert v.reasons[0] == "Accuracy is 50%, at or below the 60% floor."
    # Ties: recall (missed images) before precision.
    assert [r.split(" is ")[0] for r in v.reasons[1:4]] == [
        "Recall on 'c0'", "Recall on 'c1'", "Recall on 'c2'",
    ]  # fmt: skip
    assert v.reasons[4].startswith("21 more scores below 60%: recall on 'c3' 50%, ")
    assert v.reasons[4].endswith(" and 11 more.")
    assert len(v.reasons) == 5
