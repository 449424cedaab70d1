"""core.analysis.near_copies: the Leakage view's methods and counts, on hand-built pair tables."""

from __future__ import annotations

import inspect

import pandas as pd
import pytest

from core.analysis import near_copies
from core.images import embeddings, leakage


def _pairs(rows: list[tuple[str, str, int, int]]) -> pd.DataFrame:
    """Return a PAIR_COLUMNS table from (path, train_path, y_true, train_y_true) rows."""
    return pd.DataFrame(
        {
            "row": range(len(rows)),
            "path": [r[0] for r in rows],
            "y_true": [r[2] for r in rows],
            "y_pred": [r[2] for r in rows],
            "train_row": range(len(rows)),
            "train_path": [r[1] for r in rows],
            "train_y_true": [r[3] for r in rows],
            "distance": [0] * len(rows),
            "similarity": [1.0] * len(rows),
            "labels_differ": [r[2] != r[3] for r in rows],
        },
        columns=list(leakage.PAIR_COLUMNS),
    )


def test_summary_counts_pairs_images_and_label_conflicts_by_hand() -> None:
    # 4 pairs; b.png pairs with two train images; c.png's pair is labelled two ways
    pairs = _pairs(
        [("b.png", "t1.png", 0, 0), ("a.png", "t2.png", 1, 1),
         ("b.png", "t3.png", 0, 0), ("c.png", "t4.png", 2, 0)]
    )  # fmt: skip
    found = near_copies.summarise(pairs)
    assert (found.n_pairs, found.leaked, found.n_differ) == (4, ("a.png", "b.png", "c.png"), 1)
    assert found.count_line("test", 50, "within 4 bits") == (
        "**4** test–train pairs within 4 bits · **3** of 50 test images nearly duplicate a "
        "training image"
    )
    empty = near_copies.summarise(_pairs([]))
    assert (empty.n_pairs, empty.leaked, empty.n_differ) == (0, (), 0)
    # the sample's good run under 'scanner is D': one pair, one of 55 test images
    one = near_copies.summarise(_pairs([("d.png", "t5.png", 5, 5)]))
    assert one.count_line("test", 55, "within 4 bits") == (
        "**1** test–train pair within 4 bits · **1** of 55 test images nearly duplicates a "
        "training image"
    )


@pytest.mark.parametrize(
    ("splits", "held_out"),
    [
        (["train", "val", "test"], ["test", "val"]),
        (["train", "val"], ["val"]),
        (["test"], []),  # nothing to compare with
        (["val", "test"], []),
        (["train"], []),
    ],
)
def test_held_out_splits_need_train(splits: list[str], held_out: list[str]) -> None:
    assert near_copies.held_out_splits(splits) == held_out


def test_each_method_says_its_threshold() -> None:
    ph, emb = near_copies.METHODS[near_copies.PHASH], near_copies.METHODS[near_copies.EMBEDDINGS]
    assert (ph.key, ph.default, ph.low, ph.high) == ("lk_distance", 4, 0, 16)
    assert (emb.key, emb.default) == ("lk_similarity", 0.998)
    assert ph.low <= ph.default <= ph.high and emb.low <= emb.default <= emb.high
    assert ph.within_text(4) == "within 4 bits"
    assert emb.within_text(0.998) == "at cosine similarity ≥ 0.998"
    assert ph.none_text("val", 0) == "No val image is within 0 bits of a training image."
    assert emb.none_text("test", 0.95) == (
        "No test image has cosine similarity ≥ 0.950 with a training image."
    )
    assert ph.closeness_text(3, 61 / 64) == "Distance **3** · 95% similar"
    assert emb.closeness_text(0.0012, 0.99876) == "Cosine similarity **0.9988**"


def test_each_method_names_a_keyword_of_its_pairing_function() -> None:
    find = {"phash": leakage.leak_pairs, "embeddings": embeddings.embedding_pairs}
    for m in near_copies.METHODS.values():
        assert m.arg in inspect.signature(find[m.kind]).parameters, (m.kind, m.arg)
