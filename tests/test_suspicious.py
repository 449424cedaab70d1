"""core.analysis.suspicious against a hand-worked case and a plain-loop reimplementation of the
rule."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from core.analysis import suspicious

NAMES = ["a", "b", "c"]


def _frame(y_true, splits=None) -> pd.DataFrame:
    n = len(y_true)
    return pd.DataFrame(
        {
            "split": splits or ["test"] * n,
            "path": [f"img{i}.png" for i in range(n)],
            "y_true": np.asarray(y_true, np.int32),
        }
    )


# Hand-worked. Thresholds: a = (0.8 + 0.7 + 0.1) / 3, b = (0.9 + 0.6 + 0.2) / 3, c = 0.5 / 1.
HAND_PROBS = np.array(
    [
        [0.8, 0.1, 0.1],  # given a; a confident                  -> fine
        [0.7, 0.2, 0.1],  # given a; a confident                  -> fine
        [0.1, 0.85, 0.05],  # given a; only b 0.85 >= 0.567        -> suspicious, margin 0.75
        [0.05, 0.9, 0.05],  # given b; b confident                -> fine
        [0.3, 0.6, 0.1],  # given b; b 0.6 >= 0.567                -> fine
        [0.5, 0.0, 0.5],  # given c; a 0.5 < 0.533, c 0.5 >= 0.5   -> fine
        [0.6, 0.2, 0.2],  # given b; only a 0.6 >= 0.533           -> suspicious, margin 0.4
    ]
)
HAND_Y = [0, 0, 0, 1, 1, 2, 1]


def test_hand_worked_thresholds_and_list() -> None:
    t = suspicious.class_thresholds(HAND_PROBS, HAND_Y)
    np.testing.assert_allclose(t, [1.6 / 3, 1.7 / 3, 0.5])
    np.testing.assert_array_equal(
        suspicious.suggested_labels(HAND_PROBS, HAND_Y), [0, 0, 1, 1, 1, 2, 0]
    )
    got = suspicious.suspicious_labels(_frame(HAND_Y), HAND_PROBS, class_names=NAMES)
    assert list(got.columns) == list(suspicious.COLUMNS)
    assert got["row"].tolist() == [2, 6]  # margins 0.75 then 0.4
    assert got["given"].tolist() == ["a", "b"]
    assert got["suggested"].tolist() == ["b", "a"]
    np.testing.assert_allclose(got["margin"], [0.75, 0.4])
    np.testing.assert_allclose(got["self_confidence"], [0.1, 0.2])
    by_self = suspicious.suspicious_labels(
        _frame(HAND_Y), HAND_PROBS, class_names=NAMES, order="self_confidence"
    )
    assert by_self["row"].tolist() == [2, 6]  # 0.1 then 0.2


def test_class_without_labels_is_never_suggested() -> None:
    probs = np.array([[0.1, 0.9], [0.2, 0.8]])
    assert suspicious.class_thresholds(probs, [0, 0])[1] == math.inf
    assert suspicious.suggested_labels(probs, [0, 0]).tolist() == [-1, 0]  # a: t = 0.15


def test_empty_input() -> None:
    got = suspicious.suspicious_labels(_frame([]), np.zeros((0, 3)), class_names=NAMES)
    assert got.empty and list(got.columns) == list(suspicious.COLUMNS)


def _loop_reference(df: pd.DataFrame, probs: np.ndarray, splits) -> list[tuple[int, int, float]]:
    """Return [(row, suggested, margin)] by the module docstring's rule, one row at a time."""
    rows = [i for i in range(len(df)) if not splits or df["split"][i] in splits]
    k = probs.shape[1]
    thresholds = []
    for c in range(k):
        own = [float(probs[i][c]) for i in rows if df["y_true"][i] == c]
        thresholds.append(sum(own) / len(own) if own else math.inf)
    found = []
    for i in rows:
        best = None
        for j in range(k):
            if probs[i][j] >= thresholds[j] and (best is None or probs[i][j] > probs[i][best]):
                best = j
        given = int(df["y_true"][i])
        if best is not None and best != given:
            found.append((i, best, float(probs[i][best]) - float(probs[i][given])))
    return sorted(found, key=lambda r: (-r[2], r[0]))


@pytest.mark.parametrize("splits", [None, ["test"], ["train", "val"]], ids=str)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_loop_reference(seed: int, splits) -> None:
    rng = np.random.default_rng(seed)
    n, k = 300, 5
    seen = rng.integers(0, k, n)  # what the image shows; 15% of given labels are wrong
    y = np.where(rng.random(n) < 0.15, rng.integers(0, k, n), seen)
    logits = rng.normal(size=(n, k)) + 2.5 * np.eye(k)[seen]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probs = probs.astype(np.float32).astype(np.float64)
    df = _frame(y, list(rng.choice(["train", "val", "test"], n)))
    got = suspicious.suspicious_labels(df, probs, class_names="vwxyz", splits=splits)
    expected = _loop_reference(df, probs, splits)
    assert len(expected) > 0
    assert got["row"].tolist() == [r for r, _, _ in expected]
    assert got["y_suggested"].tolist() == [s for _, s, _ in expected]
    np.testing.assert_allclose(got["margin"], [m for _, _, m in expected])
    if splits:
        assert set(got["split"]) <= set(splits)


def test_csv_round_trips() -> None:
    got = suspicious.suspicious_labels(_frame(HAND_Y), HAND_PROBS, class_names=NAMES)
    back = pd.read_csv(io.BytesIO(suspicious.to_csv(got)))
    pd.testing.assert_frame_equal(back, got, check_dtype=False)


@pytest.mark.parametrize(
    ("probs", "y", "match"),
    [
        pytest.param(np.zeros(3), [0, 1, 2], "probs must be", id="1d"),
        pytest.param(np.zeros((3, 2)), [0, 1], "one label per", id="length"),
        pytest.param(np.zeros((2, 2)), [0, 2], "labels must lie", id="range"),
    ],
)
def test_bad_input_says_what_to_pass(probs, y, match) -> None:
    with pytest.raises(ValueError, match=match):
        suspicious.class_thresholds(probs, y)


def _table(suggested: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"suggested_confidence": suggested})


@pytest.mark.parametrize(
    ("probs", "n_confident"),
    [([0.19, 0.17, 0.185], 0), ([0.86], 1), ([0.7, 0.5, 0.3], 2), ([0.499999], 0)],
    ids=["all-weak", "one-sure", "some", "just-below"],
)
def test_confidently_only_above_the_stated_probability(
    probs: list[float], n_confident: int
) -> None:
    text = suspicious.dispute_sentence(_table(probs))
    sure = sum(p >= suspicious.CONFIDENT_PROB for p in probs)  # counted here, by hand
    assert sure == n_confident
    assert f"{suspicious.CONFIDENT_PROB:.0%}" in text  # the rule is stated
    if sure == 0:
        assert "does not dispute" in text and "**confident" not in text
        weak = [p for p in probs if p < suspicious.CONFIDENT_PROB]
        assert f"{min(weak):.0%}" in text and f"{max(weak):.0%}" in text
    elif sure == len(probs):
        assert "**confidently**" in text and "weak" not in text
    else:
        assert text.startswith(f"**{sure}** of {len(probs)} are **confident** disputes")
        assert f"for the other {len(probs) - sure}" in text


def test_no_sentence_without_suspicious_labels() -> None:
    assert suspicious.dispute_sentence(_table([])) == ""
