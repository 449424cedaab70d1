"""The 100+ class confusion image's colour bar labels: where they sit on the log scale
(recomputed by hand) and never two so close that they print over each other."""

from __future__ import annotations

import math

import pytest

from core.figures.confusion_image import FLOOR, MIN_TICK_GAP, _ticks

ROUND = (0, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000)


def by_hand(v: float, zmax: float) -> float:
    return 0.0 if v == 0 else FLOOR + (1 - FLOOR) * math.log1p(v) / math.log1p(zmax)


def test_counts_scale_labels_apart_and_at_their_colour() -> None:
    for zmax in [*range(1, 400), 1000, 1049, 3001, 10000, 12345]:
        check(zmax)


def check(zmax: int) -> None:
    at, text = _ticks(None, float(zmax))
    values = [int(t.replace(",", "")) for t in text]
    assert values[0] == 0 and values[-1] == zmax  # the scale's ends are labelled
    assert all(v in ROUND for v in values[:-1])
    assert at == pytest.approx([by_hand(v, zmax) for v in values])
    assert all(b - a >= MIN_TICK_GAP for a, b in zip(at, at[1:], strict=False))
    # only a round value too close to the top is left out ("30" under "31"), none other
    kept = [v for v in ROUND if v < zmax]
    dropped = [v for v in kept if v not in values]
    assert dropped in ([], [kept[-1]])
    if dropped:
        assert by_hand(zmax, zmax) - by_hand(dropped[0], zmax) < MIN_TICK_GAP


def test_the_300_class_case_31_over_30() -> None:
    assert _ticks(None, 31.0)[1] == ["0", "1", "3", "10", "31"]


def test_shares_scale_unchanged() -> None:
    at, text = _ticks("true", 1.0)
    assert text == ["0%", "1%", "5%", "20%", "100%"]
    assert all(b - a >= MIN_TICK_GAP for a, b in zip(at, at[1:], strict=False))
