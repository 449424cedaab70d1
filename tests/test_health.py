"""core.analysis.health: each check's level and sentence from hand-made numbers, at the
boundaries."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from core.analysis import calibration, health, slices
from core.analysis.diagnostics import Thresholds, pct_brief
from core.analysis.metrics import split_report

T = Thresholds()  # good 90% / 85%, bad 60% / 60%, imbalance 3x, overfit gap 5 points
NAMES = ["cat", "dog", "bird"]


def split_metrics(y_true: list[int], y_pred: list[int], **extra: object) -> dict:
    """Return a metrics.json split entry of the predictions (core.analysis.metrics, = sklearn)."""
    m = split_report(np.array(y_true), np.array(y_pred), class_names=NAMES)
    m.update(extra)
    return m


def hand(per_class: list[tuple[str, float, float, int]], accuracy: float, **extra) -> dict:
    """Return a split entry from literal (class, precision, recall, support) rows."""
    m = {
        "n": sum(s for *_, s in per_class),
        "accuracy": accuracy,
        "balanced_accuracy": float(np.mean([r for _, _, r, s in per_class if s])),
        "per_class": [
            {"class": c, "precision": p, "recall": r, "f1": 0.0, "support": s}
            for c, p, r, s in per_class
        ],
        "macro": {"precision": 0.0, "recall": 0.0, "f1": 0.0},
    }
    m.update(extra)
    return m


# --- per-class thresholds ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recall", "level"),
    [(0.5999, "fail"), (0.59, "fail"), (0.60, "attention"), (0.84, "attention"), (0.85, "pass")],
    ids=["just-below-bad", "below-bad", "at-bad", "below-good", "at-good"],
)
def test_class_level_flips_at_the_thresholds(recall: float, level: str) -> None:
    m = hand([("cat", 0.95, 0.95, 50), ("dog", 0.95, recall, 50)], accuracy=0.95)
    c = health.check_classes(m, T)
    assert c.level == level
    assert c.page == "pages/per_class.py"
    if level != "pass":
        assert c.sentence.startswith(f"Recall on 'dog' is {pct_brief(recall)} although")
        assert c.details and "'dog'" in c.details[0]
    else:
        assert c.sentence == "Accuracy 95%, and every class's precision and recall above 85%."


def test_class_check_names_the_worst_class_counted_by_sklearn() -> None:
    # 'bird': 3 images, 1 found -> recall 1/3, below 60%: fail, named in the sentence
    y_true = [0] * 6 + [1] * 6 + [2] * 3
    y_pred = [0] * 6 + [1] * 6 + [2, 0, 1]
    m = split_metrics(y_true, y_pred)
    recall = skm.recall_score(y_true, y_pred, average=None)[2]
    c = health.check_classes(m, T)
    assert c.level == "fail"
    assert f"Recall on 'bird' is {100 * recall:.1f}%" in c.sentence
    assert c.reason.startswith("recall on 'bird'")


# --- train/test gap ------------------------------------------------------------------------------


def gap_metrics(train_acc: float, test_acc: float, train_r: float = 1.0, test_r: float = 1.0):
    """Two splits of two classes: overall accuracy and one class's recall set by hand."""

    def one(acc: float, r: float) -> dict:
        m = hand([("cat", 1.0, r, 10), ("dog", 1.0, 1.0, 10)], accuracy=acc)
        m["macro"]["f1"] = acc
        return m

    return {"splits": {"train": one(train_acc, train_r), "test": one(test_acc, test_r)}}


# Binary fractions, so gaps fall exactly on the limit t = 1/16 (6.25 points) and 2t.
T16 = Thresholds(overfit_gap=0.0625)


@pytest.mark.parametrize(
    ("test_acc", "level", "words"),
    [
        (0.8125, "pass", "no class's recall drops more than 6.25 points"),  # gap = t: not above
        (0.8046875, "attention", "above the 6.25-point limit"),  # just above t
        (0.75, "attention", "above the 6.25-point limit"),  # gap = 2t: not above twice
        (0.7421875, "fail", "above twice the 6.25-point limit"),
    ],
)
def test_gap_level_flips_at_the_limit_and_twice_it(test_acc: float, level: str, words: str) -> None:
    c = health.check_gap(gap_metrics(0.875, test_acc), T16)
    assert c.level == level, c.sentence
    assert words in c.sentence
    assert f"a gap of {100 * (0.875 - test_acc):.1f} points" in c.sentence
    assert c.page == "pages/overfitting.py"


def test_a_slice_gap_is_not_called_overfitting_and_cites_the_whole_gap() -> None:
    whole = gap_metrics(0.875, 0.84375)  # the whole dataset: 3.1 points
    c = health.check_gap(gap_metrics(0.875, 0.7421875), T16, whole=whole)
    assert c.level == "fail"
    assert c.reason.startswith("train/test gap on this slice, train accuracy")
    assert "overfitting" not in c.reason
    assert c.sentence.endswith(
        "On a slice the gap can come from how the slice's train and test images differ, not "
        "only from the model; compare with the whole dataset's gap: 3.1 points."
    )
    headline = health.summarize([c]).headline
    assert headline.startswith("Not production-ready: train/test gap on this slice, train")
    # the same numbers unfiltered keep the word
    assert health.check_gap(gap_metrics(0.875, 0.7421875), T16).reason.startswith("overfitting, ")


def test_one_class_gap_alone_needs_attention_and_is_named() -> None:
    c = health.check_gap(gap_metrics(0.875, 0.8125, train_r=1.0, test_r=0.875), T16)
    assert c.level == "attention"
    assert "recall on 'cat' drops 12.5 points" in c.sentence


def test_gap_without_train_split_is_not_available_and_does_not_count() -> None:
    metrics = {"splits": {"test": hand([("cat", 1.0, 1.0, 10)], accuracy=1.0)}}
    c = health.check_gap(metrics, T)
    assert c.level == health.NOT_AVAILABLE
    assert c.sentence.startswith("No train split")


# --- leakage -------------------------------------------------------------------------------------


def finding(leaked: int, n: int, before: float, after: float, pairs: int | None = None):
    return health.LeakFinding(
        "pHash within 4 bits", "test", pairs or leaked, leaked, n, before, after
    )


def test_no_pairs_pass() -> None:
    c = health.check_leakage(finding(0, 100, 0.9, 0.9), T)
    assert c.level == "pass" and c.sentence.startswith("No test image nearly copies")


@pytest.mark.parametrize(
    ("leaked", "after", "level"),
    [
        (1, 0.90, "attention"),  # any near-copy
        (9, 0.90, "attention"),  # 9% of the split: below 10%
        (10, 0.90, "fail"),  # 10% of the split
        (1, 0.90 - 0.0625, "attention"),  # accuracy falls by exactly the gap limit
        (1, 0.90 - 0.0626, "fail"),  # ... by more
    ],
)
def test_leak_level_from_share_and_accuracy_fall(leaked: int, after: float, level: str) -> None:
    c = health.check_leakage(finding(leaked, 100, 0.90, after), T16)
    assert c.level == level, c.sentence
    assert f"{leaked} of 100 test images" in c.sentence
    assert c.page == "pages/leakage.py"


def test_leak_sentence_signs_the_change_and_says_unchanged_when_it_rounds_to_zero() -> None:
    up = health.check_leakage(finding(2, 100, 0.90, 0.9183673), T)
    assert "91.8% instead of 90% (+1.8 points)" in up.sentence
    down = health.check_leakage(finding(2, 100, 0.90, 0.8877551), T)
    assert "88.8% instead of 90% (-1.2 points)" in down.sentence
    same = health.check_leakage(finding(2, 100, 0.90, 0.9004), T)
    assert "unchanged at 90%" in same.sentence and "+0.0" not in same.sentence


def test_leak_change_is_the_difference_of_the_shown_numbers_as_on_leakage() -> None:
    """The sample's good run: 533 of 546 right, 524 of 536 without the 10 near-copies: 97.6%
    and 97.8% shown, so +0.2 points (the unrounded +0.14 printed +0.1), the delta the Leakage
    page shows beside the same two numbers (core.analysis.tables.points_delta)."""
    from core.analysis.tables import points_delta

    before, after = 533 / 546, 524 / 536
    c = health.check_leakage(finding(10, 546, before, after), T)
    assert "97.8% instead of 97.6% (+0.2 points)" in c.sentence, c.sentence
    assert points_delta(before, after) == "+0.2 pts"


def test_one_leaked_image_and_pair_are_singular() -> None:
    c = health.check_leakage(finding(1, 55, 47 / 55, 47 / 54), T)
    assert c.sentence.startswith("1 of 55 test images (1.8%) nearly copies a training image")
    assert "(1 pair, pHash" in c.sentence and "1 pairs" not in c.sentence
    assert "87.0% instead of 85.5% (+1.5 points)" in c.sentence  # 85.45% -> 87.04%: 1.59 unshown
    many = health.check_leakage(finding(2, 55, 47 / 55, 47 / 53, pairs=3), T)
    assert (
        "(1.8%)" not in many.sentence and "nearly copy a training image (3 pairs" in many.sentence
    )


def test_every_image_leaked_has_no_accuracy_without_them() -> None:
    c = health.check_leakage(finding(5, 5, 1.0, math.nan), T)
    assert c.level == "fail" and "no accuracy without them" in c.sentence


def test_leak_finding_counts_pairs_and_distinct_leaked_images() -> None:
    pairs = pd.DataFrame({"path": ["a.png", "a.png", "b.png"]})
    before = {"n": 10, "accuracy": 0.8}
    after = {"n": 8, "accuracy": 0.75}
    f = health.leak_finding(pairs, before, after, split="test", method="m")
    assert (f.pairs, f.leaked, f.n, f.accuracy, f.accuracy_without) == (3, 2, 10, 0.8, 0.75)


def test_not_computed_and_unavailable_leakage() -> None:
    assert health.check_leakage(None, T).level == health.NOT_COMPUTED
    c = health.check_leakage(None, T, unavailable="needs a train split")
    assert (c.level, c.sentence) == (health.NOT_AVAILABLE, "needs a train split")


@pytest.mark.parametrize(
    ("splits", "split", "held"),
    [(["train", "test"], "train", "test"), (["train", "val", "test"], "val", "val"),
     (["train", "val"], "train", "val"), (["test"], "test", None)],
)  # fmt: skip
def test_held_out_split(splits: list[str], split: str, held: str | None) -> None:
    assert health.held_out_split(splits, split) == held


# --- calibration ---------------------------------------------------------------------------------


def rel_of(*bins: tuple[float, int, int]) -> calibration.Reliability:
    """Return reliability bins from (confidence, images, right) groups."""
    conf = np.concatenate([np.full(n, c) for c, n, _ in bins])
    right = np.concatenate([np.arange(n) < k for _, n, k in bins])
    return calibration.reliability(conf, right)


@pytest.mark.parametrize(
    ("right", "level"),
    [(11, "pass"), (12, "attention"), (13, "attention"), (14, "fail")],
)
def test_ece_level_at_its_limits(right: int, level: str) -> None:
    # 16 images at confidence 0.625: ECE = |right/16 - 0.625|, exact in binary:
    # 11 -> 0.0625 (= attention limit), 12 -> 0.125, 13 -> 0.1875 (= fail limit), 14 -> 0.25
    limits = health.Limits(ece_attention=0.0625, ece_fail=0.1875)
    rel = rel_of((0.625, 16, right))
    assert rel.ece == pytest.approx(abs(right / 16 - 0.625))
    c = health.check_calibration(rel, "test", limits)
    assert c.level == level
    assert f"ECE on test is {100 * rel.ece:.1f}%" in c.sentence
    assert "underconfident" in c.sentence and "overconfident" not in c.sentence


def test_overconfident_model_is_called_overconfident() -> None:
    c = health.check_calibration(rel_of((0.9, 10, 6)), "test")  # says 90%, right 60%
    assert c.level == "fail"
    assert "the model is overconfident" in c.sentence
    assert "right less often than it says" in c.sentence


def test_underconfident_on_average_but_overconfident_in_a_bin_says_both() -> None:
    # 10 images at 50% confidence, 3 right (overconfident there); 30 at 60%, all right. On
    # average it says 57.5% and is right 82.5%: the old reading called it underconfident.
    rel = rel_of((0.5, 10, 3), (0.6, 30, 30))
    over_bins = [
        b for b in range(len(rel.count)) if rel.count[b] and rel.accuracy[b] < rel.confidence[b]
    ]
    assert len(over_bins) == 1
    c = health.check_calibration(rel, "test")
    assert "errs both ways" in c.sentence
    lo, hi = rel.edges[over_bins[0]], rel.edges[over_bins[0] + 1]
    assert f"overconfident from {lo:.0%} to {hi:.0%} confidence (it says 50% and is right 30%)" in (
        c.sentence
    )
    assert "underconfident from" in c.sentence
    # overconfident share: 10 images x 0.2 gap / 40 images = 5.0 of ECE 35.0 points
    assert f"5.0 of the {100 * rel.ece:.1f} points come from overconfident bins" in c.sentence


def test_empty_split_has_no_calibration() -> None:
    c = health.check_calibration(calibration.reliability(np.zeros(0), np.zeros(0, bool)), "val")
    assert c.level == health.NOT_AVAILABLE


# --- suspicious labels, imbalance, skipped files ------------------------------------------------


@pytest.mark.parametrize(
    ("flagged", "level"), [(0, "pass"), (1, "attention"), (4, "attention"), (5, "fail")]
)
def test_suspicious_levels(flagged: int, level: str) -> None:
    c = health.check_suspicious(flagged, 100, "test")
    assert c.level == level
    assert c.page == "pages/suspicious.py"
    if flagged:
        assert c.sentence.startswith(f"{flagged} of 100 test labels ({flagged}%)")
        assert "confidently" not in c.sentence


def test_suspicious_sentence_agrees_in_number() -> None:
    assert "1 of 100 test labels (1%) is disputed by the model" in (
        health.check_suspicious(1, 100, "test").sentence
    )
    assert "4 of 100 test labels (4%) are disputed by the model" in (
        health.check_suspicious(4, 100, "test").sentence
    )


def test_no_weak_segment_counts_the_slices_tried_in_number() -> None:
    def line(tried: int) -> str:
        search = slices.Search(segments=(), tried=tried, split="test", images=50, columns=("a",))
        return health.check_segments(search, "test").sentence

    assert "(1 slice tried, false discovery rate" in line(1)
    assert "(1,212 slices tried, false discovery rate" in line(1212)


@pytest.mark.parametrize(("big", "level"), [(29, "pass"), (30, "attention")])
def test_imbalance_at_the_ratio(big: int, level: str) -> None:
    m = hand([("cat", 1.0, 1.0, big), ("dog", 1.0, 1.0, 10)], accuracy=1.0)
    c = health.check_imbalance(m, T)
    assert c.level == level
    ratio = f"{big / 10:.1f}x"
    assert ratio in c.sentence
    if level == "attention":
        assert f"'cat' has {big} images and 'dog' 10" in c.sentence


@pytest.mark.parametrize(
    ("n", "skipped", "level"), [(10, 0, "pass"), (10, 1, "attention"), (9, 1, "fail")]
)
def test_skipped_files_share(n: int, skipped: int, level: str) -> None:
    m = hand(
        [("cat", 1.0, 1.0, n)], accuracy=1.0, skipped=[f"cat/bad{i}.jpg" for i in range(skipped)]
    )
    c = health.check_skipped(m, "test")
    assert c.level == level
    if skipped:
        assert f"1 of {n + 1} test file was skipped" in c.sentence
        assert f"the metrics count the {n} images read" in c.sentence


# --- preprocessing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "level", "words"),
    [
        (None, "attention", "was not recorded"),
        ({"image_size": "read", "mean": "declared", "std": "declared", "resize": "default"},
         "pass", "Image size read from the model file; mean and std declared in the checkpoint; "
         "resize default."),
        ({"image_size": "probed", "mean": "typed"}, "pass", "Image size measured by the "
         "preprocessing probe on train; mean typed by the user."),
        ({"image_size": "default", "mean": "read"}, "attention", "Image size is a default, not "
         "known"),
        ({"image_size": "default", "mean": "default", "std": "read"}, "attention",
         "Image size and mean are defaults"),
        ({"image_size": "guessed"}, "attention", "unknown preprocessing source (guessed)"),
    ],
    ids=["missing", "read", "probed", "default", "defaults", "unknown"],
)  # fmt: skip
def test_preprocessing_levels(source, level: str, words: str) -> None:  # noqa: ANN001
    meta = {"probe": {"split": "train"}} if source is None else {
        "preprocessing_source": source, "probe": {"split": "train"}
    }  # fmt: skip
    c = health.check_preprocessing(meta)
    assert c.level == level
    assert words in c.sentence, c.sentence


def test_preprocessing_warning_fails_in_its_own_words() -> None:
    warning = "test accuracy 11.0% is near chance (10%), but the probe scored 70.6% with 64 px."
    meta = {"preprocessing_source": {"image_size": "default"}}
    c = health.check_preprocessing(meta, warning)
    assert (c.level, c.sentence) == ("fail", "Test accuracy 11.0% is near chance (10%), but the "
                                     "probe scored 70.6% with 64 px.")  # fmt: skip


# --- the summary ---------------------------------------------------------------------------------


def check(key: str, level: str, reason: str = "") -> health.Check:
    return health.Check(
        key, key.capitalize(), level, f"{key} sentence.", "pages/overview.py", reason
    )


def test_headline_is_the_worst_check_and_names_its_reason() -> None:
    s = health.summarize(
        [check("a", "attention", "a is amber"), check("b", "fail", "b is red"),
         check("c", "fail", "c is red too"), check("d", health.NOT_COMPUTED)]
    )  # fmt: skip
    assert s.level == "fail" and s.worst.key == "b"
    assert s.headline == (
        "Not production-ready: b is red. Also c fails; a needs attention. 1 check not computed yet."
    )


def test_all_passing_is_good() -> None:
    s = health.summarize([check("a", "pass", "a is fine"), check("b", "pass"), check("c", "pass")])
    assert (s.level, s.headline) == ("pass", "Good: a is fine; the 2 other checks pass.")


def test_a_slices_headline_says_it_is_about_the_slice() -> None:
    checks = [check("a", "attention", "a is amber"), check("b", "fail", "b is red")]
    s = health.summarize(checks, slice_label="scanner is D")
    assert s.headline == (
        "On the slice 'scanner is D': not production-ready — b is red. Also a needs attention."
    )
    assert not s.headline.startswith("Not production-ready")
    amber = health.summarize(checks[:1], slice_label="x < 0.5")
    assert amber.headline == "On the slice 'x < 0.5': needs attention — a is amber."
    good = health.summarize([check("a", "pass", "a is fine"), check("c", "pass")], slice_label="s")
    assert good.headline == "On the slice 's': good — a is fine; the other passes."
    # health.summary reads the label from a Run.subset's meta; a whole run keeps the old words
    metrics = gap_metrics(0.875, 0.8125)
    sliced = health.summary(metrics, {"slice": {"label": "scanner is D"}}, "test", T16)
    whole = health.summary(metrics, {}, "test", T16)
    assert whole.headline.startswith("Needs attention: ")
    assert sliced.headline == whole.headline.replace(
        "Needs attention: ", "On the slice 'scanner is D': needs attention — ", 1
    )


def test_not_computed_and_unavailable_checks_do_not_set_the_level() -> None:
    s = health.summarize(
        [
            check("a", "pass", "a ok"),
            check("b", health.NOT_AVAILABLE),
            check("c", health.NOT_COMPUTED),
        ]
    )
    assert s.level == "pass"
    with pytest.raises(ValueError, match="no check was computed"):
        health.summarize([check("b", health.NOT_AVAILABLE)])


def test_summary_orders_every_check_and_links_each_to_a_page() -> None:
    metrics = gap_metrics(0.875, 0.8125)
    s = health.summary(metrics, {}, "test", T16, suspicious=0)
    assert [c.key for c in s.checks] == [
        "classes", "gap", "leakage", "embedding_leakage", "calibration", "suspicious",
        "imbalance", "skipped", "preprocessing",
    ]  # fmt: skip
    assert all(c.page in health.PAGES for c in s.checks)
    assert s.level == "attention"  # accuracy 81.25%, not above 90%; no preprocessing record
    assert s.worst.key == "classes"


def test_unreadable_images_are_said_and_never_pass_silently() -> None:
    some = health.LeakFinding("m", "test", 0, 0, 100, 0.9, 0.9, unread=40)
    c = health.check_leakage(some, T)
    assert c.level == "pass" and "60 of 100 test images checked (40 could not be read)" in (
        c.sentence
    )
    none = health.LeakFinding("m", "test", 0, 0, 100, 0.9, 0.9, unread=100)
    assert health.check_leakage(none, T).level == health.NOT_AVAILABLE


# --- the inputs read from a stored run (core.images.checkup) --------------------------------------


def test_run_summary_fails_preprocessing_when_provenance_warns(tmp_path, runs_dir) -> None:  # noqa: ANN001
    """A near-chance run whose image size is a default: core.analysis.provenance's warning is the
    preprocessing line, and it fails; without the default the same run does not warn."""
    import dataclasses

    from core.analysis import provenance
    from core.engine.evaluate import evaluate
    from core.images import checkup
    from tests.conftest import classlens_meta, make_model, save_safetensors, write_dataset

    data = write_dataset(tmp_path / "d", classes=("a", "b", "c"), per_class=5)
    ckpt = save_safetensors(
        make_model(seed=3), tmp_path / "m.safetensors", classlens_meta(class_names=None)
    )
    run = evaluate(ckpt, data, runs_dir=runs_dir, num_workers=0)
    assert provenance.preprocessing_warning(run.meta, run.metrics) is None
    sources = {**run.meta.get("preprocessing_source", {}), "image_size": "default"}
    guessed = dataclasses.replace(run, meta={**run.meta, "preprocessing_source": sources})
    warning = provenance.preprocessing_warning(guessed.meta, guessed.metrics)
    assert warning, "the tiny random model should score near chance"
    line = next(c for c in checkup.run_summary(guessed, "test").checks if c.key == "preprocessing")
    assert line.level == "fail"
    assert line.sentence == warning[0].upper() + warning[1:]


def test_run_with_only_a_test_split_has_no_gap_or_leakage_to_judge(tmp_path, runs_dir) -> None:  # noqa: ANN001
    from core.engine.evaluate import evaluate
    from core.images import checkup
    from tests.conftest import classlens_meta, make_model, save_safetensors, write_dataset

    data = write_dataset(tmp_path / "flat", splits=None, per_class=3)
    ckpt = save_safetensors(make_model(seed=1), tmp_path / "m.safetensors", classlens_meta())
    run = evaluate(ckpt, data, runs_dir=runs_dir, num_workers=0)
    s = checkup.run_summary(run, "test")
    levels = {c.key: c.level for c in s.checks}
    assert levels["gap"] == levels["leakage"] == levels["embedding_leakage"] == "not available"
    leak = next(c for c in s.checks if c.key == "leakage")
    assert (
        leak.sentence == "Leakage needs a train split and a test or val split; this run has test."
    )
    assert s.level in health.LEVELS and "not computed" not in s.headline
    assert not leakage_cache_written(run)


def leakage_cache_written(run) -> bool:  # noqa: ANN001
    from core.images import leakage

    return leakage.cache_path(run).exists()
