"""Slices and weak segments (core.analysis.slices) against independent computations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score

from core.analysis import slices


def _table(n: int, seed: int, *, planted: bool) -> tuple[pd.DataFrame, dict[str, str]]:
    """A slice table: 6 categorical + 4 numeric columns of noise; optionally site C worse."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "split": np.where(rng.random(n) < 0.5, "train", "test"),
            "true class": rng.choice(["cat", "dog", "owl"], n),
            **{f"c{i}": rng.choice(list("ABCD"), n) for i in range(6)},
            **{f"x{i}": rng.normal(size=n) for i in range(4)},
        }
    )
    p_ok = np.full(n, 0.85)
    if planted:
        p_ok[df["c2"].to_numpy() == "C"] = 0.6
    df["correct"] = rng.random(n) < p_ok
    kinds = {"true class": "categorical", **{f"c{i}": "categorical" for i in range(6)}}
    kinds |= {f"x{i}": "numeric" for i in range(4)}
    return df, kinds


def test_per_value_accuracy_equals_sklearn_on_each_subset() -> None:
    rng = np.random.default_rng(1)
    n = 400
    y_true = rng.integers(0, 3, n)
    y_pred = np.where(rng.random(n) < 0.7, y_true, rng.integers(0, 3, n))
    df = pd.DataFrame(
        {
            "split": np.where(np.arange(n) < 200, "train", "test"),
            "site": rng.choice(["a", "b", "c"], n),
            "brightness": rng.random(n),
            "correct": y_true == y_pred,
        }
    )
    test = (df["split"] == "test").to_numpy()
    for column, kind in (("site", "categorical"), ("brightness", "numeric")):
        table = slices.per_value(df, column, kind, split="test")
        assert table["images"].sum() == test.sum()  # the bins cover the split once
        for _, row in table.iterrows():
            m = row["condition"].mask(df) & test
            assert row["images"] == m.sum()
            assert row["accuracy"] == pytest.approx(accuracy_score(y_true[m], y_pred[m]))
            rest = test & ~m
            assert row["rest accuracy"] == pytest.approx(accuracy_score(y_true[rest], y_pred[rest]))
    # bins of a numeric column come from train quantiles, not from the judged split
    edges = np.quantile(df.loc[~test, "brightness"], [0.25, 0.5, 0.75])
    conds = slices.conditions_for(df, "brightness", "numeric")
    assert conds[0].value == pytest.approx(edges[0])
    assert conds[-1].value == pytest.approx(edges[-1])


def test_bootstrap_interval_matches_scipy_bootstrap() -> None:
    outcomes = np.array([1] * 61 + [0] * 39)
    lo, hi = slices.bootstrap_interval(61, 100, resamples=20_000, seed=3)
    ref = stats.bootstrap(
        (outcomes,), np.mean, n_resamples=20_000, method="percentile", random_state=4
    ).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.011)
    assert hi == pytest.approx(ref.high, abs=0.011)
    # seeded: the same interval twice
    assert slices.bootstrap_interval(61, 100) == slices.bootstrap_interval(61, 100)


def test_fewer_correct_p_matches_fisher_exact() -> None:
    for k1, n1, k2, n2 in [(61, 100, 940, 1000), (5, 20, 10, 25), (30, 40, 28, 40), (20, 20, 3, 9)]:
        table = [[k1, n1 - k1], [k2, n2 - k2]]
        ref = stats.fisher_exact(table, alternative="less").pvalue
        p = slices.fewer_correct_p(k1, n1, k1 + k2, n1 + n2)
        assert p == pytest.approx(ref, rel=1e-9)


def test_benjamini_hochberg_matches_scipy() -> None:
    p = np.random.default_rng(0).random(50) ** 2
    np.testing.assert_allclose(
        slices.benjamini_hochberg(p), stats.false_discovery_control(p, method="bh")
    )


def test_random_labels_give_discoveries_at_most_at_the_nominal_rate() -> None:
    runs_with_any = 0
    seeds = 40
    for seed in range(seeds):
        df, kinds = _table(1500, seed, planted=False)
        search = slices.weak_segments(df, kinds, split="test")
        assert search.tried > 100
        runs_with_any += bool(search.segments)
    # under the global null BH bounds P(any discovery) by alpha (0.05); allow sampling noise
    assert runs_with_any / seeds <= 0.1


def test_planted_effect_found_and_ranked_first() -> None:
    df, kinds = _table(3000, 7, planted=True)
    search = slices.weak_segments(df, kinds, split="test")
    top = search.segments[0]
    assert [c.to_dict() for c in top.conditions] == [{"column": "c2", "op": "==", "value": "C"}]
    test = df[df["split"] == "test"]
    m = test["c2"] == "C"
    assert top.images == m.sum()
    assert top.accuracy == pytest.approx(test.loc[m, "correct"].mean())
    assert top.rest_accuracy == pytest.approx(test.loc[~m, "correct"].mean())
    s = top.sentence()
    assert s.startswith("Images with c2 is C (")
    assert f"after correcting for {search.tried:,} slices tried." in s


def test_segment_sentence_says_slice_for_one_tried() -> None:
    cond = slices.Condition("c2", "==", "C")
    seg = slices.Segment((cond,), 40, 0.2, 0.5, 0.9, 1e-5, 1e-5, tried=1, split="test")
    assert seg.sentence().endswith("p < 0.001 after correcting for 1 slice tried.")
    assert dataclasses.replace(seg, tried=2).sentence().endswith("for 2 slices tried.")


def test_target_class_judges_recall() -> None:
    df, kinds = _table(3000, 7, planted=True)
    search = slices.weak_segments(df, kinds, split="test", target_class="dog", pairs=False)
    dog = df[(df["split"] == "test") & (df["true class"] == "dog")]
    assert search.images == len(dog)
    assert "true class" not in search.columns


def test_segment_as_filter_selects_the_same_rows() -> None:
    from core.analysis import where

    df, kinds = _table(3000, 7, planted=True)
    df["x0"] = df["x0"].astype(float)
    for column, kind in (("c2", "categorical"), ("x0", "numeric")):
        for cond in slices.conditions_for(df, column, kind):
            w = slices.to_where((cond,))
            text = where.to_query(w)
            np.testing.assert_array_equal(where.mask(where.parse(text), df), cond.mask(df))


def test_search_masks_equal_condition_masks() -> None:
    rng = np.random.default_rng(2)
    n = 500
    x = rng.normal(size=n)
    x[:20] = np.nan
    df = pd.DataFrame(
        {
            "split": np.where(np.arange(n) < 250, "train", "test"),
            "site": pd.Series(rng.choice(["a", "b", None], n), dtype=object),
            "x": x,
            "when": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 300, n), "D"),
            "flag": pd.array(rng.choice([True, False], n), dtype="boolean"),
        }
    )
    kinds = {"site": "categorical", "x": "numeric", "when": "date", "flag": "bool"}
    for column, kind in kinds.items():
        conds = slices.conditions_for(df, column, kind)
        got = slices._masks(df, column, kind, conds)
        want = np.stack([c.mask(df) for c in conds], axis=1)
        np.testing.assert_array_equal(got, want, err_msg=column)


@pytest.mark.parametrize("total", [30, 1_000, 50_000, 150_000])
def test_fewer_correct_p_equals_scipy_hypergeom_cdf(total: int) -> None:
    # the search's own summation against scipy's (Boost's) hypergeometric cdf, over slices
    # from 1 image to the whole split and outcomes from all wrong to all right
    rng = np.random.default_rng(total)
    good = int(total * 0.9)
    n1 = rng.integers(1, total + 1, 3000)
    k1 = np.clip((n1 * rng.uniform(0.6, 1.05, n1.size)).round(), 0, n1).astype(int)
    k1[:50] = rng.integers(-2, 3, 50)  # at and below the support's lower end
    ref = stats.hypergeom.cdf(k1, total, good, n1)
    got = slices.fewer_correct_p(k1, n1, good, total)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-290)


def test_search_equals_the_one_with_scipys_p_values(monkeypatch: pytest.MonkeyPatch) -> None:
    # the summed p-values (fast) find, rank and report the same segments as scipy's cdf
    df, kinds = _table(12_000, 7, planted=True)
    fast = slices.weak_segments(df, kinds, split="test")

    def scipy_p(k1, n1, k_total, n_total):  # type: ignore[no-untyped-def]
        return stats.hypergeom.cdf(k1, n_total, k_total, n1)

    monkeypatch.setattr(slices, "fewer_correct_p", scipy_p)
    ref = slices.weak_segments(df, kinds, split="test")
    assert fast.tried == ref.tried > 500
    assert len(fast.segments) == len(ref.segments) > 1
    for a, b in zip(fast.segments, ref.segments, strict=True):
        assert (a.conditions, a.images, a.accuracy, a.rest_accuracy) == (
            b.conditions,
            b.images,
            b.accuracy,
            b.rest_accuracy,
        )
        assert a.p_value == pytest.approx(b.p_value, rel=1e-9, abs=1e-290)
        assert a.q_value == pytest.approx(b.q_value, rel=1e-9, abs=1e-290)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (999.7, "1,000"),  # was "1e+03"
        (1234.5, "1,234"),
        (123456.7, "123,457"),
        (12.34, "12.3"),
        (0.2134, "0.213"),
        (0.5, "0.5"),
        (-0.0625, "-0.0625"),
        (0.000012345, "0.0000123"),  # was "1.23e-05"
        (np.float32(2.5), "2.5"),
        (1500.0, "1,500"),
        (3e20, "300,000,000,000,000,000,000"),
        (np.int64(20000), "20,000"),
        (True, "true"),
        ("B", "B"),
    ],
)
def test_condition_values_read_as_numbers(value: object, shown: str) -> None:
    assert slices.Condition("x", "<", value).text() == f"x < {shown}"
    assert slices.Condition("x", "==", value).text() == f"x is {shown}"


def test_a_between_condition_writes_both_edges_as_numbers() -> None:
    assert slices.Condition("width", "between", (999.7, 12345.6)).text() == (
        "1,000 ≤ width < 12,346"
    )
