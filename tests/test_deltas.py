"""core.analysis.deltas: Leakage's tiles against scikit-learn and a hand-counted case."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from core.analysis import deltas
from core.analysis.metrics import split_report

NAMES = ["a", "b", "c"]


def test_changes_match_scikit_learn_with_and_without_the_left_out_images() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    p = np.where(rng.random(200) < 0.7, y, rng.integers(0, 3, 200))
    kept = rng.random(200) < 0.8
    tiles = deltas.changes(
        split_report(y, p, class_names=NAMES), split_report(y[kept], p[kept], class_names=NAMES)
    )
    assert [t.label for t in tiles] == ["Images", "Accuracy", "Balanced accuracy", "Macro F1"]
    assert (tiles[0].before, tiles[0].after, tiles[0].count) == (200, kept.sum(), True)
    assert tiles[0].delta == f"{kept.sum() - 200:+,}"
    for t, score in zip(
        tiles[1:],
        [skm.accuracy_score, skm.balanced_accuracy_score,
         lambda a, b: skm.f1_score(a, b, average="macro")],
        strict=True,
    ):  # fmt: skip
        assert t.before == score(y, p) and t.after == score(y[kept], p[kept]), t.label
        assert not t.count


def test_delta_is_in_shown_points_and_none_when_the_tiles_read_the_same() -> None:
    # hand-counted: 8 of 10 right; without the 2 wrong images 8 of 8
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    p = np.array([0, 0, 1, 1, 1, 0, 2, 2, 2, 2])
    right = y == p
    acc = deltas.changes(
        split_report(y, p, class_names=NAMES),
        split_report(y[right], p[right], class_names=NAMES),
    )[1]
    assert (acc.before, acc.after, acc.delta) == (0.8, 1.0, "+20.0 pts")
    assert (acc.shown(acc.before), acc.shown(acc.after)) == ("80.0%", "100.0%")
    same = deltas.changes(
        split_report(y, p, class_names=NAMES), split_report(y, p, class_names=NAMES)
    )
    assert [t.delta for t in same] == [None] * 4
    assert same[0].shown(same[0].after) == "10"


def test_note_names_the_value_with_every_image() -> None:
    y = np.array([0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2])  # hand-counted: 12 images, 9 right
    p = np.array([0, 1, 1, 0, 2, 2, 2, 2, 2, 2, 2, 1])
    tiles = deltas.changes(
        split_report(y, p, class_names=NAMES), split_report(y[:10], p[:10], class_names=NAMES)
    )
    assert tiles[0].note("test") == "test images left after removing the leaked ones (of 12)."
    assert tiles[1].note("val") == "With every val image: 75.0%."
