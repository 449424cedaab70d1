"""An analyst's session: every page in order, in reverse and again, in one AppTest session.

Streamlit drops the key of every widget a run does not draw, so leaving a page used to lose
its selections (and Confusion matrix raised ``KeyError: cm_true`` on the way back). Here each
page is changed away from its defaults on the first pass, and every later visit, after all
the other pages ran, must find the same selections and no exception.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from core.runs import Run
from tests.app.conftest import ROOT

ORDER = [
    "overview", "confusion", "per_class", "mistakes", "overfitting", "compare", "thresholds",
    "calibration", "leakage", "suspicious", "embedding_map", "failure_clusters", "robustness",
    "runs",
]  # fmt: skip
Step = tuple[str, str, object]  # (AppTest widget kind, key, value to set)


def _cal_bin(at: AppTest) -> int:
    """Return a confidence bin other than the one the page opened on (its worst bin)."""
    box = at.selectbox(key="cal_bin")  # options are bin numbers, shown by their labels
    return next(b for b in range(15) if b != box.value and box.format_func(b) in box.options)


def _steps(runs: dict[str, Run]) -> dict[str, list[list[Step]]]:
    """Return, per page, the changes made on the first pass (each inner list is one rerun)."""
    imbalanced, overfit = runs["imbalanced"], runs["overfit"]
    return {
        "overview": [[("segmented_control", "split", "train"),
                      ("number_input", "thr_good_accuracy", 0.95)]],
        # a diagonal cell (not the most confused pair the page opens on) with >24 images
        "confusion": [[("segmented_control", "cm_view", "true"), ("selectbox", "cm_true", 3),
                       ("selectbox", "cm_pred", 3)],
                      [("number_input", "cm_gallery-page", 2)]],
        "mistakes": [[("multiselect", "mk_splits", ["test", "train"]),
                      ("multiselect", "mk_true", [8]), ("selectbox", "mk_sort", "loss")],
                     [("number_input", "mk_gallery-page", 2)]],
        "compare": [[("multiselect", "cmp_runs", [imbalanced.run_id, overfit.run_id])],
                    [("segmented_control", "cmp_metric", "precision"),
                     ("segmented_control", "cmp_flip_dir", "b")]],
        "thresholds": [[("selectbox", "th_class", 8),
                        ("segmented_control", "th_mode", "recall")],
                       [("slider", "th_target", 0.9)]],
        "calibration": [[("selectbox", "cal_bin", _cal_bin)]],
        "leakage": [[("slider", "lk_distance", 2)]],
        "suspicious": [[("segmented_control", "sl_split", "train"),
                        ("selectbox", "sl_order", "self_confidence")]],
        "embedding_map": [[("selectbox", "em_color", "predicted class"),
                           ("multiselect", "em_splits", ["test"])]],
        "failure_clusters": [[("number_input", "fc_k", 5)]],
        # nothing is computed (no click): the settings and the estimate only
        "robustness": [[("multiselect", "rb_corruptions", ["blur", "jpeg"]),
                        ("number_input", "rb_sample", 100)]],
    }  # fmt: skip


def _widget(at: AppTest, kind: str, key: str):  # noqa: ANN202
    return getattr(at, kind)(key=key)


def _visit(at: AppTest, page: str) -> None:
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, f"{page}: {at.exception}"
    assert at.title, f"{page}: no title"


def _check(at: AppTest, page: str, expected: dict[tuple[str, str], dict[str, object]]) -> None:
    """Every selection made on ``page`` (and the shared split) is what it was left at."""
    for (kind, key), value in expected.get(page, {}).items():
        assert _widget(at, kind, key).value == value, f"{page}: {key} was not restored"
    if page in ("confusion", "per_class", "thresholds", "calibration", "compare"):
        assert at.segmented_control(key="split").value == "train", f"{page}: split not restored"


def _content(at: AppTest, page: str, sliced: str) -> None:
    """What the restored selections show: the chosen cell's gallery on its second page, the
    filtered mistakes on theirs, the thresholds applied on the Overview, and on every page of
    a run the sidebar's slice filter ("n of N images")."""
    captions = [c.value for c in at.caption]
    if page != "runs":
        assert any(sliced in i.value for i in at.info), f"{page}: slice filter lost"
    if page == "confusion":
        assert any(re.search(r"images: true '3' predicted '3'", h.value) for h in at.subheader)
        assert "Page 2 of 6" in captions, captions  # 125 train images of '3', 24 a page
    if page == "mistakes":
        assert any(c.startswith("Page 2 of") for c in captions), captions
    if page == "overview":
        assert at.session_state["thresholds"]["good_accuracy"] == 0.95


@pytest.mark.slow  # some 40 page runs in one session (about 10 s); make test runs it
def test_every_page_keeps_its_selections_across_navigation(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["imbalanced"]
    steps = _steps(sample_runs)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["run"] = run.run_id
    at.run()
    assert not at.exception, at.exception
    # the slice filter, set once in the sidebar: true class 3 or 8 (keeps the cells used below)
    at.selectbox(key="slice_new_column").set_value("true class").run()
    at.multiselect(key="slice_new_values-true class").set_value(["3", "8"]).run()
    at.button(key="slice_add").click().run()
    assert not at.exception, at.exception
    df = run.predictions()
    n = int(df["y_true"].isin([run.class_names.index("3"), run.class_names.index("8")]).sum())
    sliced = f"**{n:,} of {len(df):,} images**"

    expected: dict[str, dict[tuple[str, str], object]] = {}
    for page in ORDER:  # first pass: change each page away from its defaults
        _visit(at, page)
        _check(at, page, expected)
        for rerun in steps.get(page, []):
            for kind, key, value in rerun:
                v = value(at) if isinstance(value, Callable) else value
                _widget(at, kind, key).set_value(v)
                expected.setdefault(page, {})[(kind, key)] = v
            at.run()
            assert not at.exception, f"{page}: {at.exception}"
        _check(at, page, expected)
        _content(at, page, sliced)
    for page in [*reversed(ORDER), *ORDER]:  # back through every page, and forward again
        _visit(at, page)
        _check(at, page, expected)
        _content(at, page, sliced)
