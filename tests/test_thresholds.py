"""core.analysis.thresholds against scikit-learn, brute force and a hand-counted case."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from core.analysis import thresholds as th
from core.figures import thresholds as th_fig


def _random(seed: int, n: int = 300, k: int = 4, decimals: int = 2):
    """Return (y_true, probs) with many tied scores (probs rounded to ``decimals``)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, np.round(p, decimals).astype(np.float32)


@pytest.mark.parametrize("decimals", [1, 2, 6], ids=["heavy-ties", "ties", "few-ties"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_and_auc_equal_sklearn(seed: int, decimals: int) -> None:
    y, p = _random(seed, decimals=decimals)
    for c in range(p.shape[1]):
        ref_ap = skm.average_precision_score(y == c, p[:, c])
        ref_auc = skm.roc_auc_score(y == c, p[:, c])
        assert th.average_precision_score(y, p, c) == pytest.approx(ref_ap, abs=1e-9)
        assert th.roc_auc_score(y, p, c) == pytest.approx(ref_auc, abs=1e-9)


def test_curves_equal_sklearn_curves() -> None:
    y, p = _random(3, decimals=2)
    cur = th.class_curves(y, p, 1)
    prec, rec, thr = skm.precision_recall_curve(y == 1, p[:, 1])
    # sklearn lists increasing thresholds and ends with (recall 0, precision 1)
    np.testing.assert_allclose(cur.thresholds, thr[::-1].astype(np.float64))
    np.testing.assert_allclose(cur.recall, rec[::-1], atol=1e-12)
    np.testing.assert_allclose(cur.precision, prec[::-1], atol=1e-12)
    fpr, tpr, rthr = skm.roc_curve(y == 1, p[:, 1], drop_intermediate=False)
    np.testing.assert_allclose(cur.fpr, fpr, atol=1e-12)
    np.testing.assert_allclose(cur.tpr, tpr, atol=1e-12)
    np.testing.assert_allclose(cur.thresholds, rthr[1:])


def test_class_without_positives_is_nan_without_warning() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.9, 0.1, 0.0], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.4, 0.2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cur = th.class_curves(y, p, 2)
        assert np.isnan(cur.average_precision) and np.isnan(cur.roc_auc)
        assert th.threshold_for_recall(y, p, 2, 0.9) is None
        point = th.at_threshold(y, p, 2, 0.15)
        assert np.isnan(point.recall) and (point.tp, point.fp, point.tn) == (0, 1, 3)
        table = th.class_table(y, p, ["a", "b", "c"])
    assert table["support"].tolist() == [2, 2, 0]
    assert np.isnan(table.loc[2, "average_precision"])


def test_at_threshold_hand_counted() -> None:
    # class 1; scores 0.9 0.8 0.5 0.5 0.3 0.1; truth: 1 0 1 1 0 1 -> at t=0.5 flag 4 rows
    y = np.array([1, 0, 1, 1, 0, 1])
    s1 = np.array([0.9, 0.8, 0.5, 0.5, 0.3, 0.1])
    p = np.stack([1 - s1, s1], axis=1)
    point = th.at_threshold(y, p, 1, 0.5)  # >= keeps both 0.5 rows
    assert (point.tp, point.fp, point.fn, point.tn) == (3, 1, 1, 1)
    assert point.precision == 3 / 4 and point.recall == 3 / 4 and point.flagged == 4
    nothing = th.at_threshold(y, p, 1, 0.95)
    assert (nothing.tp, nothing.fp, nothing.fn, nothing.tn) == (0, 0, 4, 2)
    assert np.isnan(nothing.precision) and nothing.recall == 0


def _brute(y, p, c, target):
    best = None
    for t in np.unique(p[:, c]):
        flag = p[:, c] >= t
        tp = int((flag & (y == c)).sum())
        if tp / (y == c).sum() >= target and (best is None or t > best[0]):
            best = (float(t), tp / int(flag.sum()))
    return best


@pytest.mark.parametrize("target", [0.05, 0.5, 0.8, 0.95, 0.999, 1.0])
@pytest.mark.parametrize("seed", [4, 5])
def test_threshold_for_recall_equals_brute_force(seed: int, target: float) -> None:
    y, p = _random(seed, n=200, decimals=2)
    for c in range(p.shape[1]):
        got = th.threshold_for_recall(y, p, c, target)
        t, precision = _brute(y, p.astype(np.float64), c, target)
        assert got.threshold == t
        assert got.precision == pytest.approx(precision, abs=1e-12)
        assert got.recall >= target


def test_bad_input_says_what_to_pass() -> None:
    y, p = _random(0, n=10)
    with pytest.raises(ValueError, match=r"target recall must be in \(0, 1\]"):
        th.threshold_for_recall(y, p, 0, 0)
    with pytest.raises(ValueError, match="class index 9 is out of range: scores have 4"):
        th.class_curves(y, p, 9)
    with pytest.raises(ValueError, match=r"scores must be \(n, n_classes\)"):
        th.at_threshold(y, p[:, 0], 0, 0.5)


def test_figures_mark_the_point_and_name_the_auc() -> None:
    y, p = _random(6)
    cur = th.class_curves(y, p, 0)
    point = th.at_threshold(y, p, 0, 0.4)
    pr = th_fig.pr_figure(cur, class_name="cat", point=point)
    marker = pr.data[-1]
    assert (marker.x[0], marker.y[0]) == (point.recall, point.precision)
    assert pr.data[0].name == f"AP {skm.average_precision_score(y == 0, p[:, 0]):.3f}"
    roc = th_fig.roc_figure(cur, class_name="cat", point=point)
    assert roc.data[0].name == f"AUC {skm.roc_auc_score(y == 0, p[:, 0]):.3f}"
    assert roc.data[-1].x[0] == point.fp / int((y != 0).sum())


def test_recall_sentence() -> None:
    point = th.ThresholdPoint(0.03, 0.41, 0.95, tp=95, fp=137, fn=5, tn=763)
    text = th.recall_sentence(point, "8", 0.95)
    assert text.startswith("To find 95% of '8' images, flag every image with P('8') ≥ 0.03;")
    assert "41% of the 232 flagged images are really '8'" in text


def test_recall_sentence_with_one_flagged_image_is_singular() -> None:
    hit = th.ThresholdPoint(0.9, 1.0, 0.5, tp=1, fp=0, fn=1, tn=8)
    assert th.recall_sentence(hit, "8", 0.5).endswith(
        "it then finds 50.0% of them (1 of 2), and the 1 flagged image is really '8'."
    )
    miss = th.ThresholdPoint(0.9, 0.0, 0.0, tp=0, fp=1, fn=2, tn=7)
    assert th.recall_sentence(miss, "8", 0.5).endswith("the 1 flagged image is not really '8'.")


@pytest.mark.parametrize(
    ("counts", "words"),
    [
        ((95, 137, 5, 763), "95 '8' images flagged, 137 others flagged, 5 '8' missed, 763 others"),
        ((1, 1, 0, 1), "1 '8' image flagged, 1 other flagged, 0 '8' missed, 1 other correctly"),
        ((0, 2, 1, 1_000), "0 '8' images flagged, 2 others flagged, 1 '8' missed, 1,000 others"),
    ],
)
def test_counts_sentence_pluralises_each_count(counts: tuple[int, ...], words: str) -> None:
    tp, fp, fn, tn = counts
    point = th.ThresholdPoint(0.5, 0.0, 0.0, tp=tp, fp=fp, fn=fn, tn=tn)
    text = th.counts_sentence(point, "8", sum(counts), "test")
    assert text.startswith(f"Counts one-vs-rest over {sum(counts):,} test image")
    assert words in text and text.endswith("correctly left out.")
    one = th.counts_sentence(
        th.ThresholdPoint(0.5, 1.0, 1.0, tp=1, fp=0, fn=0, tn=0), "8", 1, "val"
    )
    assert one.startswith("Counts one-vs-rest over 1 val image: 1 '8' image flagged, 0 others")


def test_argmax_recall_against_threshold_recall_hand_counted() -> None:
    # Class 0 images (rows 0-3): row 0 argmax 0 at P 0.40 (lost at 0.5), row 1 argmax 0 at 0.9,
    # row 2 argmax 1 at P(0) 0.45, row 3 argmax 1 at P(0) 0.3. Row 4 is class 1.
    probs = np.array(
        [
            [0.40, 0.30, 0.30],
            [0.90, 0.05, 0.05],
            [0.45, 0.55, 0.00],
            [0.30, 0.70, 0.00],
            [0.10, 0.80, 0.10],
        ]
    )
    y_true = np.array([0, 0, 0, 0, 1])
    y_pred = probs.argmax(1)
    r = th.argmax_recall(y_true, y_pred, probs, 0, 0.5)
    assert (r.n_pos, r.tp_argmax, r.tp_threshold, r.lost, r.gained) == (4, 2, 1, 1, 0)
    # the argmax recall is the one scikit-learn (and Overview) reports
    assert r.tp_argmax / r.n_pos == skm.recall_score(y_true, y_pred, labels=[0], average="macro")
    assert r.differs
    text = th.argmax_sentence(r, "zero")
    assert "most likely class (argmax): recall 50.0% (2 of 4)" in text
    assert "P('zero') ≥ 0.5, one class at a time: recall 25.0% (1 of 4)" in text
    # singular on purpose (was "1 'zero' images ... have"): one image, hand-counted above
    assert "1 'zero' image the model names 'zero' has P('zero') below 0.5" in text
    low = th.argmax_recall(y_true, y_pred, probs, 0, 0.42)  # row 0 lost, row 2 gained
    assert (low.tp_threshold, low.lost, low.gained, low.differs) == (2, 1, 1, False)
    assert "although another class is more likely" in th.argmax_sentence(low, "zero")
    assert "1 'zero' image reaches 0.42 although" in th.argmax_sentence(low, "zero")
    # two lost (rows 0 and 1 below 0.95): the plural
    two = th.argmax_sentence(th.argmax_recall(y_true, y_pred, probs, 0, 0.95), "zero")
    assert "2 'zero' images the model names 'zero' have P('zero') below 0.95" in two
    assert th.argmax_sentence(th.argmax_recall(y_true, y_pred, probs, 2, 0.5), "two") == ""
