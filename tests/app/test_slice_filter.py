"""The slice filter through AppTest: with ``?where=`` set, every page's numbers are those of the
run restricted to that subset, computed here independently (scikit-learn and plain loops over
the full run's predictions selected with pandas); the filter survives a page change, is set
from the sidebar into the URL, and a link naming a column the run lacks shows all images."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from streamlit.testing.v1 import AppTest

from core.analysis.diagnostics import pct, pct_brief
from core.runs import Run
from tests.app.conftest import ROOT, open_page
from tests.app.test_calibration import _bins
from tests.app.test_confusion import _array
from ui.text import md_escape

pytestmark = pytest.mark.slow

CLASSES_3_8 = "true class~in~3,8"
UNSURE = "confidence~lt~0.9"


SCANNER_D = "scanner~is~D"
LABELS = {
    CLASSES_3_8: "true class is 3 or 8",
    UNSURE: "confidence < 0.9",
    SCANNER_D: "scanner is D",
}
METADATA = ROOT / "sample_data" / "digits" / "metadata.csv"


def _rows(run: Run, where: str) -> np.ndarray:
    """Return the full run's rows the filter selects, chosen with pandas (not core.where)."""
    df = run.predictions()
    if where == SCANNER_D:  # the sample's metadata.csv, keyed by <split>/<class>/<file>
        scanner = pd.read_csv(METADATA).set_index("path")["scanner"]
        return (df["split"] + "/" + df["path"]).map(scanner).eq("D").to_numpy()
    if where == CLASSES_3_8:
        names = run.class_names
        return df["y_true"].isin([names.index("3"), names.index("8")]).to_numpy()
    assert where == UNSURE
    return df["confidence"].to_numpy(dtype=np.float64) < 0.9


def _slice(run: Run, where: str, split: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Return (predictions, probs) of ``split``'s rows inside the slice."""
    df = run.predictions()
    rows = _rows(run, where) & (df["split"] == split).to_numpy()
    return df[rows], run.probs()[rows].astype(np.float64)


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _note(at: AppTest) -> str:
    found = [e.value for e in at.info if "of " in e.value and "images**" in e.value]
    assert len(found) == 1, [e.value for e in at.info]
    return found[0]


def _assert_placed(at: AppTest, *, caption: bool = True) -> None:
    """The slice note is placed alike on every page: right below the title and its caption."""
    kinds = []
    for node in at.main.children.values():
        if str(getattr(node.proto, "id", "")).endswith("-slice_note"):
            kinds.append("slice note")
            break
        kinds.append(node.type)
    assert kinds == ["title", *(["caption"] if caption else []), "slice note"], kinds


def _assert_note(at: AppTest, run: Run, where: str) -> None:
    n, total = int(_rows(run, where).sum()), len(run.predictions())
    assert f"**{n:,} of {total:,} images**" in _note(at)


@pytest.mark.parametrize("where", [CLASSES_3_8, UNSURE, SCANNER_D])
def test_overview_headline_is_the_slices(sample_runs: dict[str, Run], where: str) -> None:
    run = sample_runs["imbalanced"]
    at = open_page("overview", run, where=where)
    _assert_placed(at)
    _assert_note(at, run, where)
    in_slice = run.predictions()[_rows(run, where)]
    present = sorted(set(in_slice["y_true"]))  # classes without an image are absent
    for split in ("train", "test"):
        rows, _ = _slice(run, where, split)
        y, p = rows["y_true"], rows["y_pred"]
        assert _metric(at, f"Images ({split})") == f"{len(rows):,}"
        assert _metric(at, f"Accuracy ({split})") == pct(skm.accuracy_score(y, p))
        assert _metric(at, f"Balanced accuracy ({split})") == pct(skm.balanced_accuracy_score(y, p))
        macro = skm.f1_score(y, p, labels=present, average="macro", zero_division=0)
        assert _metric(at, f"Macro F1 ({split})") == pct(macro)
    # the verdict is the slice's, says so, and quotes the numbers shown beside it (test split)
    verdict = next(e.value for e in [*at.error, *at.warning, *at.success] if "**" in e.value)
    assert verdict.startswith(
        f"**On the slice '{md_escape(LABELS[where])}': not production-ready — "
    )
    assert "Not production-ready" not in verdict
    said = re.search(r"accuracy is (?:only )?(\S+%)", verdict)
    assert said is not None and said[1] == _metric(at, "Accuracy (test)"), verdict
    score = re.search(r"(recall|precision) on '(.+?)' is (\S+%)", verdict)
    assert score is not None, verdict
    c = run.class_names.index(score[2])  # y, p: the loop's last split, test
    of = skm.recall_score if score[1] == "recall" else skm.precision_score
    assert score[3] == pct_brief(of(y, p, labels=[c], average=None, zero_division=0)[0])


def test_per_class_table_is_the_slices(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["imbalanced"]
    at = open_page("per_class", run, where=CLASSES_3_8)
    _assert_placed(at, caption=False)
    _assert_note(at, run, CLASSES_3_8)
    rows, _ = _slice(run, CLASSES_3_8, "test")
    labels = list(range(len(run.class_names)))
    p, r, _f, s = skm.precision_recall_fscore_support(
        rows["y_true"], rows["y_pred"], labels=labels, zero_division=0
    )
    shown = at.dataframe[0].value.set_index("class")
    for i, name in enumerate(run.class_names):
        if s[i]:  # absent classes may be listed apart; the present ones carry the numbers
            assert shown.loc[name, "recall"] == pytest.approx(r[i], abs=1e-12)
            assert shown.loc[name, "precision"] == pytest.approx(p[i], abs=1e-12)
            assert shown.loc[name, "support"] == s[i]


def test_confusion_matrix_is_the_slices(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["imbalanced"]
    at = open_page("confusion", run, where=CLASSES_3_8)
    _assert_placed(at)
    rows, _ = _slice(run, CLASSES_3_8, "test")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    z = _array(spec["data"][0]["z"]).astype(float)
    want = skm.confusion_matrix(rows["y_true"], rows["y_pred"], labels=range(10))
    np.testing.assert_array_equal(z, want)


def test_mistakes_count_is_the_slices(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["imbalanced"]
    at = open_page("mistakes", run, where=CLASSES_3_8)
    _assert_placed(at)
    rows, _ = _slice(run, CLASSES_3_8, "test")
    wrong = int((rows["y_true"] != rows["y_pred"]).sum())
    count = re.compile(r"^\*\*([\d,]+)\*\* misclassified images match these filters$")
    found = [int(m[1].replace(",", "")) for e in at.markdown if (m := count.match(e.value))]
    assert found == [wrong]


def test_calibration_is_the_slices(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["imbalanced"]
    at = open_page("calibration", run, where=UNSURE)
    _assert_placed(at)
    rows, _ = _slice(run, UNSURE, "test")
    conf = rows["confidence"].to_numpy(dtype=np.float64)
    correct = (rows["y_true"] == rows["y_pred"]).to_numpy()
    _, ece, _ = _bins(conf, correct)  # the page's 15 bins, from a per-image loop
    assert _metric(at, "Images") == f"{len(rows):,}"
    assert _metric(at, "ECE") == f"{ece:.1%}"


def test_thresholds_are_the_slices(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["imbalanced"]
    at = open_page("thresholds", run, where=CLASSES_3_8)
    _assert_placed(at)
    cls = run.class_names.index("8")
    at.selectbox(key="th_class").set_value(cls)
    at.slider(key="th_threshold").set_value(0.3)
    at.run()
    assert not at.exception, at.exception
    rows, probs = _slice(run, CLASSES_3_8, "test")
    flag, truth = probs[:, cls] >= 0.3, rows["y_true"].to_numpy() == cls
    tn, fp, fn, tp = skm.confusion_matrix(truth, flag, labels=[False, True]).ravel()
    assert _metric(at, "Flagged") == f"{tp + fp:,}"
    assert _metric(at, "False alarms") == f"{fp:,}"
    assert _metric(at, "Missed") == f"{fn:,}"
    assert _metric(at, "Recall") == f"{skm.recall_score(truth, flag):.1%}"


def test_overfitting_is_the_slices(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["overfit"]
    at = open_page("overfitting", run, where=CLASSES_3_8)
    _assert_placed(at)
    overall = at.dataframe[0].value
    for split in ("train", "test"):
        rows, _ = _slice(run, CLASSES_3_8, split)
        want = skm.accuracy_score(rows["y_true"], rows["y_pred"])
        assert overall.loc["accuracy", split] == pytest.approx(want, abs=1e-12)


def test_compare_takes_both_runs_slices(sample_runs: dict[str, Run]) -> None:
    good, overfit = sample_runs["good"], sample_runs["overfit"]
    at = open_page("compare", good, where=CLASSES_3_8)
    _assert_placed(at)
    at.multiselect(key="cmp_runs").set_value([good.run_id, overfit.run_id]).run()
    assert not at.exception, at.exception
    overall = at.dataframe[0].value.set_index("model")
    for name, run in (("good", good), ("overfit", overfit)):
        rows, _ = _slice(run, CLASSES_3_8, "test")
        want = skm.accuracy_score(rows["y_true"], rows["y_pred"])
        assert overall.loc[name, "accuracy"] == pytest.approx(want, abs=1e-12)
    n = len(_slice(good, CLASSES_3_8, "test")[0])
    assert any(e.value.startswith(f"Compared on **{n:,}** test images") for e in at.markdown)


def test_suspicious_labels_are_the_slices(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["imbalanced"]
    at = open_page("suspicious", run, where=CLASSES_3_8)
    _assert_placed(at)
    rows, probs = _slice(run, CLASSES_3_8, "test")
    y = rows["y_true"].to_numpy()
    k = probs.shape[1]
    t = [probs[y == c, c].mean() if (y == c).any() else math.inf for c in range(k)]
    n = 0
    for i in range(len(y)):  # confident learning's rule, as tests/app/test_suspicious.py
        confident = [j for j in range(k) if probs[i, j] >= t[j]]
        if confident and max(confident, key=lambda j: (probs[i, j], -j)) != y[i]:
            n += 1
    count = re.compile(r"^\*\*([\d,]+)\*\* suspicious labels among ([\d,]+) (\w+) images$")
    found = [m for e in at.markdown if (m := count.match(e.value))]
    assert [(int(m[1].replace(",", "")), int(m[2].replace(",", ""))) for m in found] == [
        (n, len(y))
    ]


def test_leakage_counts_the_slices_images(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["good"]
    at = open_page("leakage", run, where=CLASSES_3_8)
    _assert_placed(at)
    n = len(_slice(run, CLASSES_3_8, "test")[0])
    assert _metric(at, "Images").replace(",", "").isdigit()
    assert any(f"of {n:,} test images nearly duplicate" in e.value for e in at.markdown), [
        e.value for e in at.markdown
    ]


def test_the_filter_survives_a_page_change_and_back(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["imbalanced"]
    at = open_page("overview", run, where=CLASSES_3_8)
    accuracy = _metric(at, "Accuracy (test)")
    at.switch_page("pages/per_class.py").run()
    assert not at.exception, at.exception
    _assert_note(at, run, CLASSES_3_8)
    at.switch_page("pages/overview.py").run()
    assert not at.exception, at.exception
    _assert_note(at, run, CLASSES_3_8)
    assert _metric(at, "Accuracy (test)") == accuracy
    assert at.query_params["where"] == CLASSES_3_8


def test_set_in_the_sidebar_goes_into_the_link_and_clears(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["imbalanced"]
    at = open_page("overview", run)
    assert not [e for e in at.info if "images**" in e.value]  # all images: no note
    full = _metric(at, "Images (test)")
    at.selectbox(key="slice_new_column").set_value("true class").run()
    at.multiselect(key="slice_new_values-true class").set_value(["3", "8"]).run()
    at.button(key="slice_add").click().run()
    assert not at.exception, at.exception
    assert at.query_params["where"] == CLASSES_3_8
    _assert_note(at, run, CLASSES_3_8)
    assert _metric(at, "Images (test)") == f"{len(_slice(run, CLASSES_3_8, 'test')[0]):,}"
    at.button(key="slice_clear").click().run()
    assert not at.exception, at.exception
    assert "where" not in at.query_params
    assert _metric(at, "Images (test)") == full


@pytest.mark.parametrize(
    "where, message",
    [("site~is~B", "no column 'site'"), ("junk", "Could not read the filter condition")],
    ids=["column from another run", "unreadable"],
)
def test_a_link_that_does_not_apply_shows_all_images(
    sample_runs: dict[str, Run], where: str, message: str
) -> None:
    run = sample_runs["imbalanced"]
    at = open_page("overview", run, where=where)
    assert any(message in w.value and "all images" in w.value for w in at.warning), [
        w.value for w in at.warning
    ]
    assert _metric(at, "Images (test)") == f"{run.metrics['splits']['test']['n']:,}"


def test_a_filter_no_image_meets_says_so_and_keeps_the_sidebar(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["imbalanced"]
    at = open_page("per_class", run, where="confidence~lt~0")
    assert any(
        # the filter's words are markdown-escaped (they come from the link): shown as typed
        f"No image of this run matches the filter ({md_escape('confidence < 0')})" in w.value
        for w in at.warning
    )
    assert not at.dataframe
    at.button(key="slice_clear").click().run()
    assert not at.exception, at.exception
    assert len(at.dataframe[0].value) == len(run.class_names)
