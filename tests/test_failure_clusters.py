"""Failure clusters: a planted group of degraded images is the top cluster (precision and
recall reported), the ranking by the Wilson bound (checked against statsmodels' formula by
hand), and the distinctions against pandas."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core.analysis import failure_clusters as fc


def _planted(seed: int = 0) -> dict:
    """10 class blobs of 100 images in 32-D (5% random mistakes), plus 40 images of classes
    0-4 all degraded the same way: most of their class signal gone (a tenth of their class
    centre left) and shifted along one direction, 85% of them mistaken as class 8."""
    rng = np.random.default_rng(seed)
    d, n_classes, per = 32, 10, 100
    centres = rng.normal(scale=4, size=(n_classes, d))
    y_true = np.repeat(np.arange(n_classes), per)
    emb = centres[y_true] + rng.normal(size=(len(y_true), d))
    y_pred = y_true.copy()
    flip = rng.random(len(y_true)) < 0.05
    y_pred[flip] = (y_true[flip] + 1) % n_classes
    n_planted = 40
    pt = rng.integers(0, 5, n_planted)
    blur = rng.normal(scale=4, size=d)  # the common degradation direction
    p_emb = 0.1 * centres[pt] + blur * 3 + rng.normal(size=(n_planted, d))
    p_pred = np.where(rng.random(n_planted) < 0.85, 8, pt)  # mostly called "8"
    brightness = np.concatenate([rng.normal(0.5, 0.1, len(y_true)), rng.normal(0.2, 0.05, 40)])
    return {
        "emb": np.vstack([emb, p_emb]).astype(np.float32),
        "y_true": np.concatenate([y_true, pt]),
        "y_pred": np.concatenate([y_pred, p_pred]),
        "planted": np.arange(len(y_true), len(y_true) + n_planted),
        "columns": pd.DataFrame({"brightness": brightness, "correct": True}),
    }


def test_planted_degraded_group_is_the_top_cluster() -> None:
    case = _planted()
    k = fc.default_k(len(case["emb"]), 10)
    assert k == 12
    labels = fc.cluster(case["emb"], k=k, seed=0)
    clusters = fc.failure_clusters(
        case["emb"], labels, case["y_true"], case["y_pred"], columns=case["columns"]
    )
    top = clusters[0]
    planted = set(case["planted"].tolist())
    found = set(top.rows.tolist())
    precision = len(found & planted) / len(found)
    recall = len(found & planted) / len(planted)
    print(f"planted cluster: precision {precision:.2f}, recall {recall:.2f}, size {top.size}")
    assert precision >= 0.9 and recall >= 0.9
    assert top.pairs[0][1] == 8  # the commonest mistake is "→ 8"
    wrong = case["y_true"] != case["y_pred"]
    rest = np.ones(len(labels), bool)
    rest[top.rows] = False
    assert math.isclose(top.accuracy_outside, 1 - wrong[rest].mean())
    assert top.distinctions[0].column == "brightness" and top.distinctions[0].effect < -2
    assert all(d.column != "correct" for d in top.distinctions)
    assert set(top.nearest.tolist()) <= found and len(top.nearest) == fc.NEAREST


def test_clustering_does_not_depend_on_labels_or_predictions() -> None:
    case = _planted(1)
    a = fc.cluster(case["emb"], k=12, seed=0)
    b = fc.cluster(case["emb"], k=12, seed=0)
    np.testing.assert_array_equal(a, b)  # deterministic; the function has no label argument


def test_wilson_lower_bound_by_hand() -> None:
    # 8 errors in 10 at z = 1.96: p=0.8, (p + z²/2n - z*sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    z = fc.Z95
    p, n = 0.8, 10
    by_hand = (p + z**2 / (2 * n) - z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))) / (
        1 + z**2 / n
    )
    assert math.isclose(fc.wilson_lower(8, 10), by_hand)
    assert math.isclose(by_hand, 0.4902, abs_tol=1e-4)  # the published Wilson interval value
    assert fc.wilson_lower(0, 0) == 0.0
    # a small all-wrong cluster ranks below a large mostly-wrong one
    assert fc.wilson_lower(3, 3) < fc.wilson_lower(40, 60)


def test_ranking_and_pairs_hand_counted() -> None:
    emb = np.vstack([np.full((3, 2), 5.0), np.full((60, 2), -5.0), np.full((100, 2), 0.1)])
    emb += np.random.default_rng(0).normal(scale=0.01, size=emb.shape)
    labels = np.array([0] * 3 + [1] * 60 + [2] * 100)
    y_true = np.zeros(163, int)
    y_pred = np.zeros(163, int)
    y_pred[:3] = 1  # cluster 0: 3 of 3 wrong
    y_pred[3:43] = 2  # cluster 1: 40 of 60 wrong, 30 as 0 → 2 ...
    y_true[33:43] = 1  # ... and 10 as 1 → 2
    clusters = fc.failure_clusters(emb, labels, y_true, y_pred)
    assert [c.label for c in clusters] == [1, 0, 2]
    assert clusters[0].pairs == ((0, 2, 30), (1, 2, 10))
    assert clusters[0].n_wrong == 40 and clusters[0].size == 60
    assert math.isclose(clusters[0].accuracy_outside, 100 / 103)
    s = fc.worst_sentence(clusters[0], ["a", "b", "c"], "test")
    assert s == (
        "The worst failure cluster holds 60 test images at 33% accuracy (97% for the rest of "
        "the split); mistakes mostly 'a' → 'c' (30)."
    )


def test_distinctions_numeric_and_categorical_against_pandas() -> None:
    rng = np.random.default_rng(0)
    inside = np.zeros(200, bool)
    inside[:50] = True
    df = pd.DataFrame(
        {
            "sharpness": np.where(inside, rng.normal(10, 2, 200), rng.normal(20, 2, 200)),
            "format": np.where(inside, "JPEG", np.where(np.arange(200) % 2, "PNG", "JPEG")),
            "noise": rng.normal(size=200),
            "true class": np.where(inside, "a", "b"),  # never a distinction
        }
    )
    found = fc.distinctions(df, inside, ~inside)
    assert [d.column for d in found] == ["sharpness", "format"]
    a, b = df["sharpness"][inside], df["sharpness"][~inside]
    pooled = math.sqrt(((len(a) - 1) * a.var() + (len(b) - 1) * b.var()) / (len(a) + len(b) - 2))
    assert math.isclose(found[0].effect, (a.mean() - b.mean()) / pooled)
    assert found[1].inside == "JPEG 100%" and found[1].outside == "JPEG 50%"


def test_distinction_means_are_written_as_the_app_writes_numbers() -> None:
    inside = np.array([True] * 4 + [False] * 4)
    # means 1,243.75 and 720 (by hand): was "1.24e+03 vs 720"
    df = pd.DataFrame({"width": [1200.0, 1250.0, 1275.0, 1250.0, 700.0, 740.0, 720.0, 720.0]})
    (d,) = fc.distinctions(df, inside, ~inside)
    assert (d.inside, d.outside) == ("1,244", "720")
    small = pd.DataFrame({"contrast": [0.41, 0.45, 0.47, 0.5, 0.1, 0.12, 0.14, 0.16]})
    (d,) = fc.distinctions(small, inside, ~inside)
    assert (d.inside, d.outside) == ("0.458", "0.13")  # 0.4575 and 0.13 by hand


@pytest.mark.parametrize(
    ("x", "text"),
    [
        (1243.7, "1,244"), (720.0, "720"), (12.34, "12.3"), (0.4567, "0.457"),
        (999.7, "1,000"), (-1234.5, "-1,234"), (0.00012345, "0.000123"), (0.0, "0"),
        (1_000_000.4, "1,000,000"), (1.0, "1"), (0.0000123, "0.0000123"), (-0.00005, "-0.00005"),
    ],
)  # fmt: skip
def test_number_has_three_significant_digits_and_separators(x: float, text: str) -> None:
    from core.analysis.diagnostics import number

    assert number(x) == text
    assert "e" not in text and float(text.replace(",", "")) == pytest.approx(x, rel=5e-3, abs=0)


def test_health_line_for_the_worst_cluster() -> None:
    from core.analysis import health

    emb = np.vstack([np.full((60, 2), -5.0), np.full((100, 2), 0.1)])
    labels = np.array([0] * 60 + [1] * 100)
    y_true = np.zeros(160, int)
    y_pred = np.zeros(160, int)
    y_pred[:40] = 1  # 40 of 60 wrong inside, none outside
    worst = fc.failure_clusters(emb, labels, y_true, y_pred)[0]
    check = health.check_clusters(worst, ["a", "b"], "test")
    assert check.level == "attention" and check.page == "pages/failure_clusters.py"
    assert check.sentence.startswith("The worst failure cluster holds 60 test images at 33%")
    assert "33% accuracy vs 100% elsewhere" in check.reason
    # a cluster no worse than the rest: 1 of 60 wrong inside, 2 of 100 outside -> pass
    y_pred[:] = 0
    y_pred[0] = 1
    y_pred[100:102] = 1
    worst = fc.failure_clusters(emb, labels, y_true, y_pred)[0]
    assert health.check_clusters(worst, ["a", "b"], "test").level == "pass"
    assert health.check_clusters(None, ["a"], "test").level == health.NOT_COMPUTED
    assert health.check_clusters(None, ["a"], "t", unavailable="no").level == health.NOT_AVAILABLE


def test_one_cluster_for_the_whole_split_says_so_and_is_not_judged() -> None:
    """The Overview of a small slice (11 test images, one cluster): no 'nan%', no pass."""
    from core.analysis import health

    emb = np.random.default_rng(0).normal(size=(11, 2))
    y = np.zeros(11, int)
    worst = fc.failure_clusters(emb, np.zeros(11, int), y, y)[0]
    assert math.isnan(worst.accuracy_outside)
    s = fc.worst_sentence(worst, ["a"], "test")
    assert s == "One cluster holds all 11 test images, at 100% accuracy: too few images to " + (
        "compare clusters."
    )
    check = health.check_clusters(worst, ["a"], "test")
    assert check.level == health.NOT_AVAILABLE and "nan" not in check.sentence


@pytest.mark.parametrize(
    ("right", "n", "shown"),
    [(1192, 1195, "99.7%"), (1195, 1195, "100%"), (1, 1000, "0.1%"), (0, 9, "0%"), (58, 60, "97%")],
)
def test_share_text_never_rounds_a_mistake_to_100(right: int, n: int, shown: str) -> None:
    assert fc.share_text(right / n) == shown
    if 0 < right < n:  # the shown share lies on the true side of 0% and 100%
        assert 0 < float(shown.rstrip("%")) < 100


def test_rest_of_the_split_with_few_mistakes_is_not_rounded_to_100() -> None:
    """The sample's train split: the worst cluster (62 images, 1 wrong) against 1,195 others
    with 3 wrong showed '(100% for the rest of the split)'."""
    emb = np.vstack([np.full((62, 2), 5.0), np.full((1195, 2), -5.0)])
    labels = np.array([0] * 62 + [1] * 1195)
    y_true = np.zeros(1257, int)
    y_pred = y_true.copy()
    y_pred[[0, 100, 200, 300]] = 1
    worst = fc.failure_clusters(emb, labels, y_true, y_pred)[0]
    assert worst.label == 0 and math.isclose(worst.accuracy_outside, 1192 / 1195)
    assert "at 98% accuracy (99.7% for the rest of the split)" in fc.worst_sentence(
        worst, ["a", "b"], "train"
    )
