"""A 300-class synthetic run through AppTest: the Confusion page draws one image with a class
search beside the pairs, the Per-class page searches, sorts and pages its table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score

from bench import synthetic
from core.runs import Run
from tests.app.conftest import Visitor, open_page

N_CLASSES = 300


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scale") / "runs"
    synthetic.write_run(root, n_test=2500, n_classes=N_CLASSES, n_train=300)
    return root


@pytest.fixture
def big_run(store: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    """Return the synthetic run, its store the dashboard's for this test only."""
    import core.engine.sample
    from ui.state import list_runs

    monkeypatch.setenv("CLASSLENS_RUNS_DIR", str(store))
    monkeypatch.setattr(core.engine.sample, "ensure_sample_runs", lambda *a, **k: {})
    list_runs.clear()
    yield synthetic.write_run(store, n_test=2500, n_classes=N_CLASSES, n_train=300)
    list_runs.clear()  # the next test must not see this store


def _test_split(run: Run) -> tuple[np.ndarray, np.ndarray]:
    df = run.predictions()
    test = df[df["split"] == "test"]
    return test["y_true"].to_numpy(), test["y_pred"].to_numpy()


def test_confusion_page_draws_an_image_and_searches_a_class(big_run: Run) -> None:
    pages = Visitor(big_run)
    pages.visit("overview")  # the Overview opens on a 300-class run without an exception
    at = pages.visit("confusion")
    names = big_run.class_names
    cm = confusion_matrix(*_test_split(big_run), labels=range(N_CLASSES))
    chart = at.get("plotly_chart")[0].proto
    spec = json.loads(chart.spec)
    assert spec["data"][0]["type"] == "image"
    assert spec["data"][0]["source"].startswith("data:image/png;base64,")
    assert len(chart.SerializeToString()) < 500_000  # not a 90,000-cell heatmap
    pairs = at.dataframe[0].value
    off = cm - np.diag(np.diag(cm))
    assert pairs["count"].iloc[0] == off.max()
    assert len(pairs) == min(300, int((off > 0).sum()))
    find = at.selectbox(key=f"cm_find-{big_run.run_id}")
    c = int(np.argmax(off.sum(axis=1)))  # the class with most mistakes
    find.set_value(c).run()
    assert not at.exception, at.exception
    pairs = at.dataframe[0].value
    assert ((pairs["true"] == names[c]) | (pairs["predicted"] == names[c])).all()
    assert len(pairs) == int((off[c] > 0).sum() + (off[:, c] > 0).sum())
    j = int(np.argmax(off[c]))  # its most frequent mistake is opened: the path to the images
    heads = [h.value for h in at.subheader if " images: true '" in h.value]
    assert heads == [f"{cm[c, j]} images: true '{names[c]}' predicted '{names[j]}'"]


def test_per_class_page_searches_sorts_and_pages(big_run: Run) -> None:
    at = open_page("per_class", big_run)
    y_true, y_pred = _test_split(big_run)
    f1 = f1_score(y_true, y_pred, labels=range(N_CLASSES), average=None, zero_division=0)
    table = at.dataframe[0].value
    assert len(table) == 50
    worst = np.argsort(f1, kind="stable")[:50]
    assert table["class"].tolist() == [big_run.class_names[i] for i in worst]
    np.testing.assert_allclose(table["f1"], f1[worst])
    at.number_input(key="pc_page").set_value(2).run()
    table = at.dataframe[0].value
    assert table["class"].tolist() == [
        big_run.class_names[i] for i in np.argsort(f1, kind="stable")[50:100]
    ]
    at.text_input(key="pc_find").input("HUSKY").run()
    assert not at.exception, at.exception
    assert at.number_input(key="pc_page").value == 1  # a new search starts on page 1
    table = at.dataframe[0].value
    husky = [n for n in big_run.class_names if "husky" in n]
    assert sorted(table["class"]) == husky


def test_bench_dashboard_times_a_page_and_counts_its_bytes(
    big_run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import app_test

    from bench import dashboard

    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", app_test.MemoryMediaFileStorage)
    r = dashboard.time_pages(big_run.run_id, pages=("confusion",), repeats=1)["confusion"]
    at = open_page("confusion", big_run)
    chart = at.get("plotly_chart")[0].proto
    assert r["rerun"] > 0 and r["largest"] >= len(chart.SerializeToString()) > 10_000
    assert r["bytes"] >= r["elements"] > r["largest"]
