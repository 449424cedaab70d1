"""core.analysis.confusion against scikit-learn, pandas counts and hand-counted cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from core.analysis import confusion
from core.figures import confusion as confusion_fig

# A hand-counted case: 3 classes, 9 samples, row labels that are not positions.
#   true:  a a a b b b c c c
#   pred:  a b b b a b c a c
Y_TRUE = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 0, 1, 2, 0, 2])
ROWS = np.array([10, 11, 12, 20, 21, 22, 30, 31, 32])
NAMES = ["a", "b", "c"]
HAND_CM = [[1, 2, 0], [1, 2, 0], [1, 0, 2]]


def _random(seed: int, n_classes: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, n_classes, size=n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, n_classes, size=n))
    return y_true, y_pred


def test_counts_match_the_hand_count_and_sklearn() -> None:
    res = confusion.confusion_results(Y_TRUE, Y_PRED, class_names=NAMES, rows=ROWS)
    assert res.cm.tolist() == HAND_CM
    assert res.cm.tolist() == sk_confusion_matrix(Y_TRUE, Y_PRED, labels=[0, 1, 2]).tolist()


@pytest.mark.parametrize(
    ("i", "j", "expected"),
    [(0, 1, [11, 12]), (1, 0, [21]), (2, 0, [31]), (2, 2, [30, 32]), (0, 2, [])],
    ids=["a->b", "b->a", "c->a", "c->c", "a->c-empty"],
)
def test_cell_rows_are_the_hand_counted_samples(i: int, j: int, expected: list[int]) -> None:
    res = confusion.confusion_results(Y_TRUE, Y_PRED, class_names=NAMES, rows=ROWS)
    assert res.cell_rows(i, j).tolist() == expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cells_partition_the_rows_and_match_the_counts(seed: int) -> None:
    y_true, y_pred = _random(seed, 7)
    rows = np.arange(len(y_true)) * 3 + 5
    res = confusion.confusion_results(y_true, y_pred, class_names=list("abcdefg"), rows=rows)
    sk = sk_confusion_matrix(y_true, y_pred, labels=range(7))
    seen = []
    for i in range(7):
        for j in range(7):
            cell = res.cell_rows(i, j)
            assert len(cell) == sk[i, j]
            # each row label leads back to a sample with exactly these labels
            pos = (cell - 5) // 3
            assert (y_true[pos] == i).all() and (y_pred[pos] == j).all()
            seen.extend(cell.tolist())
    assert sorted(seen) == rows.tolist()


def test_split_results_keep_the_predictions_index() -> None:
    df = pd.DataFrame(
        {
            "split": ["train", "test", "test", "test", "train"],
            "y_true": [0, 0, 1, 1, 1],
            "y_pred": [1, 1, 1, 0, 0],
        }
    )
    res = confusion.split_results(df, "test", ["x", "y"])
    assert res.cm.tolist() == [[0, 1], [1, 1]]
    assert res.cell_rows(0, 1).tolist() == [1]
    assert res.cell_rows(1, 0).tolist() == [3]


def test_cell_rows_rejects_an_index_outside_the_classes() -> None:
    res = confusion.confusion_results(Y_TRUE, Y_PRED, class_names=NAMES)
    with pytest.raises(ValueError, match=r"pred_idx must be a class index in \[0, 3\), got 3"):
        res.cell_rows(0, 3)


def test_rows_must_label_every_sample() -> None:
    with pytest.raises(ValueError, match="rows must label each of the 9 samples"):
        confusion.confusion_results(Y_TRUE, Y_PRED, class_names=NAMES, rows=[1, 2])


GRID = [
    pytest.param(seed, k, norm, id=f"k{k}-{norm}-seed{seed}")
    for seed in (0, 1)
    for k in (2, 5, 12)
    for norm in ("true", "pred", None)
]


@pytest.mark.parametrize(("seed", "k", "norm"), GRID)
def test_normalize_matches_sklearn(seed: int, k: int, norm: str | None) -> None:
    y_true, y_pred = _random(seed, k)
    y_true[y_true == 0] = 1  # class 0 never true: an empty row (0/0 -> 0, as sklearn)
    y_pred[y_pred == k - 1] = 0  # last class never predicted: an empty column
    cm = sk_confusion_matrix(y_true, y_pred, labels=range(k))
    expected = sk_confusion_matrix(y_true, y_pred, labels=range(k), normalize=norm)
    np.testing.assert_allclose(confusion.normalize_cm(cm, norm), expected, atol=1e-12)


def test_normalized_rows_and_columns_sum_to_one() -> None:
    cm = np.array(HAND_CM)
    np.testing.assert_allclose(confusion.normalize_cm(cm, "true").sum(axis=1), 1.0)
    np.testing.assert_allclose(confusion.normalize_cm(cm, "pred").sum(axis=0), 1.0)
    assert confusion.normalize_cm(cm, "true")[0].tolist() == pytest.approx([1 / 3, 2 / 3, 0])
    assert confusion.normalize_cm(cm, "pred")[:, 0].tolist() == pytest.approx([1 / 3] * 3)


def test_normalize_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="normalize must be None, 'true' or 'pred', got 'all'"):
        confusion.normalize_cm(np.eye(2), "all")


def test_every_view_names_a_normalisation() -> None:
    assert [v[1] for v in confusion.VIEWS.values()] == [None, "true", "pred"]


def test_most_confused_pairs_on_a_hand_case() -> None:
    cm = [
        [5, 3, 0, 1],  # a: 9 true
        [3, 7, 0, 0],  # b: 10 true
        [0, 4, 2, 0],  # c: 6 true
        [0, 0, 1, 0],  # d: 1 true
    ]
    pairs = confusion.most_confused_pairs(cm, list("abcd"))
    assert list(pairs.columns) == confusion.PAIR_COLUMNS
    # 4 first; the two 3s keep class order (a->b before b->a); then the two 1s likewise
    assert list(zip(pairs["true"], pairs["predicted"], pairs["count"], strict=True)) == [
        ("c", "b", 4),
        ("a", "b", 3),
        ("b", "a", 3),
        ("a", "d", 1),
        ("d", "c", 1),
    ]
    assert pairs["share_of_true"].tolist() == pytest.approx([4 / 6, 3 / 9, 3 / 10, 1 / 9, 1.0])
    assert pairs[["true_idx", "pred_idx"]].values.tolist() == [
        [2, 1],
        [0, 1],
        [1, 0],
        [0, 3],
        [3, 2],
    ]
    assert confusion.most_confused_pairs(cm, list("abcd"), top=2)["count"].tolist() == [4, 3]


def test_no_mistakes_gives_no_pairs_and_every_class_in_focus() -> None:
    cm = np.diag([3, 0, 2])
    assert confusion.most_confused_pairs(cm, NAMES).empty
    assert confusion.focus_classes(cm) == [0, 1, 2]


def test_pairs_need_one_name_per_class() -> None:
    with pytest.raises(ValueError, match=r"cm is \(3, 3\) but there are 2 class names"):
        confusion.most_confused_pairs(np.eye(3), ["a", "b"])


def test_focus_classes_are_the_classes_of_the_top_pairs() -> None:
    cm = [
        [5, 3, 0, 1],
        [3, 7, 0, 0],
        [0, 4, 2, 0],
        [0, 0, 1, 0],
    ]
    assert confusion.focus_classes(cm, n_pairs=1) == [1, 2]
    assert confusion.focus_classes(cm, n_pairs=3) == [0, 1, 2]


def test_pairs_on_a_hundred_classes_match_a_pandas_count() -> None:
    rng = np.random.default_rng(7)
    k, n = 100, 20_000
    y_true = rng.integers(0, k, size=n)
    # A few strong confusions on top of noise, so the ranking is not all ties.
    y_pred = np.where(rng.random(n) < 0.8, y_true, rng.integers(0, k, size=n))
    for t, p, extra in [(3, 77, 40), (50, 51, 30), (99, 0, 20)]:
        where = np.flatnonzero(y_true == t)[:extra]
        y_pred[where] = p
    names = [f"class_{i:03d}" for i in range(k)]
    res = confusion.confusion_results(y_true, y_pred, class_names=names)
    pairs = confusion.most_confused_pairs(res.cm, names)

    df = pd.DataFrame({"t": y_true, "p": y_pred})
    wrong = df[df.t != df.p]
    ref = wrong.groupby(["t", "p"]).size().rename("count").reset_index()
    ref = ref.sort_values(["count", "t", "p"], ascending=[False, True, True], kind="stable")
    assert pairs["count"].tolist() == ref["count"].tolist()
    assert pairs["true_idx"].tolist() == ref["t"].tolist()
    assert pairs["pred_idx"].tolist() == ref["p"].tolist()
    assert pairs.iloc[0][["true", "predicted"]].tolist() == ["class_003", "class_077"]
    support = df.groupby("t").size()
    np.testing.assert_allclose(pairs["share_of_true"], ref["count"] / support[ref["t"]].values)
    focus = confusion.focus_classes(res.cm, n_pairs=3)
    assert focus == [0, 3, 50, 51, 77, 99]
    # Each pair's images are exactly its samples.
    top = pairs.iloc[0]
    assert len(res.cell_rows(top["true_idx"], top["pred_idx"])) == top["count"]


def test_cell_text_blanks_empty_cells_and_writes_counts_or_percentages() -> None:
    cm = np.array([[997, 3, 0], [0, 1, 0], [1, 1, 2]])
    assert confusion.cell_text(cm).tolist() == [["997", "3", ""], ["", "1", ""], ["1", "1", "2"]]
    assert confusion.cell_text(cm, "true").tolist() == [
        [">99%", "<1%", ""],
        ["", "100%", ""],
        ["25%", "25%", "50%"],
    ]


def test_cell_heading_counts_the_images_in_words() -> None:
    assert confusion.cell_heading(1, "cat", "dog") == "1 image: true 'cat' predicted 'dog'"
    assert confusion.cell_heading(0, "a", "a") == "0 images: true 'a' predicted 'a'"
    assert confusion.cell_heading(1200, "b", "c") == "1,200 images: true 'b' predicted 'c'"


def test_selected_cell_maps_overlay_points_to_cells() -> None:
    shown = [2, 5, 7]
    assert confusion_fig.overlay_cells(shown)[4] == (5, 5)
    assert confusion_fig.selected_cell([{"point_index": 5, "curve_number": 1}], shown) == (5, 7)
    assert confusion_fig.selected_cell([{"point_index": 5, "curve_number": 0}], shown) is None
    assert confusion_fig.selected_cell([], shown) is None
    assert confusion_fig.selected_cell([{"point_index": 99, "curve_number": 1}], shown) is None


@pytest.mark.parametrize("norm", [None, "true", "pred"])
def test_heatmap_shows_the_matrix_and_clickable_cells(norm: str | None) -> None:
    y_true, y_pred = _random(3, 5)
    cm = sk_confusion_matrix(y_true, y_pred, labels=range(5))
    names = list("vwxyz")
    drawn = confusion_fig.matrix_figure(cm, names, normalize=norm, highlight=(1, 3))
    assert not drawn.image and drawn.trace == confusion_fig.OVERLAY_TRACE
    assert drawn.cells == confusion_fig.overlay_cells(range(5))
    fig = drawn.figure
    heat, overlay = fig.data[0], fig.data[confusion_fig.OVERLAY_TRACE]
    expected = sk_confusion_matrix(y_true, y_pred, labels=range(5), normalize=norm)
    np.testing.assert_allclose(np.asarray(heat.z, dtype=float), expected, atol=1e-12)
    assert list(heat.x) == names and list(heat.y) == names
    assert fig.layout.xaxis.title.text == "Predicted class"
    assert fig.layout.yaxis.title.text == "True class"
    assert heat.colorscale[0][1] != heat.colorscale[-1][1]  # a real scale (Blues)
    assert len(overlay.x) == 25
    rows, cols = (
        sk_confusion_matrix(y_true, y_pred, labels=range(5), normalize="true"),
        (sk_confusion_matrix(y_true, y_pred, labels=range(5), normalize="pred")),
    )
    for p, (i, j) in enumerate(confusion_fig.overlay_cells(range(5))):
        true_name, pred_name, count, row_share, col_share, noun = overlay.customdata[p]
        assert noun == ("image" if count == 1 else "images")
        assert (overlay.y[p], overlay.x[p]) == (names[i], names[j])
        assert (true_name, pred_name, count) == (names[i], names[j], cm[i, j])
        assert row_share == pytest.approx(rows[i, j]) and col_share == pytest.approx(cols[i, j])
    # the diagonal is outlined (5 shapes), plus the highlighted cell
    diag = [s for s in fig.layout.shapes if s.x0 == s.y0]
    assert len(diag) == 5
    assert any(s.x0 == 2.5 and s.y0 == 0.5 and s.line.width == 3 for s in fig.layout.shapes)


def test_heatmap_of_a_class_subset_and_many_classes_hides_cell_text() -> None:
    y_true, y_pred = _random(4, 40, n=2000)
    cm = sk_confusion_matrix(y_true, y_pred, labels=range(40))
    names = [f"c{i}" for i in range(40)]
    full = confusion_fig.matrix_figure(cm, names).figure
    assert full.data[0].text is None
    assert [s.type for s in full.layout.shapes] == ["line"]  # one diagonal line, no boxes
    small = confusion_fig.matrix_figure(cm[:5, :5], names[:5]).figure
    assert full.layout.height > small.layout.height
    shown = [4, 9, 30]
    sub = confusion_fig.matrix_figure(cm, names, normalize="true", classes=shown).figure
    assert list(sub.data[0].x) == ["c4", "c9", "c30"]
    row_share = sk_confusion_matrix(y_true, y_pred, labels=range(40), normalize="true")
    # shares stay relative to the whole true class, not to the shown subset
    np.testing.assert_allclose(np.asarray(sub.data[0].z), row_share[np.ix_(shown, shown)])
    assert sub.data[0].text is not None
    points = [{"point_index": 7, "curve_number": 1}]
    assert confusion_fig.selected_cell(points, shown) == (30, 9)
    with pytest.raises(ValueError, match="classes is empty"):
        confusion_fig.matrix_figure(cm, names, classes=[])


def test_word_class_names_stay_readable_on_the_axes() -> None:
    names = ["airplane", "golden_retriever", "Staffordshire_bullterrier_mix", "cat"]
    cm = np.array([[5, 1, 0, 0], [0, 4, 2, 0], [1, 0, 6, 0], [0, 0, 0, 3]])
    fig = confusion_fig.matrix_figure(cm, names).figure
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        assert axis.automargin is True  # labels push the margin instead of being clipped
        assert list(axis.tickvals) == names  # the categories stay the full names...
        shown = list(axis.ticktext)  # ...the ticks cut the long one, marked with "…"
        assert shown[:2] == names[:2] and shown[3] == "cat"
        assert shown[2] == names[2][: confusion_fig.TICK_CHARS - 1] + "…"
        assert all(len(t) <= confusion_fig.TICK_CHARS for t in shown)
    # few classes: plotly tilts the labels when they would overlap (no fixed 0° angle)
    assert fig.layout.xaxis.tickangle is None
    # the hover of a cell names both classes in full
    overlay = fig.data[confusion_fig.OVERLAY_TRACE]
    p = confusion_fig.overlay_cells(range(4)).index((2, 1))
    assert list(overlay.customdata[p][:2]) == [names[2], names[1]]
    many = confusion_fig.matrix_figure(np.eye(13, dtype=int), [f"class_{i}" for i in range(13)])
    assert many.figure.layout.xaxis.tickangle == -45


def test_tick_text_cuts_only_long_names() -> None:
    assert confusion_fig.tick_text("cat") == "cat"
    assert confusion_fig.tick_text("x" * confusion_fig.TICK_CHARS) == "x" * confusion_fig.TICK_CHARS
    assert confusion_fig.tick_text("abcdefgh", max_chars=5) == "abcd…"


def test_opening_cell_and_pairs_of_class_on_a_hand_counted_matrix() -> None:
    # true a: 2 taken for b; true b: 3 taken for c; true c: 1 taken for a
    cm = np.array([[5, 2, 0], [0, 4, 3], [1, 0, 6]])
    pairs = confusion.most_confused_pairs(cm, ["a", "b", "c"])
    assert confusion.opening_cell(pairs) == (1, 2)  # the most frequent mistake
    assert confusion.opening_cell(pairs, 0) == (0, 1)
    assert confusion.opening_cell(pairs, 2) == (2, 0)
    assert confusion.pairs_of_class(pairs, 1)[["true", "predicted"]].values.tolist() == [
        ["b", "c"],
        ["a", "b"],
    ]
    # b is never mistaken but a is taken for b: b opens on that cell (as predicted class)
    only_pred = confusion.most_confused_pairs(np.array([[5, 2], [0, 4]]), ["a", "b"])
    assert confusion.opening_cell(only_pred, 1) == (0, 1)
    perfect = confusion.most_confused_pairs(np.eye(3, dtype=int) * 4, ["a", "b", "c"])
    assert confusion.opening_cell(perfect) == (0, 0)
    assert confusion.opening_cell(perfect, 2) == (2, 2)
    assert confusion.pairs_of_class(perfect, 2).empty


def test_image_heatmap_hover_escapes_class_names_like_the_heatmap() -> None:
    """The 100+-class image's click targets name their cell as the small heatmap does:
    markup in a class name is entity-escaped (html.escape), shown as typed, never rendered."""
    import html

    from core.figures import confusion_image

    names = ["<b>cat</b>", "a & b", "<img src=x onerror=alert(1)>"]
    cm = np.array([[3, 2, 0], [0, 4, 1], [5, 0, 2]])
    drawn = confusion_fig.matrix_figure(cm, names, image=True)  # 3 classes drawn as the image
    assert drawn.image and drawn.trace == confusion_image.TARGET_TRACE
    targets = drawn.figure.data[confusion_image.TARGET_TRACE]
    cells = confusion_image.target_cells(cm, range(3))
    assert drawn.cells == cells
    assert cells == [(2, 0), (0, 1), (1, 2)]  # off-diagonal counts 5, 2, 1 by hand
    for (i, j), data in zip(cells, targets.customdata, strict=True):
        assert list(data[:3]) == [html.escape(names[i], quote=False),
                                  html.escape(names[j], quote=False), cm[i, j]]  # fmt: skip
    small = confusion_fig.matrix_figure(cm, names).figure.data[confusion_fig.OVERLAY_TRACE]
    p = confusion_fig.overlay_cells(range(3)).index((2, 0))
    assert list(small.customdata[p][:2]) == list(targets.customdata[0][:2])
    assert "<" not in "".join(str(v) for row in targets.customdata for v in row[:2])
