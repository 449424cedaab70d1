"""core.analysis.metrics against scikit-learn, the worked example and hand-counted cases."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from core.analysis import metrics

# A copy of ../shared/reference/worked_example.json, so a fresh clone can run it.
WORKED_EXAMPLE = Path(__file__).resolve().parent / "data" / "worked_example.json"

ATOL = 1e-9


def _labels(seed: int, n_classes: int, scenario: str, n: int = 300) -> tuple[np.ndarray, ...]:
    """Random y_true/y_pred (60% correct); "absent" leaves classes out of y_true and y_pred."""
    rng = np.random.default_rng(seed)
    if scenario == "absent" and n_classes > 2:
        # Class 0 never true, class 1 never predicted, the last class in neither.
        true_pool = np.arange(1, n_classes - 1)
        pred_pool = np.concatenate([[0], np.arange(2, n_classes - 1)])
    elif scenario == "absent":
        true_pool, pred_pool = np.array([1]), np.array([0, 1])  # class 0 has no support
    else:
        true_pool = pred_pool = np.arange(n_classes)
    y_true = rng.choice(true_pool, size=n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.choice(pred_pool, size=n))
    if scenario == "absent" and n_classes > 2:
        y_pred[y_pred == 1] = 0
    return y_true, y_pred


GRID = [
    pytest.param(seed, n, scenario, id=f"n{n}-{scenario}-seed{seed}")
    for n in (2, 3, 10, 30)
    for scenario in ("full", "absent")
    for seed in (0, 1, 2)
]


def _sklearn_quiet(fn, *args, **kwargs):
    """Call a sklearn metric, silencing its warnings about absent classes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _assert_matches_sklearn(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> None:
    labels = list(range(n_classes))
    cm = metrics.confusion_matrix(y_true, y_pred, n_classes=n_classes)
    np.testing.assert_array_equal(
        cm, _sklearn_quiet(skm.confusion_matrix, y_true, y_pred, labels=labels)
    )
    assert cm.dtype == np.int64

    stats = metrics.per_class(cm)
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0, average=None
    )
    for name, expected in (("precision", p), ("recall", r), ("f1", f), ("support", s)):
        np.testing.assert_allclose(stats[name], expected, atol=ATOL, rtol=0, err_msg=name)
    mcm = _sklearn_quiet(skm.multilabel_confusion_matrix, y_true, y_pred, labels=labels)
    tn, fp, fn, tp = (mcm[:, i // 2, i % 2] for i in range(4))
    for name, expected in (("tn", tn), ("fp", fp), ("fn", fn), ("tp", tp)):
        np.testing.assert_array_equal(stats[name], expected, err_msg=name)
    spec = np.divide(tn, tn + fp, out=np.zeros(n_classes), where=(tn + fp) > 0)
    np.testing.assert_allclose(stats["specificity"], spec, atol=ATOL, rtol=0)

    avg = metrics.averages(cm)
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, zero_division=0, average=average
        )
        assert avg[average] == pytest.approx({"precision": p, "recall": r, "f1": f}, abs=ATOL)

    assert metrics.accuracy_score(cm) == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=ATOL)
    expected_bal = _sklearn_quiet(skm.balanced_accuracy_score, y_true, y_pred)
    assert metrics.balanced_accuracy_score(cm) == pytest.approx(expected_bal, abs=ATOL)
    expected_mcc = _sklearn_quiet(skm.matthews_corrcoef, y_true, y_pred)
    assert metrics.matthews_corrcoef(cm) == pytest.approx(expected_mcc, abs=ATOL)


@pytest.mark.parametrize(("seed", "n_classes", "scenario"), GRID)
def test_matches_sklearn(seed: int, n_classes: int, scenario: str) -> None:
    y_true, y_pred = _labels(seed, n_classes, scenario)
    if scenario == "absent":
        assert len(np.unique(y_true)) < n_classes  # and, for n_classes > 2, y_pred too
    _assert_matches_sklearn(y_true, y_pred, n_classes)
    cm = metrics.confusion_matrix(y_true, y_pred, n_classes=n_classes)
    kappa = skm.cohen_kappa_score(y_true, y_pred, labels=list(range(n_classes)))
    assert metrics.cohen_kappa_score(cm) == pytest.approx(kappa, abs=ATOL)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "n_classes"),
    [
        pytest.param([0, 0, 0], [0, 0, 0], 1, id="n_classes1"),
        pytest.param([2, 2, 2, 2], [2, 2, 2, 2], 5, id="n_classes5-all-equal"),
    ],
)
def test_single_class(y_true: list[int], y_pred: list[int], n_classes: int) -> None:
    y_true, y_pred = np.array(y_true), np.array(y_pred)
    _assert_matches_sklearn(y_true, y_pred, n_classes)
    cm = metrics.confusion_matrix(y_true, y_pred, n_classes=n_classes)
    assert metrics.accuracy_score(cm) == 1.0
    assert metrics.matthews_corrcoef(cm) == 0.0  # undefined; sklearn also says 0.0
    # Kappa is undefined (chance agreement is 1): sklearn gives nan, ours documents 0.0.
    sk_kappa = _sklearn_quiet(skm.cohen_kappa_score, y_true, y_pred, labels=list(range(n_classes)))
    assert np.isnan(sk_kappa)
    assert metrics.cohen_kappa_score(cm) == 0.0


def test_kappa_and_mcc_one_true_class_other_predicted() -> None:
    y_true, y_pred = np.array([0, 0, 0]), np.array([1, 1, 2])
    cm = metrics.confusion_matrix(y_true, y_pred, n_classes=3)
    assert metrics.cohen_kappa_score(cm) == skm.cohen_kappa_score(y_true, y_pred) == 0.0
    assert metrics.matthews_corrcoef(cm) == skm.matthews_corrcoef(y_true, y_pred) == 0.0


def test_empty_input_gives_zeros_without_warnings() -> None:
    empty = np.array([], dtype=np.int64)
    with pytest.raises(ValueError, match="empty"):  # sklearn has no answer to compare with
        skm.accuracy_score(empty, empty)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = metrics.split_report([], [], class_names=["a", "b", "c"], probs=np.zeros((0, 3)))
        assert metrics.top_k_accuracy_score(empty, np.zeros((0, 3)), k=1) == 0.0
    assert report["n"] == 0
    assert report["confusion_matrix"] == [[0, 0, 0]] * 3
    for key in ("accuracy", "balanced_accuracy", "mcc", "kappa"):
        assert report[key] == 0.0, key
    assert report["macro"] == report["weighted"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    for row in report["per_class"]:
        assert row["support"] == 0
        assert row["precision"] == row["recall"] == row["f1"] == row["specificity"] == 0.0


def test_zero_division_emits_no_warnings() -> None:
    # Class 1 is never predicted, class 2 never true, class 3 in neither.
    y_true, y_pred = np.array([0, 0, 1, 1]), np.array([0, 2, 0, 2])
    probs = np.eye(4)[y_pred]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cm = metrics.confusion_matrix(y_true, y_pred, n_classes=4)
        stats = metrics.per_class(cm)
        report = metrics.split_report(y_true, y_pred, class_names=list("abcd"), probs=probs)
        metrics.cohen_kappa_score(np.zeros((4, 4), dtype=int))
        metrics.matthews_corrcoef(np.zeros((4, 4), dtype=int))
    np.testing.assert_array_equal(stats["precision"], [0.5, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(stats["recall"], [0.5, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(stats["f1"], [0.5, 0.0, 0.0, 0.0])
    assert report["balanced_accuracy"] == 0.25  # mean over classes 0 and 1 only
    assert report["macro"]["recall"] == 0.125  # mean over all four classes


def test_worked_example() -> None:
    ref = json.loads(WORKED_EXAMPLE.read_text())
    cm_ref = np.array(ref["confusion_matrix"])
    n = len(cm_ref)
    cells = np.arange(n * n)
    y_true = np.repeat(cells // n, cm_ref.ravel())
    y_pred = np.repeat(cells % n, cm_ref.ravel())
    report = metrics.split_report(y_true, y_pred, class_names=ref["classes"])
    exp = ref["expected"]
    to_6dp = 5e-7

    assert report["confusion_matrix"] == ref["confusion_matrix"]
    assert report["n"] == exp["n"]
    assert report["accuracy"] == pytest.approx(exp["accuracy"], abs=to_6dp)
    assert report["balanced_accuracy"] == pytest.approx(exp["balanced_accuracy"], abs=to_6dp)
    assert report["macro"] == pytest.approx(exp["macro"], abs=to_6dp)
    assert report["weighted"] == pytest.approx(exp["weighted"], abs=to_6dp)
    assert [row["class"] for row in report["per_class"]] == ref["classes"]
    for row in report["per_class"]:
        want = exp["per_class"][row["class"]]
        for key in ("precision", "recall", "f1"):
            assert row[key] == pytest.approx(want[key], abs=to_6dp), (row["class"], key)
        assert row["support"] == want["support"]
    stats = metrics.per_class(metrics.confusion_matrix(y_true, y_pred, n_classes=n))
    cat = ref["classes"].index("Cat")
    want = exp["per_class"]["Cat"]
    assert (stats["tp"][cat], stats["fp"][cat], stats["fn"][cat]) == (
        want["tp"],
        want["fp"],
        want["fn"],
    )


def test_hand_counted_tiny_case() -> None:
    # true: 0 0 0 1 1 2 ; pred: 0 1 0 1 2 2
    cm = metrics.confusion_matrix([0, 0, 0, 1, 1, 2], [0, 1, 0, 1, 2, 2], n_classes=3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    stats = metrics.per_class(cm)
    assert stats["tp"].tolist() == [2, 1, 1]
    assert stats["fp"].tolist() == [0, 1, 1]
    assert stats["fn"].tolist() == [1, 1, 0]
    assert stats["tn"].tolist() == [3, 3, 4]
    assert stats["support"].tolist() == [3, 2, 1]
    assert stats["precision"] == pytest.approx([1.0, 0.5, 0.5])
    assert stats["recall"] == pytest.approx([2 / 3, 0.5, 1.0])
    assert stats["f1"] == pytest.approx([0.8, 0.5, 2 / 3])
    assert stats["specificity"] == pytest.approx([1.0, 0.75, 0.8])
    assert metrics.accuracy_score(cm) == pytest.approx(4 / 6)
    assert metrics.balanced_accuracy_score(cm) == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)


def test_confusion_matrix_large_input() -> None:
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 1000, 50_000), rng.integers(0, 1000, 50_000)
    cm = metrics.confusion_matrix(y_true, y_pred, n_classes=1000)
    naive = np.zeros((1000, 1000), dtype=np.int64)
    np.add.at(naive, (y_true, y_pred), 1)
    np.testing.assert_array_equal(cm, naive)


def _probs(seed: int, n: int, n_classes: int, *, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(n_classes), size=n)
    if ties:
        probs = np.round(probs * 4) / 4  # coarse values make many equal scores
    return rng.integers(0, n_classes, n), probs


@pytest.mark.parametrize("ties", [False, True], ids=["no-ties", "ties"])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("n_classes", [3, 10, 30])
@pytest.mark.parametrize("seed", [0, 1])
def test_top_k_matches_sklearn(seed: int, n_classes: int, k: int, ties: bool) -> None:
    y_true, probs = _probs(seed, 200, n_classes, ties=ties)
    expected = _sklearn_quiet(
        skm.top_k_accuracy_score, y_true, probs, k=k, labels=list(range(n_classes))
    )
    assert metrics.top_k_accuracy_score(y_true, probs, k=k) == pytest.approx(expected, abs=ATOL)


def test_top_k_binary_matches_sklearn() -> None:
    # sklearn wants a 1-D positive-class score for two classes (and thresholds it at 0.5).
    y_true, probs = _probs(3, 200, 2, ties=False)
    expected = skm.top_k_accuracy_score(y_true, probs[:, 1], k=1, labels=[0, 1])
    assert metrics.top_k_accuracy_score(y_true, probs, k=1) == pytest.approx(expected, abs=ATOL)


def test_top_k_ties_rank_higher_class_first() -> None:
    probs = np.full((3, 3), 1 / 3)
    assert metrics.top_k_accuracy_score([0, 1, 2], probs, k=1) == pytest.approx(1 / 3)
    assert metrics.top_k_accuracy_score([2], probs[:1], k=1) == 1.0
    assert metrics.top_k_accuracy_score([0], probs[:1], k=2) == 0.0


def test_top_k_at_least_n_classes_is_one() -> None:
    y_true, probs = _probs(0, 50, 4, ties=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metrics.top_k_accuracy_score(y_true, probs, k=4) == 1.0
        assert metrics.top_k_accuracy_score(y_true, probs, k=9) == 1.0


@pytest.mark.parametrize(
    ("n_classes", "keys"),
    [(3, set()), (4, {"top3_accuracy"}), (6, {"top3_accuracy", "top5_accuracy"})],
    ids=["n3", "n4", "n6"],
)
def test_split_report_contract(n_classes: int, keys: set[str]) -> None:
    y_true, probs = _probs(1, 40, n_classes, ties=False)
    y_pred = probs.argmax(axis=1)
    names = [f"c{i}" for i in range(n_classes)]
    report = metrics.split_report(
        y_true, y_pred, class_names=names, probs=probs, skipped=("c0/broken.jpg",)
    )
    base = {"n", "accuracy", "balanced_accuracy", "macro", "weighted", "per_class"}
    base |= {"confusion_matrix", "skipped", "mcc", "kappa"}
    assert set(report) == base | keys
    assert json.loads(json.dumps(report)) == report
    assert report["skipped"] == ["c0/broken.jpg"]
    assert report["n"] == 40 and type(report["n"]) is int
    assert all(type(report[k]) is float for k in ("accuracy", "mcc", "kappa", *keys))
    assert [row["class"] for row in report["per_class"]] == names
    assert set(report["per_class"][0]) == {
        "class",
        "precision",
        "recall",
        "f1",
        "support",
        "specificity",
    }
    assert all(type(x) is int for row in report["confusion_matrix"] for x in row)
    assert report["kappa"] == pytest.approx(skm.cohen_kappa_score(y_true, y_pred), abs=ATOL)
    for k in (3, 5):
        if f"top{k}_accuracy" in report:
            expected = skm.top_k_accuracy_score(y_true, probs, k=k, labels=list(range(n_classes)))
            assert report[f"top{k}_accuracy"] == pytest.approx(expected, abs=ATOL)
    no_probs = metrics.split_report(y_true, y_pred, class_names=names)
    assert set(no_probs) == base and no_probs["skipped"] == []


@pytest.mark.parametrize(
    ("y_true", "y_pred", "n_classes", "match"),
    [
        pytest.param([0, 1], [0], 2, r"different lengths \(2 vs 1\)", id="lengths-differ"),
        pytest.param([0, 3], [0, 1], 3, r"y_true has labels outside \[0, 3\).*max 3", id="too-big"),
        pytest.param([0, 1], [-1, 1], 3, r"y_pred has labels outside \[0, 3\).*min -1", id="neg"),
        pytest.param([0.0, 1.5], [0, 1], 2, "integer class indices, got dtype float64", id="float"),
        pytest.param(["cat"], [0], 2, "integer class indices", id="strings"),
        pytest.param([[0, 1]], [[0, 1]], 2, r"1-D class indices, got shape \(1, 2\)", id="2d"),
        pytest.param([0], [0], 0, "n_classes must be a positive int, got 0", id="n_classes0"),
    ],
)
def test_label_errors(y_true, y_pred, n_classes: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        metrics.confusion_matrix(y_true, y_pred, n_classes=n_classes)


def test_other_input_errors() -> None:
    with pytest.raises(ValueError, match=r"square \(n_classes, n_classes\).*got shape \(2, 3\)"):
        metrics.accuracy_score(np.zeros((2, 3)))
    with pytest.raises(
        ValueError, match=r"probs must be \(n, n_classes\) numeric scores, got shape \(3,\)"
    ):
        metrics.top_k_accuracy_score([0, 1, 2], np.zeros(3), k=1)
    with pytest.raises(ValueError, match="y_true has 2 samples but probs has 3 rows"):
        metrics.top_k_accuracy_score([0, 1], np.zeros((3, 4)), k=1)
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
        metrics.top_k_accuracy_score([0, 1], np.zeros((2, 4)), k=0)
    with pytest.raises(ValueError, match=r"labels outside \[0, 4\)"):
        metrics.top_k_accuracy_score([0, 4], np.zeros((2, 4)), k=1)
