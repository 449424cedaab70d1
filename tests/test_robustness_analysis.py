"""Robustness analysis (core.analysis.robustness): a hand-counted case of six images under
two corruptions (accuracy, the relative corruption error, class drops, first flips), and
random cases against scikit-learn's accuracy and recall."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, recall_score

from core.analysis import robustness as rb

NAMES = ["zero", "one", "two"]


def _preds(split: str, paths: list[str], y_true, y_pred, conf=None) -> pd.DataFrame:
    n = len(paths)
    return pd.DataFrame(
        {
            "split": split,
            "path": paths,
            "y_true": np.asarray(y_true, np.int64),
            "y_pred": np.asarray(y_pred, np.int64),
            "confidence": np.full(n, 0.5) if conf is None else np.asarray(conf, float),
            "loss": 0.0,
        }
    )


PATHS = [f"p{i}.png" for i in range(6)]
Y = [0, 0, 1, 1, 2, 2]


def _case() -> tuple[pd.DataFrame, dict]:
    """Clean: 5 of 6 right (p3 wrong). blur 1: p1 flips (4/6); blur 2: p0, p1, p5 wrong
    (2/6); noise 1: as clean (5/6). A train row reuses the path p0 (other split)."""
    clean = pd.concat(
        [
            _preds("train", ["p0.png"], [2], [2]),
            _preds("test", PATHS, Y, [0, 0, 1, 0, 2, 2], [0.9, 0.8, 0.7, 0.6, 0.5, 0.95]),
        ],
        ignore_index=True,
    )
    derived = {
        ("blur", 1): _preds("test", PATHS, Y, [0, 1, 1, 0, 2, 2]),
        # rows in another order than the clean run: matched by path
        ("blur", 2): _preds("test", PATHS[::-1], Y[::-1], [0, 2, 0, 1, 1, 1]),
        ("noise", 1): _preds("test", PATHS, Y, [0, 0, 1, 0, 2, 2]),
    }
    return clean, derived


def test_hand_counted_table_score_drops_and_flips() -> None:
    clean, derived = _case()
    frame = rb.outcomes(clean, derived, split="test")
    assert len(frame) == 18
    t = rb.severity_table(frame)
    assert t[["corruption", "severity", "n"]].values.tolist() == [
        ["blur", 1, 6], ["blur", 2, 6], ["noise", 1, 6]
    ]  # fmt: skip
    assert t["accuracy"].tolist() == pytest.approx([4 / 6, 2 / 6, 5 / 6])
    assert t["error"].tolist() == pytest.approx([2 / 6, 4 / 6, 1 / 6])
    assert t["clean_accuracy"].tolist() == pytest.approx([5 / 6] * 3)

    # errors: clean 1/6; blur 2/6, 4/6 -> increases 1/6, 3/6 -> RCE 1/3; noise 0
    rce = rb.relative_corruption_error(frame)
    assert rce["corruption"].tolist() == ["blur", "noise"]
    assert rce["rce"].tolist() == pytest.approx([1 / 3, 0.0])
    assert rce["severities"].tolist() == [2, 1]
    assert rce["worst"].tolist() == [2, 1]
    assert rce["worst_accuracy"].tolist() == pytest.approx([2 / 6, 5 / 6])
    assert rb.mean_relative_corruption_error(frame) == pytest.approx(1 / 6)

    # class zero: clean 1.0; blur1 .5, blur2 0, noise 1 -> .5. one: .5 everywhere. two: clean
    # 1.0; 1, .5, 1 -> 5/6
    drops = rb.class_drops(frame, NAMES)
    assert drops["class"].tolist() == ["zero", "two", "one"]
    assert drops["support"].tolist() == [2, 2, 2]
    assert drops["clean_recall"].tolist() == pytest.approx([1.0, 1.0, 0.5])
    assert drops["corrupted_recall"].tolist() == pytest.approx([0.5, 5 / 6, 0.5])
    assert drops["drop"].tolist() == pytest.approx([0.5, 1 / 6, 0.0])
    assert drops["worst_corruption"].tolist() == ["blur", "blur", "blur"]
    assert drops["worst_severity"].tolist() == [2, 2, 1]
    assert drops["worst_recall"].tolist() == pytest.approx([0.0, 0.5, 0.5])
    only_noise = rb.class_drops(frame, NAMES, corruption="noise")
    assert only_noise["drop"].tolist() == pytest.approx([0.0, 0.0, 0.0])

    # blur: p1 changes at 1; p0 and p5 at 2 (p5's clean confidence .95 first); p3 never
    flips = rb.first_flips(frame, "blur")
    assert flips["path"].tolist() == ["p1.png", "p5.png", "p0.png"]
    assert flips["severity"].tolist() == [1, 2, 2]
    assert flips["y_pred"].tolist() == [1, 0, 1]
    assert flips["clean_correct"].tolist() == [True, True, True]
    # row: the image's row in its derived run (blur 2's rows are reversed)
    assert flips["row"].tolist() == [1, 0, 5]
    assert rb.first_flips(frame, "noise").empty
    counts = rb.flip_counts(frame)
    assert counts.values.tolist() == [["blur", 1, 6, 1], ["blur", 2, 6, 3], ["noise", 1, 6, 0]]


def test_severity_zero_is_left_out_of_score_and_flips() -> None:
    clean, derived = _case()
    derived[("blur", 0)] = _preds("test", PATHS, Y, [0, 0, 1, 0, 2, 2])
    frame = rb.outcomes(clean, derived, split="test")
    assert rb.severity_table(frame)["severity"].tolist() == [0, 1, 2, 1]
    assert rb.relative_corruption_error(frame)["rce"].tolist() == pytest.approx([1 / 3, 0.0])
    assert rb.first_flips(frame, "blur")["severity"].min() == 1


def test_a_worse_clean_row_makes_a_negative_increase() -> None:
    """A corruption that fixes the clean mistake: error below clean, RCE negative."""
    clean, derived = _case()
    frame = rb.outcomes(clean, {("contrast", 1): _preds("test", PATHS, Y, Y)}, split="test")
    assert rb.relative_corruption_error(frame)["rce"].tolist() == pytest.approx([-1 / 6])
    flips = rb.first_flips(frame, "contrast")
    assert flips["path"].tolist() == ["p3.png"] and not flips["clean_correct"].iloc[0]


def test_random_case_equals_sklearn() -> None:
    rng = np.random.default_rng(3)
    n, k = 300, 5
    paths = [f"img{i}.png" for i in range(n)]
    y = rng.integers(0, k, n)
    clean_pred = np.where(rng.random(n) < 0.85, y, rng.integers(0, k, n))
    clean = _preds("val", paths, y, clean_pred, rng.random(n))
    sample = np.sort(rng.choice(n, 120, replace=False))
    derived, preds = {}, {}
    for sev in (1, 2, 3):
        p = np.where(rng.random(120) < 0.85 - 0.2 * sev, y[sample], rng.integers(0, k, 120))
        preds[sev] = p
        derived[("gaussian_noise", sev)] = _preds("val", [paths[i] for i in sample], y[sample], p)
    frame = rb.outcomes(clean, derived, split="val")
    t = rb.severity_table(frame)
    for sev in (1, 2, 3):
        row = t[t["severity"] == sev].iloc[0]
        assert row["accuracy"] == pytest.approx(accuracy_score(y[sample], preds[sev]))
        assert row["clean_accuracy"] == pytest.approx(accuracy_score(y[sample], clean_pred[sample]))
    drops = rb.class_drops(frame, [f"c{i}" for i in range(k)]).set_index("class")
    rec = {s: recall_score(y[sample], preds[s], labels=range(k), average=None) for s in preds}
    clean_rec = recall_score(y[sample], clean_pred[sample], labels=range(k), average=None)
    for c in range(k):
        d = drops.loc[f"c{c}"]
        assert d["support"] == int((y[sample] == c).sum())
        assert d["clean_recall"] == pytest.approx(clean_rec[c])
        assert d["corrupted_recall"] == pytest.approx(np.mean([rec[s][c] for s in rec]))
        assert d["worst_recall"] == pytest.approx(min(rec[s][c] for s in rec))
    errs = [1 - accuracy_score(y[sample], preds[s]) for s in (1, 2, 3)]
    clean_err = 1 - accuracy_score(y[sample], clean_pred[sample])
    assert rb.mean_relative_corruption_error(frame) == pytest.approx(np.mean(errs) - clean_err)


def test_derived_runs_from_elsewhere_are_refused() -> None:
    clean, _ = _case()
    stranger = _preds("test", ["other.png"], [0], [0])
    with pytest.raises(ValueError, match=r"1 image\(s\) the clean run's test split has not"):
        rb.outcomes(clean, {("blur", 1): stranger}, split="test")
    relabelled = _preds("test", PATHS, [1, 0, 1, 1, 2, 2], Y)
    with pytest.raises(ValueError, match="other true classes"):
        rb.outcomes(clean, {("blur", 1): relabelled}, split="test")


def test_no_derived_run_gives_empty_answers() -> None:
    clean, _ = _case()
    frame = rb.outcomes(clean, {}, split="test")
    assert frame.empty and list(frame.columns) == list(rb.FRAME_COLUMNS)
    assert rb.severity_table(frame).empty
    assert rb.relative_corruption_error(frame).empty
    assert np.isnan(rb.mean_relative_corruption_error(frame))
    assert rb.class_drops(frame, NAMES).empty
    assert rb.first_flips(frame, "blur").empty


def test_figure_draws_the_table_and_the_clean_line() -> None:
    from core.figures.robustness import severity_figure

    clean, derived = _case()
    frame = rb.outcomes(clean, derived, split="test")
    t = rb.severity_table(frame)
    fig = severity_figure(t, clean_accuracy=5 / 6, labels={"blur": "Blur <b>", "noise": "Noise"})
    traces = {tr.name: tr for tr in fig.data}
    assert set(traces) == {"clean 83.3%", "Blur &lt;b&gt;", "Noise"}
    assert list(traces["Blur &lt;b&gt;"].x) == [1, 2]
    assert list(traces["Blur &lt;b&gt;"].y) == pytest.approx([4 / 6, 2 / 6])
    assert list(traces["Noise"].y) == pytest.approx([5 / 6])
    assert list(traces["clean 83.3%"].y) == pytest.approx([5 / 6, 5 / 6])
    assert list(traces["clean 83.3%"].x) == [0, 2]
    # hover: n and the drop in points (blur 2: 83.3% - 33.3% = 50 points)
    assert np.asarray(traces["Blur &lt;b&gt;"].customdata, float) == pytest.approx(
        np.array([[6, 100 / 6], [6, 50.0]])
    )
    layout = fig.to_plotly_json()["layout"]
    assert layout["xaxis"]["automargin"] and layout["yaxis"]["automargin"]


def test_clean_accuracy_and_a_slice_of_the_images() -> None:
    clean, derived = _case()
    frame = rb.outcomes(clean, derived, split="test")
    assert rb.clean_accuracy(frame) == pytest.approx(5 / 6)  # each image once, not 3 times
    part = rb.within(frame, ["p0.png", "p3.png"])
    assert len(part) == 6 and rb.clean_accuracy(part) == pytest.approx(1 / 2)
    # blur 2 on p0, p3: both wrong; blur 1: p0 right
    t = rb.severity_table(part)
    assert t["accuracy"].tolist() == pytest.approx([1 / 2, 0.0, 1 / 2])
    assert np.isnan(rb.clean_accuracy(rb.within(frame, [])))
