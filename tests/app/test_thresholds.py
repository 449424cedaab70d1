"""The Thresholds page through AppTest: every number against scikit-learn on the run's rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from streamlit.testing.v1 import AppTest

from core.runs import Run
from tests.app import conftest

pytestmark = pytest.mark.slow


def _open(run: Run) -> AppTest:
    """Return the page in app.py; skip until app.py registers it (the lead adds the line)."""
    if "pages/thresholds.py" not in (conftest.ROOT / "app.py").read_text():
        pytest.skip("pages/thresholds.py is not registered in app.py yet")
    return conftest.open_page("thresholds", run)


def _test_split(run: Run) -> tuple[np.ndarray, np.ndarray]:
    df = run.predictions()
    keep = (df["split"] == "test").to_numpy()
    return df["y_true"].to_numpy()[keep], run.probs()[keep].astype(np.float64)


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _set(at: AppTest, *, cls: int, mode: str) -> AppTest:
    at.selectbox(key="th_class").set_value(cls)
    at.segmented_control(key="th_mode").set_value(mode)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("cls, threshold", [(0, 0.5), (8, 0.2), (3, 0.9)])
def test_metrics_at_a_threshold_equal_sklearn(
    sample_runs: dict[str, Run], cls: int, threshold: float
) -> None:
    run = sample_runs["imbalanced"]
    at = _open(run)
    assert at.title[0].value == "Thresholds"
    at.selectbox(key="th_class").set_value(cls)
    at.slider(key="th_threshold").set_value(threshold)
    at.run()
    assert not at.exception, at.exception
    y, p = _test_split(run)
    flag, truth = p[:, cls] >= threshold, y == cls
    tn, fp, fn, tp = skm.confusion_matrix(truth, flag, labels=[False, True]).ravel()
    assert _metric(at, "Flagged") == f"{tp + fp:,}"
    assert _metric(at, "False alarms") == f"{fp:,}"
    assert _metric(at, "Missed") == f"{fn:,}"
    assert _metric(at, "Recall") == f"{skm.recall_score(truth, flag):.1%}"
    if tp + fp:
        assert _metric(at, "Precision") == f"{skm.precision_score(truth, flag):.1%}"
    assert len(at.get("plotly_chart")) == 2


def test_table_equals_sklearn_ap_and_auc(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["good"]
    at = _open(run)
    table = at.dataframe[0].value
    y, p = _test_split(run)
    assert table["class"].tolist() == run.class_names
    for c in range(len(run.class_names)):
        assert table["support"][c] == (y == c).sum()
        ap = skm.average_precision_score(y == c, p[:, c])
        auc = skm.roc_auc_score(y == c, p[:, c])
        assert table["average_precision"][c] == pytest.approx(ap, abs=1e-9)
        assert table["roc_auc"][c] == pytest.approx(auc, abs=1e-9)


def test_target_recall_gives_the_brute_force_threshold(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["imbalanced"]
    cls = 8
    at = _set(_open(run), cls=cls, mode="recall")
    y, p = _test_split(run)
    n_pos = (y == cls).sum()
    best = max(
        t for t in np.unique(p[:, cls]) if ((p[:, cls] >= t) & (y == cls)).sum() / n_pos >= 0.95
    )
    flag = p[:, cls] >= best
    precision = skm.precision_score(y == cls, flag)
    name = run.class_names[cls]
    sentence = next(m.value for m in at.markdown if m.value.startswith("To find 95%"))
    assert f"P('{name}') ≥ {best:.3g};" in sentence
    assert f"{precision:.0%} of the {flag.sum():,} flagged images are really '{name}'" in sentence
    assert _metric(at, "Threshold") == f"{best:.3g}"


def test_threshold_recall_explained_against_overview(sample_runs: dict[str, Run]) -> None:
    """At 0.5 the imbalanced model's '8' has 0% recall here but 19.2% on Overview: the page
    shows both, from the same rows, and says why."""
    run = sample_runs["imbalanced"]
    c = run.class_names.index("8")
    at = _set(_open(run), cls=c, mode="threshold")
    y_true, probs = _test_split(run)
    df = run.predictions()
    y_pred = df.loc[df["split"] == "test", "y_pred"].to_numpy()
    argmax = skm.recall_score(y_true, y_pred, labels=[c], average="macro")
    overview = next(p for p in run.metrics["splits"]["test"]["per_class"] if p["class"] == "8")
    assert argmax == pytest.approx(overview["recall"])
    at_half = skm.recall_score(y_true == c, probs[:, c] >= 0.5)
    assert _metric(at, "Recall") == f"{at_half:.1%}"
    assert at_half != pytest.approx(argmax), "the sample shows the difference"
    (info,) = [i.value for i in at.info if "Overview" in i.value]
    assert f"(argmax): recall {argmax:.1%}" in info
    assert f"one class at a time: recall {at_half:.1%}" in info
    lost = int(((y_true == c) & (y_pred == c) & (probs[:, c] < 0.5)).sum())
    noun, verb = ("image", "has") if lost == 1 else ("images", "have")
    assert f"{lost} '8' {noun} the model names '8' {verb} P('8') below 0.5" in info
