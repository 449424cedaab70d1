"""The Confusion matrix page through AppTest: every count opens exactly its images."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from streamlit.testing.v1 import AppTest

from core.analysis import metrics
from core.runs import Run, RunStore, predictions_table
from tests.app.conftest import open_page

pytestmark = pytest.mark.slow

ZOOM = "cm_gallery-zoom-"


def _title(at: AppTest) -> str:
    """Return the gallery heading ("N images: true 'a' predicted 'b'", "1 image: ...")."""
    heads = [h.value for h in at.subheader if re.search(r" images?: true '", h.value)]
    assert len(heads) == 1, [h.value for h in at.subheader]
    return heads[0]


def _shown_rows(at: AppTest) -> list[int]:
    """Return the predictions() rows of the thumbnails on screen, in order."""
    return [int(b.key.removeprefix(ZOOM)) for b in at.button if (b.key or "").startswith(ZOOM)]


def _choose(at: AppTest, true_idx: int, pred_idx: int) -> AppTest:
    at.selectbox(key="cm_true").set_value(true_idx)
    at.selectbox(key="cm_pred").set_value(pred_idx)
    at.run()
    assert not at.exception, at.exception
    return at


def _expected_rows(run: Run, split: str, true_idx: int, pred_idx: int) -> list[int]:
    """Return the cell's rows straight from the predictions, hardest (highest loss) first."""
    df = run.predictions()
    cell = df[(df.split == split) & (df.y_true == true_idx) & (df.y_pred == pred_idx)]
    return sorted(cell.index, key=lambda i: (-float(cell.at[i, "loss"]), i))


def _array(value: object) -> np.ndarray:
    """Return a plotly JSON array, plain or base64-typed ({"dtype", "bdata", "shape"})."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = [int(n) for n in str(value.get("shape", len(flat))).split(",")]
        return flat.reshape(shape)
    return np.asarray(value)


def _worst_pair(cm: list[list[int]]) -> tuple[int, int]:
    off = np.array(cm)
    np.fill_diagonal(off, -1)
    i, j = np.unravel_index(np.argmax(off), off.shape)
    return int(i), int(j)


def test_page_opens_on_the_most_confused_cell(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["good"]
    at = open_page("confusion", run)
    assert at.title[0].value == "Confusion matrix"
    cm = run.metrics["splits"]["test"]["confusion_matrix"]
    i, j = _worst_pair(cm)
    names = run.class_names
    assert cm[i][j] == 1  # the good model's worst cell is one image: the heading is singular
    assert _title(at) == f"1 image: true '{names[i]}' predicted '{names[j]}'"
    assert _shown_rows(at) == _expected_rows(run, "test", i, j)[:24]
    assert len(at.get("plotly_chart")) >= 1


@pytest.mark.parametrize("model", ["imbalanced", "overfit"])
def test_every_chosen_cell_shows_exactly_its_images(
    sample_runs: dict[str, Run], model: str
) -> None:
    run = sample_runs[model]
    at = open_page("confusion", run)
    cm = run.metrics["splits"]["test"]["confusion_matrix"]
    names = run.class_names
    cells = [_worst_pair(cm), (3, 3)]
    cells += [(i, j) for i in range(len(cm)) for j in range(len(cm)) if cm[i][j] == 0][:1]
    for i, j in cells:
        _choose(at, i, j)
        noun = "image" if cm[i][j] == 1 else "images"
        assert _title(at) == f"{cm[i][j]:,} {noun}: true '{names[i]}' predicted '{names[j]}'"
        assert _shown_rows(at) == _expected_rows(run, "test", i, j)[:24]
        if cm[i][j]:
            assert len(at.image) == min(cm[i][j], 24)
        else:
            assert any("No image falls in this cell" in m.value for m in at.info)


def test_a_large_cell_pages_through_all_its_images(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["good"]
    cm = np.array(run.metrics["splits"]["test"]["confusion_matrix"])
    biggest = int(np.argmax(np.diag(cm)))
    at = _choose(open_page("confusion", run), biggest, biggest)
    expected = _expected_rows(run, "test", biggest, biggest)
    assert len(expected) > 24, "the sample's largest cell should fill more than one page"
    seen = _shown_rows(at)
    at.number_input(key="cm_gallery-page").set_value(2).run()
    assert not at.exception
    seen += _shown_rows(at)
    assert seen == expected[:48]


def test_the_train_split_counts_its_own_matrix(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["overfit"]
    at = open_page("confusion", run)
    at.segmented_control(key="split").set_value("train").run()
    assert not at.exception
    cm = run.metrics["splits"]["train"]["confusion_matrix"]
    _choose(at, 2, 2)
    assert _title(at).startswith(f"{cm[2][2]:,} images:")
    assert _shown_rows(at) == _expected_rows(run, "train", 2, 2)[:24]


@pytest.mark.parametrize("view", ["count", "true", "pred"])
def test_each_view_draws_the_matrix_sklearn_computes(
    sample_runs: dict[str, Run], view: str
) -> None:
    run = sample_runs["imbalanced"]
    at = open_page("confusion", run)
    at.segmented_control(key="cm_view").set_value(view).run()
    assert not at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    z = _array(spec["data"][0]["z"]).astype(float)
    df = run.predictions()
    test = df[df.split == "test"]
    expected = sk_confusion_matrix(
        test.y_true, test.y_pred, labels=range(10), normalize=None if view == "count" else view
    )
    np.testing.assert_allclose(z, expected, atol=1e-12)
    if view == "count":
        assert z.tolist() == run.metrics["splits"]["test"]["confusion_matrix"]


def test_enlarge_opens_the_full_view(sample_runs: dict[str, Run]) -> None:
    at = open_page("confusion", sample_runs["good"])
    row = _shown_rows(at)[0]
    at.button(key=f"{ZOOM}{row}").click().run()
    assert not at.exception
    assert any("Confidence" in m.value for m in at.markdown)


# --- a 36-class run, written through the run store ----------------------------------------------

N_CLASSES = 36
CONFUSIONS = {(5, 17): 4, (20, 21): 3, (30, 2): 2}  # (true, predicted): images


@pytest.fixture
def many_classes_run(
    sample_runs: dict[str, Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Run]:
    """Return a 36-class single-split run in its own store, opened by the dashboard."""
    import core.engine.sample
    from ui.state import list_runs

    names = [f"class_{c:02d}" for c in range(N_CLASSES)]
    root = tmp_path / "many"
    split, paths, y_true, y_pred = [], [], [], []
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for k in range(5):
            Image.new("L", (8, 8), 7 * c).save(root / name / f"{k}.png")
            split.append("test")
            paths.append(f"{name}/{k}.png")
            y_true.append(c)
            y_pred.append(c)
    for (t, p), n in CONFUSIONS.items():
        for k in range(n):
            y_pred[5 * t + k] = p
    y_true, y_pred = np.array(y_true), np.array(y_pred)
    probs = np.full((len(y_true), N_CLASSES), 0.1 / (N_CLASSES - 1), np.float32)
    probs[np.arange(len(y_pred)), y_pred] = 0.9
    table = predictions_table(
        split=split,
        path=paths,
        y_true=y_true,
        y_pred=y_pred,
        confidence=np.full(len(y_true), 0.9),
        loss=-np.log(probs[np.arange(len(y_true)), y_true]),
        probs=probs,
    )
    report = {
        "classes": names,
        "splits": {"test": metrics.split_report(y_true, y_pred, class_names=names, probs=probs)},
    }
    meta = {
        **sample_runs["good"].meta,
        "class_names": names,
        "checkpoint": {**sample_runs["good"].meta["checkpoint"], "name": "many.safetensors"},
        "dataset": {"root": str(root), "fingerprint": "synthetic", "splits": {"test": 180}},
        "skipped": [],
    }
    store = tmp_path / "runs"
    monkeypatch.setenv("CLASSLENS_RUNS_DIR", str(store))
    monkeypatch.setattr(core.engine.sample, "ensure_sample_runs", lambda *a, **k: {})
    list_runs.clear()
    yield RunStore(store).write("f" * 16, table, meta, report)
    list_runs.clear()  # the next test must not see this store


def test_many_classes_rank_the_confused_pairs_and_open_them(many_classes_run: Run) -> None:
    at = open_page("confusion", many_classes_run)
    pairs = at.dataframe[0].value
    ranked = list(zip(pairs["true"], pairs["predicted"], pairs["count"], strict=True))
    assert ranked == [
        ("class_05", "class_17", 4),
        ("class_20", "class_21", 3),
        ("class_30", "class_02", 2),
    ]
    assert pairs["share_of_true"].tolist() == pytest.approx([4 / 5, 3 / 5, 2 / 5])
    # the heatmap opens on the classes of those pairs, in class order
    classes = at.multiselect(key=f"cm_classes-{many_classes_run.run_id}-test")
    assert classes.value == [2, 5, 17, 20, 21, 30]
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["data"][0]["x"] == [f"class_{c:02d}" for c in (2, 5, 17, 20, 21, 30)]
    assert _title(at) == r"4 images: true 'class\_05' predicted 'class\_17'"  # markdown-escaped
    _choose(at, 30, 2)
    assert _title(at) == r"2 images: true 'class\_30' predicted 'class\_02'"
    assert _shown_rows(at) == [150, 151]
    assert len(at.image) == 2  # the single-split dataset's files are found under its root


def test_a_slice_filter_keeps_the_chosen_cell_while_it_holds_images(
    sample_runs: dict[str, Run],
) -> None:
    # Journey: pick a cell, filter the images in the sidebar, clear the filter. A filter is the
    # same run narrowed: the cell stays while it holds images, and only a filter that empties
    # it opens the filtered matrix's most confused pair (was: any filter reset the cell).
    run = sample_runs["imbalanced"]
    names = run.class_names
    cm = np.array(run.metrics["splits"]["test"]["confusion_matrix"])
    worst = _worst_pair(cm.tolist())
    off = [(i, j) for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i, j]]

    def row_worst(c: tuple[int, int]) -> tuple[int, int]:  # what filtering to c's class opens
        only = np.zeros_like(cm)
        only[c[0]] = cm[c[0]]
        return _worst_pair(only.tolist())

    # a mistake the page opens on neither unfiltered nor filtered to its true class
    i, j = next(c for c in off if c != worst and c != row_worst(c))
    at = open_page("confusion", run)
    _choose(at, i, j)

    def sidebar_filter(value: str) -> None:
        at.selectbox(key="slice_new_column").set_value("true class").run()
        at.multiselect(key="slice_new_values-true class").set_value([value]).run()
        at.button(key="slice_add").click().run()
        assert not at.exception, at.exception

    sidebar_filter(names[i])
    assert at.query_params["where"] == f"true class~is~{names[i]}"
    noun = "image" if cm[i, j] == 1 else "images"
    assert _title(at) == f"{cm[i, j]:,} {noun}: true '{names[i]}' predicted '{names[j]}'"
    at.button(key="slice_clear").click().run()
    assert _title(at).endswith(f": true '{names[i]}' predicted '{names[j]}'")
    # a filter without the cell's images: the filtered matrix's own most confused pair
    k = next(c for c in range(len(names)) if c != i and cm[c].sum() - cm[c, c] > 0)
    sidebar_filter(names[k])
    df = run.predictions()
    test = df[(df["split"] == "test") & (df["y_true"] == k)]
    sub = sk_confusion_matrix(test["y_true"], test["y_pred"], labels=range(len(names)))
    a, b = _worst_pair(sub.tolist())
    assert a == k and sub[a, b] > 0
    noun = "image" if sub[a, b] == 1 else "images"
    assert _title(at) == f"{sub[a, b]:,} {noun}: true '{names[a]}' predicted '{names[b]}'"
