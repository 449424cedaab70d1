"""core.analysis.calibration against a hand-computed case, a per-sample loop and torch.bucketize."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from core.analysis import calibration as cal
from core.figures import calibration as cal_fig


def _loop_reference(conf, correct, n_bins):
    """Return (count, mean conf, accuracy, ece, mce, members) from a plain per-sample loop."""
    edges = np.linspace(0, 1, n_bins + 1)
    members = [[] for _ in range(n_bins)]
    for i, x in enumerate(conf):
        b = min(int(np.digitize(x, edges, right=False)) - 1, n_bins - 1)  # [lo, hi)
        members[b].append(i)
    count, mean_c, acc, ece, mce = [], [], [], 0.0, 0.0
    for m in members:
        count.append(len(m))
        if not m:
            mean_c.append(np.nan)
            acc.append(np.nan)
            continue
        c = sum(conf[i] for i in m) / len(m)
        a = sum(bool(correct[i]) for i in m) / len(m)
        mean_c.append(c)
        acc.append(a)
        ece += len(m) / len(conf) * abs(a - c)
        mce = max(mce, abs(a - c))
    return np.array(count), np.array(mean_c), np.array(acc), ece, mce, members


def test_hand_computed_case() -> None:
    # 4 bins of width 0.25; 0.5 sits on an edge and goes to the bin above ([lo, hi))
    conf = np.array([0.1, 0.3, 0.5, 0.6, 0.9, 1.0])
    correct = np.array([0, 1, 1, 0, 1, 1], bool)
    rel = cal.reliability(conf, correct, n_bins=4)
    assert rel.count.tolist() == [1, 1, 2, 2]
    np.testing.assert_allclose(rel.confidence, [0.1, 0.3, 0.55, 0.95])
    np.testing.assert_allclose(rel.accuracy, [0.0, 1.0, 0.5, 1.0])
    # gaps 0.1, 0.7, 0.05, 0.05 -> ECE = (0.1 + 0.7 + 2 * 0.05 + 2 * 0.05) / 6
    assert rel.ece == pytest.approx(1.0 / 6, abs=1e-12)
    assert rel.mce == pytest.approx(0.7, abs=1e-12)
    assert [r.tolist() for r in rel.rows] == [[0], [1], [2, 3], [4, 5]]
    assert cal.bin_labels(rel)[2] == "0.50–0.75 · 2 images · accuracy 50%"
    assert cal.worst_bin(rel) == 1  # 1 image x gap 0.7 beats 1 x 0.1 and 2 x 0.05


@pytest.mark.parametrize("n_bins", [1, 10, 15])
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_a_per_sample_loop(seed: int, n_bins: int) -> None:
    rng = np.random.default_rng(seed)
    conf = np.concatenate([rng.uniform(0, 1, 400), np.linspace(0, 1, n_bins + 1), [0.0, 1.0]])
    correct = rng.uniform(0, 1, len(conf)) < conf
    rel = cal.reliability(conf, correct, n_bins=n_bins)
    count, mean_c, acc, ece, mce, members = _loop_reference(conf, correct, n_bins)
    assert rel.count.tolist() == count.tolist()
    np.testing.assert_allclose(rel.confidence, mean_c, atol=1e-12)
    np.testing.assert_allclose(rel.accuracy, acc, atol=1e-12)
    assert rel.ece == pytest.approx(ece, abs=1e-12)
    assert rel.mce == pytest.approx(mce, abs=1e-12)
    assert [r.tolist() for r in rel.rows] == members


def test_bin_convention_is_torch_bucketize_right_minus_one() -> None:
    torch = pytest.importorskip("torch")
    conf = np.concatenate([np.linspace(0, 1, 61), np.random.default_rng(2).uniform(0, 1, 200)])
    # the same edge values (torch.linspace rounds a few edges differently in the last bit)
    edges = torch.from_numpy(np.linspace(0, 1, cal.N_BINS + 1))
    ref = (torch.bucketize(torch.from_numpy(conf), edges, right=True) - 1).clamp(0, cal.N_BINS - 1)
    assert cal.bin_index(conf).tolist() == ref.tolist()


def test_top_label_and_per_class() -> None:
    y_true = np.array([0, 1, 2, 2, 1])
    probs = np.array(
        [[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4], [0.1, 0.85, 0.05]]
    )
    y_pred = probs.argmax(1)
    top = cal.top_label(y_true, y_pred, probs.max(1), n_bins=10)
    ref = _loop_reference(probs.max(1), y_pred == y_true, 10)
    assert top.ece == pytest.approx(ref[3], abs=1e-12)
    per = cal.per_class(y_true, probs, n_bins=10)
    for c, rel in enumerate(per):
        assert rel.ece == pytest.approx(_loop_reference(probs[:, c], y_true == c, 10)[3])
    table = cal.class_table(y_true, probs, ["a", "b", "c"], n_bins=10)
    assert table["support"].tolist() == [1, 2, 2]
    np.testing.assert_allclose(table["ece"], [r.ece for r in per])
    np.testing.assert_allclose(table["mean_prob"], probs.mean(0))


def test_empty_input_is_nan_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rel = cal.reliability(np.zeros(0), np.zeros(0, bool))
        assert np.isnan(rel.ece) and np.isnan(rel.mce)
        assert rel.count.sum() == 0 and len(rel.rows) == cal.N_BINS
        assert cal.reading(rel) == "No predictions to calibrate."


def test_bad_input_says_what_to_pass() -> None:
    with pytest.raises(ValueError, match=r"confidence must be probabilities in \[0, 1\]"):
        cal.reliability(np.array([1.5]), np.array([True]))
    with pytest.raises(ValueError, match="same length, got shapes"):
        cal.reliability(np.array([0.5, 0.2]), np.array([True]))


def test_reading_names_the_direction() -> None:
    over = cal.reliability(np.full(10, 0.9), np.arange(10) < 6)
    assert "**overconfident**" in cal.reading(over) and "says 90.0% and is right 60.0%" in (
        cal.reading(over)
    )
    under = cal.reliability(np.full(10, 0.55), np.arange(10) < 9)
    assert "**underconfident**" in cal.reading(under)


def test_figures_draw_the_bins() -> None:
    rng = np.random.default_rng(3)
    conf = rng.uniform(0, 1, 300)
    correct = rng.uniform(0, 1, 300) < conf
    rel = cal.reliability(conf, correct)
    fig = cal_fig.reliability_figure(rel)
    counts, bars = fig.data[0], fig.data[1]
    assert list(counts.y) == rel.count.tolist()
    assert list(bars.hovertext) == cal.bin_labels(rel)
    assert list(bars.y) == pytest.approx(rel.accuracy.tolist())
    y_true = rng.integers(0, 3, 300)
    y_pred = np.where(correct, y_true, (y_true + 1) % 3)
    hist = cal_fig.confidence_histogram(y_true, y_pred, conf)
    assert sum(hist.data[0].y) == correct.sum() and sum(hist.data[1].y) == (~correct).sum()


def test_outcome_counts_equal_numpy_histograms_of_right_and_wrong() -> None:
    rng = np.random.default_rng(5)
    conf = np.r_[rng.uniform(0, 1, 500), [0.0, 0.05, 0.5, 1.0]]  # edges: [lo, hi), last closed
    y_true = rng.integers(0, 4, len(conf))
    y_pred = np.where(rng.uniform(0, 1, len(conf)) < conf, y_true, (y_true + 1) % 4)
    edges, right, wrong = cal.outcome_counts(y_true, y_pred, conf, n_bins=20)
    ok = y_true == y_pred
    np.testing.assert_allclose(edges, np.linspace(0, 1, 21))
    assert right.tolist() == np.histogram(conf[ok], bins=20, range=(0, 1))[0].tolist()
    assert wrong.tolist() == np.histogram(conf[~ok], bins=20, range=(0, 1))[0].tolist()
    with pytest.raises(ValueError, match="probabilities"):
        cal.outcome_counts([0], [0], [1.5])


def _mixed_case() -> tuple[np.ndarray, np.ndarray]:
    """10 images at 50% confidence, 2 right (overconfident); 90 at 90%, all right (under).

    On average it says 86% and is right 92%, so the old reading (mean confidence against mean
    accuracy) called it underconfident although its 50% bin is right 20% of the time.
    """
    conf = np.r_[np.full(10, 0.5), np.full(90, 0.9)]
    correct = np.r_[np.arange(10) < 2, np.ones(90, bool)]
    return conf, correct


def test_direction_splits_the_ece_by_sign_of_each_bins_gap() -> None:
    conf, correct = _mixed_case()
    rel = cal.reliability(conf, correct)
    d = cal.confidence_direction(rel)
    # Hand count: over = 10 x (0.5 - 0.2) / 100, under = 90 x (1.0 - 0.9) / 100.
    assert d.over == pytest.approx(0.03) and d.under == pytest.approx(0.09)
    assert d.over + d.under == pytest.approx(rel.ece)
    assert d.direction == "mixed"
    assert [(r.direction, r.count) for r in d.regions] == [("over", 10), ("under", 90)]
    low = d.regions[0]
    assert (low.confidence, low.accuracy) == pytest.approx((0.5, 0.2))
    b = cal.bin_index([0.5])[0]
    assert (low.lo, low.hi) == pytest.approx((rel.edges[b], rel.edges[b + 1]))


def test_reading_names_every_overconfident_bin_of_a_mixed_model() -> None:
    conf, correct = _mixed_case()
    rel = cal.reliability(conf, correct)
    text = cal.reading(rel)
    # Derived from the bins the page shows: each bin right less often than it claims.
    over_bins = [
        b for b in range(cal.N_BINS) if rel.count[b] and rel.accuracy[b] < rel.confidence[b]
    ]
    assert over_bins, "the case has an overconfident bin"
    for b in over_bins:
        span = f"**overconfident** from {rel.edges[b]:.0%} to {rel.edges[b + 1]:.0%}"
        assert span in text
        assert f"it says {rel.confidence[b]:.0%} and is right {rel.accuracy[b]:.0%}" in text
    assert "**underconfident** from 87% to 93%" in text
    assert "says 86.0% and is right 92.0%" in text  # the averages are still given


@pytest.mark.parametrize(
    ("acc_at", "expected"),
    [(0.6, "over"), (1.0, "under"), (0.9, "calibrated")],
    ids=["right-less-often", "right-more-often", "as-claimed"],
)
def test_direction_of_a_one_sided_model(acc_at: float, expected: str) -> None:
    conf = np.full(100, 0.9)
    correct = np.arange(100) < round(100 * acc_at)
    assert cal.confidence_direction(cal.reliability(conf, correct)).direction == expected


def test_one_noisy_bin_does_not_make_a_model_mixed() -> None:
    # 1 image at 50% and wrong: 0.5 / 101 of ECE against 90 x 0.1 / 101 the other way.
    conf = np.r_[0.5, np.full(100, 0.9)]
    correct = np.r_[False, np.ones(100, bool)]
    d = cal.confidence_direction(cal.reliability(conf, correct))
    assert d.over < cal.MIXED_MIN_SHARE * (d.over + d.under)
    assert d.direction == "under"
    assert cal.confidence_direction(cal.reliability(np.zeros(0), np.zeros(0, bool))).direction == (
        "none"
    )
