"""core.analysis.compare_view: the Compare page's choices and sentences, against loops,
scikit-learn and hand-counted cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from core.analysis import compare, compare_view
from core.errors import ClassLensError
from core.runs import Run

CLASSES = ["cat", "dog", "bird"]


def _run(rid: str, rows: list[tuple[str, str, int, int]], fingerprint: str = "fp") -> Run:
    """Return an in-memory Run whose predictions() are ``rows`` (split, path, y_true, y_pred)."""
    df = pd.DataFrame(rows, columns=["split", "path", "y_true", "y_pred"])
    df["confidence"], df["loss"] = 0.5, 1.0
    meta = {"dataset": {"fingerprint": fingerprint}, "checkpoint": {"name": f"{rid}.pt"}}
    return Run(rid, Path("/nonexistent"), meta, {"classes": CLASSES}, {"df": df})


def _pair() -> tuple[Run, Run]:
    """Two runs of 8 test images and 1 train image; b.png is missing from the second run."""
    rng = np.random.default_rng(1)
    paths = [f"{c}.png" for c in "acdefghi"]
    y = rng.integers(0, 3, len(paths))
    pa = np.where(rng.random(len(paths)) < 0.7, y, (y + 1) % 3)
    pb = np.where(rng.random(len(paths)) < 0.5, y, (y + 2) % 3)
    rows_a = [("test", p, int(t), int(q)) for p, t, q in zip(paths, y, pa, strict=True)]
    rows_b = [("test", p, int(t), int(q)) for p, t, q in zip(paths, y, pb, strict=True)]
    rows_a += [("test", "b.png", 0, 0), ("train", "t.png", 1, 1)]
    return _run("first", rows_a), _run("second", rows_b[::-1])


def test_compare_runs_scores_the_shared_test_images_like_scikit_learn() -> None:
    first, second = _pair()
    result = compare_view.compare_runs([first, second], split="test", n_resamples=50)
    assert result.aligned.dropped == (1, 0)  # b.png: in the first run only
    assert result.boot is not None and result.boot.n_resamples == 50
    for i, run in enumerate((first, second)):
        df = run.predictions()
        df = df[(df.split == "test") & (df.path != "b.png")]
        assert result.boot.point["accuracy"][i] == pytest.approx(
            skm.accuracy_score(df.y_true, df.y_pred)
        )
    [test] = result.tests
    assert test == compare.mcnemar(result.aligned.y_true, result.aligned.y_pred)[0]


def test_compare_runs_without_shared_images_has_no_bootstrap() -> None:
    first = _run("first", [("test", "a.png", 0, 0), ("train", "t.png", 1, 1)])
    second = _run("second", [("test", "z.png", 0, 1)])
    result = compare_view.compare_runs([first, second], split="train")
    assert (result.boot, result.tests, len(result.aligned.y_true)) == (None, [], 0)
    with pytest.raises(ClassLensError, match="different dataset"):
        compare_view.compare_runs([first, _run("x", [], fingerprint="other")], split="test")


def test_dropped_text_counts_each_run_left_out() -> None:
    assert compare_view.dropped_text((0, 0, 0), ["a", "b", "c"]) is None
    assert compare_view.dropped_text((3, 0, 1_200), ["good", "overfit", "big"]) == (
        "Left out, because some other run has no prediction for them: 3 images of good, "
        "1,200 images of big. Re-evaluate the runs on the same dataset to compare every image."
    )
    assert compare_view.dropped_text((1, 0, 0), ["good", "overfit", "big"]) == (
        "Left out, because some other run has no prediction for them: 1 image of good. "
        "Re-evaluate the runs on the same dataset to compare every image."
    )


def _finding(n_lines: int) -> compare.Finding:
    lines = tuple(f"line {i}" for i in range(n_lines))
    return compare.Finding(model=1, direction=-1, text="B is worse.", class_lines=lines)


def test_conclusion_body_lists_at_most_the_limit_and_counts_the_rest() -> None:
    assert compare_view.conclusion_body(_finding(0)) == "B is worse."
    assert compare_view.conclusion_body(_finding(2), limit=2) == (
        "B is worse.\n\nPer class, where the 95% interval excludes 0:\n- line 0\n- line 1"
    )
    body = compare_view.conclusion_body(_finding(11), limit=8)
    listed = [line for line in body.splitlines() if line.startswith("- line")]
    assert listed == [f"- line {i}" for i in range(8)]
    assert body.endswith("\n- and 3 more (see the per-class table below)")


def test_flips_pick_the_direction_and_agree_with_a_loop() -> None:
    first, second = _pair()
    result = compare_view.compare_runs([first, second], split="test", n_resamples=10)
    a = result.aligned
    ok = a.y_pred == a.y_true[None, :]
    a_only = [i for i in range(len(a.y_true)) if ok[0, i] and not ok[1, i]]
    b_only = [i for i in range(len(a.y_true)) if ok[1, i] and not ok[0, i]]
    right_a = compare_view.flips(result, baseline=0, other=1, direction="a")
    assert (right_a.positions.tolist(), right_a.right, right_a.wrong) == (a_only, 0, 1)
    right_b = compare_view.flips(result, baseline=0, other=1, direction="b")
    assert (right_b.positions.tolist(), right_b.right, right_b.wrong) == (b_only, 1, 0)
    assert (
        (right_a.n_a_only, right_a.n_b_only)
        == (len(a_only), len(b_only))
        == (
            right_b.n_a_only,
            right_b.n_b_only,
        )
    )
    assert a_only and b_only, "the fixture has disagreements both ways"
    with pytest.raises(ValueError, match="direction must be 'a'"):
        compare_view.flips(result, baseline=0, other=1, direction="c")


def test_aligned_positions_find_each_row_by_path() -> None:
    first, second = _pair()  # the second run lists its images in reverse order
    result = compare_view.compare_runs([first, second], split="test", n_resamples=10)
    a = result.aligned
    df = second.predictions()
    rows = [int(df.index[df.path == p][0]) for p in ("i.png", "a.png", "e.png")]
    positions = compare_view.aligned_positions(a, 1, rows)
    first_paths = first.predictions()["path"].to_numpy()
    assert [first_paths[a.rows[0, p]] for p in positions] == ["i.png", "a.png", "e.png"]
