"""What the Confusion page lists and downloads: pairs without or with a class search, and the
matrix and pairs as tables, against scikit-learn and a hand-counted matrix."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from core.analysis import confusion, exports

# true a: 2 taken for b; true b: 3 taken for c, 1 for a; true c: 1 taken for a
HAND_CM = np.array([[5, 2, 0], [1, 4, 3], [1, 0, 6]])
NAMES = ["a", "b", "c"]


def test_listed_pairs_cut_at_the_limit_or_keep_every_pair_of_the_searched_class() -> None:
    pairs = confusion.most_confused_pairs(HAND_CM, NAMES)
    assert len(pairs) == 4  # b->c 3, a->b 2, b->a 1, c->a 1
    top, more = confusion.listed_pairs(pairs, None, limit=2)
    assert top[["true", "predicted"]].values.tolist() == [["b", "c"], ["a", "b"]]
    assert more == 2
    every, more = confusion.listed_pairs(pairs, None, limit=300)
    assert (len(every), more) == (4, 0)
    of_a, more = confusion.listed_pairs(pairs, 0, limit=1)  # the search ignores the limit
    assert of_a[["true", "predicted"]].values.tolist() == [["a", "b"], ["b", "a"], ["c", "a"]]
    assert more == 0


def test_matrix_table_is_sklearns_matrix_with_class_names() -> None:
    rng = np.random.default_rng(4)
    y_true = rng.integers(0, 4, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 4, 300))
    names = ["cat", "dog", "=cmd", "bird"]
    results = confusion.confusion_results(y_true, y_pred, class_names=names)
    table = exports.matrix_table(results.cm, names)
    assert table.columns.tolist() == ["true", *names]
    assert table["true"].tolist() == names
    expected = sk_confusion_matrix(y_true, y_pred, labels=range(4))
    np.testing.assert_array_equal(table[names].to_numpy(), expected)
    back = pd.read_csv(io.BytesIO(exports.csv_bytes(table)))
    assert back.columns.tolist()[3] == "'=cmd"  # one CSV writer: formulas neutralised
    np.testing.assert_array_equal(back.iloc[:, 1:].to_numpy(), expected)


def test_pairs_table_keeps_names_and_counts() -> None:
    table = exports.pairs_table(confusion.most_confused_pairs(HAND_CM, NAMES))
    assert table.columns.tolist() == ["true", "predicted", "count", "share_of_true"]
    assert table.values.tolist() == [
        ["b", "c", 3, 3 / 8],
        ["a", "b", 2, 2 / 7],
        ["b", "a", 1, 1 / 8],
        ["c", "a", 1, 1 / 7],
    ]
