"""core.analysis.compare against independent references: scikit-learn, scipy, loops, hand counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from sklearn import metrics as skm

from core.analysis import compare
from core.errors import ClassLensError
from core.runs import Run

CLASSES = ["cat", "dog", "bird"]


def _run(
    rid: str,
    rows: list[tuple[str, str, int, int]],
    *,
    fingerprint: str = "fp-digits",
    classes: list[str] = CLASSES,
    name: str | None = None,
) -> Run:
    """Return an in-memory Run whose predictions() are ``rows`` (split, path, y_true, y_pred)."""
    df = pd.DataFrame(rows, columns=["split", "path", "y_true", "y_pred"])
    df["confidence"], df["loss"] = 0.5, 1.0
    meta = {"dataset": {"fingerprint": fingerprint}, "checkpoint": {"name": f"{name or rid}.pt"}}
    return Run(rid, Path("/nonexistent"), meta, {"classes": classes}, {"df": df})


def _models(n: int = 600, k: int = 4, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Return y_true (n,) and y_pred (2, n): a 90%-right and a 75%-right model."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    preds = [np.where(rng.random(n) < acc, y, rng.integers(0, k, n)) for acc in (0.9, 0.75)]
    return y, np.stack(preds)


# --- alignment and refusal ---------------------------------------------------------------


def test_align_keeps_rows_present_in_every_run_in_the_first_runs_order() -> None:
    a = _run(
        "a", [("test", "x", 0, 0), ("test", "y", 1, 2), ("test", "z", 2, 2), ("train", "x", 1, 1)]
    )
    b = _run("b", [("test", "z", 2, 1), ("test", "x", 0, 1), ("test", "w", 1, 1)])
    out = compare.align([a, b], split="test")
    # x and z are in both; y only in a, w only in b
    assert out.y_true.tolist() == [0, 2]
    assert out.y_pred.tolist() == [[0, 2], [1, 1]]
    assert out.rows.tolist() == [[0, 2], [1, 0]]
    assert out.dropped == (1, 1)
    assert out.class_names == tuple(CLASSES) and out.run_ids == ("a", "b")
    every = compare.align([a, b])
    assert every.dropped == (2, 1)  # ("test", "y") and ("train", "x") missing from b


def test_align_refuses_runs_of_different_datasets() -> None:
    a = _run("a", [("test", "x", 0, 0)], name="good")
    b = _run("b", [("test", "x", 0, 0)], fingerprint="fp-other-dataset", name="other")
    with pytest.raises(ClassLensError, match=r"run other was evaluated on a different dataset"):
        compare.align([a, b])
    with pytest.raises(ClassLensError, match="compare runs of the same dataset"):
        compare.check_same_dataset([a, b])


def test_align_refuses_other_class_names_and_a_single_run() -> None:
    a = _run("a", [("test", "x", 0, 0)])
    b = _run("b", [("test", "x", 0, 0)], classes=["cat", "dog", "fish"])
    with pytest.raises(ClassLensError, match="different class names"):
        compare.align([a, b])
    with pytest.raises(ClassLensError, match="at least two runs"):
        compare.align([a])


def test_align_refuses_disagreeing_true_classes() -> None:
    a = _run("a", [("test", "x", 0, 0)])
    b = _run("b", [("test", "x", 1, 0)])
    with pytest.raises(ClassLensError, match="another true class"):
        compare.align([a, b])


def test_model_names_are_stems_made_unique_by_run_id() -> None:
    runs = [_run("aaaaaa11", [], name="good"), _run("bbbbbb22", [], name="good")]
    assert compare.model_names(runs) == ["good (aaaaaa)", "good (bbbbbb)"]
    assert compare.model_names([runs[0], _run("c", [], name="overfit")]) == ["good", "overfit"]


def test_default_runs_add_the_oldest_other_run_of_the_same_dataset() -> None:
    def made(rid: str, created: str, fingerprint: str = "fp-digits") -> Run:
        run = _run(rid, [], fingerprint=fingerprint)
        run.meta["created"] = created
        return run

    chosen = made("new", "2026-03-01")
    others = [
        made("other-data", "2026-01-01", fingerprint="fp-other"),
        made("mid", "2026-02-01"),
        made("old", "2026-01-15"),
        chosen,
    ]
    assert compare.default_runs(chosen, others) == ["new", "old"]
    assert compare.default_runs(chosen, [chosen, others[0]]) == ["new"]  # nothing to pair with


# --- bootstrap --------------------------------------------------------------------------


def _sk(y: np.ndarray, p: np.ndarray, k: int) -> dict[str, np.ndarray | float]:
    labels = list(range(k))
    kw = {"labels": labels, "zero_division": 0}
    return {
        "accuracy": skm.accuracy_score(y, p),
        "balanced_accuracy": skm.balanced_accuracy_score(y, p),
        "macro_f1": skm.f1_score(y, p, average="macro", **kw),
        "recall": skm.recall_score(y, p, average=None, **kw),
        "precision": skm.precision_score(y, p, average=None, **kw),
        "f1": skm.f1_score(y, p, average=None, **kw),
    }


def test_point_values_match_scikit_learn() -> None:
    y, preds = _models(k=4)
    boot = compare.bootstrap(y, preds, n_classes=5, n_resamples=10)  # class 4 never occurs
    for i, p in enumerate(preds):
        ref = _sk(y, p, 5)
        for metric, value in ref.items():
            np.testing.assert_allclose(boot.point[metric][i], value, err_msg=metric)


def test_resamples_are_paired_and_match_scikit_learn() -> None:
    y, preds = _models(n=200, k=3)
    boot = compare.bootstrap(y, preds, n_classes=3, n_resamples=50, seed=7)
    idx = np.random.default_rng(7).integers(0, len(y), size=(50, len(y)))  # the documented draw
    for r in (0, 17, 49):
        for i, p in enumerate(preds):  # the same rows idx[r] for both models
            ref = _sk(y[idx[r]], p[idx[r]], 3)
            for metric, value in ref.items():
                np.testing.assert_allclose(boot.samples[metric][r, i], value, err_msg=metric)
    assert boot.samples["accuracy"].shape == (50, 2)
    assert boot.samples["recall"].shape == (50, 2, 3)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.filterwarnings("ignore:A single label was found")
def test_balanced_accuracy_skips_classes_absent_from_a_resample() -> None:
    y, p = np.array([0, 0, 0, 1]), np.array([0, 1, 0, 1])
    boot = compare.bootstrap(y, p[None], n_classes=2, n_resamples=200)
    idx = np.random.default_rng(0).integers(0, 4, size=(200, 4))
    assert any(3 not in ix for ix in idx), "some resample should miss class 1"
    expected = [skm.balanced_accuracy_score(y[ix], p[ix]) for ix in idx]
    np.testing.assert_allclose(boot.samples["balanced_accuracy"][:, 0], expected)


def test_intervals_are_percentiles_of_the_resamples_and_of_paired_differences() -> None:
    y, preds = _models()
    boot = compare.bootstrap(y, preds, n_classes=4, n_resamples=400)
    acc = compare.estimate(boot, "accuracy")
    s = boot.samples["accuracy"]
    np.testing.assert_allclose(acc.low, np.percentile(s, 2.5, axis=0))
    np.testing.assert_allclose(acc.high, np.percentile(s, 97.5, axis=0))
    assert np.all(acc.low < acc.value) and np.all(acc.value < acc.high)
    delta = compare.estimate(boot, "accuracy", baseline=0)
    diff = s[:, 1] - s[:, 0]
    assert delta.value[1] == pytest.approx(
        skm.accuracy_score(y, preds[1]) - skm.accuracy_score(y, preds[0])
    )
    assert delta.low[1] == pytest.approx(np.percentile(diff, 2.5))
    assert delta.high[1] == pytest.approx(np.percentile(diff, 97.5))
    assert delta.value[0] == delta.low[0] == delta.high[0] == 0
    assert delta.excludes_zero.tolist() == [False, True]  # 75% vs 90% on 600 images
    per = compare.estimate(boot, "recall", baseline=1)
    assert per.value.shape == per.low.shape == (2, 4)


def test_paired_interval_is_narrower_than_unpaired_when_models_agree() -> None:
    y, preds = _models()
    b = preds[0].copy()
    b[:6] = (y[:6] + 1) % 4  # B differs from A on only a few images
    boot = compare.bootstrap(y, np.stack([preds[0], b]), n_classes=4, n_resamples=500)
    paired = compare.estimate(boot, "accuracy", baseline=0)
    single = compare.estimate(boot, "accuracy")
    assert paired.high[1] - paired.low[1] < 0.5 * (single.high[1] - single.low[1])


def test_bootstrap_defaults_to_1000_resamples_drawn_with_seed_0() -> None:
    # Its speed (1000 resamples of 3000 rows, 10 classes: goal 1 s) is timed by bench/bootstrap.py.
    y, preds = _models(n=300, k=10)
    boot = compare.bootstrap(y, preds, n_classes=10)
    assert boot.samples["recall"].shape == (1000, 2, 10)
    last = np.random.default_rng(0).integers(0, len(y), size=(1000, len(y)))[-1]
    for i, p in enumerate(preds):
        ref = _sk(y[last], p[last], 10)
        np.testing.assert_allclose(boot.samples["recall"][-1, i], ref["recall"])
        np.testing.assert_allclose(boot.samples["macro_f1"][-1, i], ref["macro_f1"])


def test_bootstrap_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"y_pred must be \(m, 3\)"):
        compare.bootstrap([0, 1, 0], [[0, 1]], n_classes=2)
    with pytest.raises(ValueError, match="no images"):
        compare.bootstrap([], [[]], n_classes=2)


def test_percentile_interval_covers_the_true_accuracy_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(2024)
    reps, n, acc = 200, 300, 0.8
    covered = 0
    for r in range(reps):
        y_pred = (rng.random(n) >= acc).astype(np.int64)  # 0 = right (y_true is all 0)
        boot = compare.bootstrap(
            np.zeros(n, np.int64), y_pred[None], n_classes=2, n_resamples=300, seed=r
        )
        est = compare.estimate(boot, "accuracy")
        covered += est.low[0] <= acc <= est.high[0]
    assert 0.90 <= covered / reps <= 0.99, covered / reps


# --- McNemar ------------------------------------------------------------------------------


def test_mcnemar_hand_computed() -> None:
    # b=1, c=9: 2 * P(X <= 1), X ~ Bin(10, 1/2) = 2 * (1 + 10) / 1024
    assert compare.mcnemar_p(1, 9) == 0.021484375
    assert compare.mcnemar_p(9, 1) == 0.021484375
    assert compare.mcnemar_p(0, 0) == 1.0
    assert compare.mcnemar_p(5, 5) == 1.0  # 2 * P(X <= 5) > 1 is capped
    assert compare.mcnemar_p(0, 3) == 0.25  # 2 / 8


BC = [(0, 1), (2, 3), (1, 9), (3, 17), (10, 30), (40, 41), (0, 60), (120, 200), (2600, 2800)]


@pytest.mark.parametrize(("b", "c"), BC, ids=[f"b{b}-c{c}" for b, c in BC])
def test_mcnemar_matches_scipy_binomtest(b: int, c: int) -> None:
    expected = binomtest(min(b, c), b + c, 0.5).pvalue
    assert compare.mcnemar_p(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_mcnemar_counts_every_pair_like_a_loop() -> None:
    y, preds = _models(n=300, k=3)
    third = np.where(np.arange(300) % 3 == 0, y, preds[1])
    preds = np.stack([preds[0], preds[1], third])
    tests = compare.mcnemar(y, preds)
    assert [(t.a, t.b_model) for t in tests] == [(0, 1), (0, 2), (1, 2)]
    for t in tests:
        pa, pb = preds[t.a], preds[t.b_model]
        b = sum(1 for i in range(300) if pa[i] == y[i] and pb[i] != y[i])
        c = sum(1 for i in range(300) if pa[i] != y[i] and pb[i] == y[i])
        assert (t.b, t.c) == (b, c)
        assert t.p_value == pytest.approx(binomtest(min(b, c), b + c, 0.5).pvalue)


def test_flips_are_the_rows_right_in_one_model_only() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    a = np.array([0, 1, 0, 0, 2, 1])
    b = np.array([0, 0, 2, 1, 1, 1])
    a_only, b_only = compare.flips(y, a, b)
    assert a_only.tolist() == [1, 3]
    assert b_only.tolist() == [2, 4]
    t = compare.mcnemar(y, np.stack([a, b]))[0]
    assert (t.b, t.c) == (len(a_only), len(b_only))


# --- conclusion and tables ------------------------------------------------------------------


def _clear_case() -> tuple[np.ndarray, np.ndarray]:
    """y_true 400 images of 4 classes; A right everywhere, B wrong on half of class 2."""
    y = np.repeat(np.arange(4), 100)
    b = y.copy()
    b[200:250] = 3
    return y, np.stack([y, b])


def test_conclusion_names_the_worse_model_the_interval_and_significance() -> None:
    y, preds = _clear_case()
    boot = compare.bootstrap(y, preds, n_classes=4, n_resamples=300)
    tests = compare.mcnemar(y, preds)
    assert (tests[0].b, tests[0].c) == (50, 0)
    [finding] = compare.conclude(
        boot, tests, names=["good", "overfit"], class_names=["0", "1", "2", "3"]
    )
    d = compare.estimate(boot, "accuracy", baseline=0)
    assert finding.direction == -1
    assert finding.text == (
        f"overfit is worse than good on accuracy by 12.5 points "
        f"[{-100 * d.high[1]:.1f}, {-100 * d.low[1]:.1f}]; McNemar p < 0.001 — "
        "the difference is significant."
    )
    r = compare.estimate(boot, "recall", baseline=0)
    assert finding.class_lines[0] == (  # in points, as the accuracy line and every table
        f"good's recall on '2' is higher by 50.0 points "
        f"[{-100 * r.high[1, 2]:.1f}, {-100 * r.low[1, 2]:.1f}]"
    )
    assert any(line.startswith("good's precision on '3'") for line in finding.class_lines)
    # the other way round: B as baseline, A is better
    [flip] = compare.conclude(
        boot, tests, names=["good", "overfit"], class_names=list("0123"), baseline=1
    )
    assert flip.direction == 1
    assert flip.text.startswith("good is better than overfit on accuracy by 12.5 points")


def test_conclusion_says_when_the_difference_could_be_chance() -> None:
    y = np.repeat(np.arange(2), 100)
    a, b = y.copy(), y.copy()
    a[:3] = 1  # A wrong on 3, B wrong on 2 other images
    b[100:102] = 0
    boot = compare.bootstrap(y, np.stack([a, b]), n_classes=2, n_resamples=300)
    [finding] = compare.conclude(
        boot, compare.mcnemar(y, np.stack([a, b])), names=["A", "B"], class_names=["x", "y"]
    )
    assert finding.direction == 0
    assert finding.text.startswith("B is better than A on accuracy by 0.5 points [")
    assert finding.text.endswith(
        "McNemar p = 1.000 — the difference is not significant (it could be chance)."
    )
    assert finding.class_lines == ()


def test_tables_carry_the_point_values_and_flag_significant_deltas() -> None:
    y, preds = _clear_case()
    boot = compare.bootstrap(y, preds, n_classes=4, n_resamples=300)
    overall = compare.overall_table(boot, names=["good", "overfit"])
    assert overall["accuracy"].tolist() == pytest.approx([1.0, 0.875])
    assert overall["balanced accuracy"].tolist() == pytest.approx(
        [1.0, skm.balanced_accuracy_score(y, preds[1])]
    )
    assert overall["Δ accuracy"].isna().tolist() == [True, False]
    assert overall["Δ accuracy"][1] == pytest.approx(-0.125)
    assert overall["Δ accuracy 95% CI"][0] == ""
    table, flags = compare.class_table(boot, names=["good", "overfit"], class_names=list("0123"))
    assert table["recall overfit"].tolist() == pytest.approx([1, 1, 0.5, 1])
    assert table["Δ overfit"].tolist() == pytest.approx([0, 0, -0.5, 0])
    assert flags["Δ overfit"].tolist() == [0, 0, -1, 0]
    assert flags["recall good"].tolist() == [0, 0, 0, 0]
    pairs = compare.mcnemar_table(compare.mcnemar(y, preds), names=["good", "overfit"])
    assert pairs.iloc[0].tolist()[:4] == ["good", "overfit", 50, 0]


@pytest.mark.parametrize(
    ("delta", "text"),
    [(-0.125, "-12.5 pts"), (0.0004, "0.0 pts"), (-0.0004, "0.0 pts"), (0.1, "+10.0 pts")],
)
def test_points_is_the_one_unit_of_differences(delta: float, text: str) -> None:
    assert compare.points(delta) == text
    assert compare.points(float("nan")) == "–"


def test_class_table_interval_is_in_points_like_the_overall_one() -> None:
    y, preds = _clear_case()
    boot = compare.bootstrap(y, preds, n_classes=4, n_resamples=300)
    table, _ = compare.class_table(boot, names=["good", "overfit"], class_names=list("0123"))
    r = compare.estimate(boot, "recall", baseline=0)
    assert table["Δ overfit 95% CI"][2] == f"[{100 * r.low[1, 2]:+.1f}, {100 * r.high[1, 2]:+.1f}]"
    assert table["Δ overfit 95% CI"][0] == "[0.0, 0.0]"  # no "+0.0" for no change
    overall = compare.overall_table(boot, names=["good", "overfit"])
    d = compare.estimate(boot, "accuracy", baseline=0)
    assert overall["Δ accuracy 95% CI"][1] == f"[{100 * d.low[1]:+.1f}, {100 * d.high[1]:+.1f}]"


def test_flip_labels_show_both_models_predictions() -> None:
    # 3 images: A right on 0 and 2, B right on 1; confidences per run, in its row order
    y, a, b = np.array([0, 1, 2]), np.array([0, 0, 2]), np.array([1, 1, 0])
    aligned = compare.Aligned(
        run_ids=("a", "b"), class_names=("x", "y", "z"), split="test", y_true=y,
        y_pred=np.stack([a, b]), rows=np.array([[0, 1, 2], [2, 0, 1]]), dropped=(0, 0),
    )  # fmt: skip
    conf = [np.array([0.9, 0.6, 0.8]), np.array([0.55, 0.7, 0.45])]
    labels = compare.flip_labels(aligned, [0, 2], confidence=conf, names=["A", "B"], models=[0, 1])
    # image 0: B's row is 2 (conf 0.45); image 2: B's row is 1 (conf 0.7)
    assert labels == [
        "true 'x' · A 'x' 90% ✓ · B 'y' 45% ✗",
        "true 'z' · A 'z' 80% ✓ · B 'x' 70% ✗",
    ]
    right_a, _ = compare.flips(y, a, b)
    assert right_a.tolist() == [0, 2]
