"""ClassLens at many classes: float16 probability storage, the old float32 layout, the
synthetic-run generator, the image-mode heatmap, and tiny runs of each benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import (
    average_precision_score,
    classification_report,
    confusion_matrix,
    roc_auc_score,
    top_k_accuracy_score,
)

from bench import synthetic
from core import runs
from core.analysis import calibration, confusion, tables, thresholds
from core.figures import confusion as confusion_fig
from core.figures import confusion_image as ci
from core.runs import RunStore

META = {"checkpoint": {"name": "m.pt"}, "dataset": {"root": "/d"}}


def _write(
    store: RunStore, probs: np.ndarray, rid: str = "r1", y: np.ndarray | None = None
) -> runs.Run:
    n = len(probs)
    y = np.arange(n) % probs.shape[1] if y is None else y
    table = runs.predictions_table(
        split=["test"] * n, path=[f"{i}.png" for i in range(n)], y_true=y,
        y_pred=probs.argmax(1), confidence=probs.max(1), loss=-np.log(probs[np.arange(n), y]),
        probs=probs,
    )  # fmt: skip
    return store.write(rid, table, META, {"classes": [str(c) for c in range(probs.shape[1])]})


def _softmax(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    z = rng.normal(0, 3, (n, k))
    p = np.exp(z - z.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def test_probs_are_stored_float16_and_read_back_float32(tmp_path: Path) -> None:
    probs = _softmax(np.random.default_rng(0), 200, 7)
    run = _write(RunStore(tmp_path), probs)
    stored = pq.read_schema(run.path / "predictions.parquet").field("probs").type
    assert stored.value_type == pa.float16()
    got = run.probs()
    assert got.dtype == np.float32 and got.shape == probs.shape
    # float16: 11 significant bits, subnormals below 6.1e-5 (absolute step 6e-8)
    np.testing.assert_allclose(got, probs, rtol=2**-11, atol=6e-8)
    assert not np.array_equal(got, probs)  # it really is rounded: this test can fail
    assert run.meta["format_version"] == runs.FORMAT_VERSION == 2


def test_runs_written_with_float32_probs_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probs = _softmax(np.random.default_rng(1), 50, 4)
    with monkeypatch.context() as m:  # the format-1 writer: float32 vectors
        m.setattr(runs, "FORMAT_VERSION", 1)
        m.setattr(runs, "PROBS_DTYPE", np.float32)
        _write(RunStore(tmp_path), probs, rid="old")
    meta = json.loads((tmp_path / "old" / "meta.json").read_text())
    assert meta["format_version"] == 1
    run = RunStore(tmp_path).get("old")
    assert run is not None and [r.run_id for r in RunStore(tmp_path).list()] == ["old"]
    np.testing.assert_array_equal(run.probs(), probs)  # exact: nothing was rounded
    meta["format_version"] = 99  # an unknown (future) format is not shown
    (tmp_path / "old" / "meta.json").write_text(json.dumps(meta))
    assert RunStore(tmp_path).list() == []


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> runs.Run:
    """A synthetic 2,000-image, 300-class run (plus 400 train images)."""
    return synthetic.write_run(tmp_path_factory.mktemp("many") / "runs", n_test=2000,
                               n_classes=300)  # fmt: skip


def test_synthetic_run_is_consistent_and_matches_sklearn(many: runs.Run) -> None:
    df, probs = many.predictions(), many.probs()
    assert sorted(many.splits) == ["test", "train"] and len(df) == 2400
    assert len(set(many.class_names)) == 300
    np.testing.assert_allclose(probs.sum(1), 1, atol=3e-3)
    # y_pred is the argmax of the stored vectors wherever float16 left no tie
    top2 = np.sort(probs, axis=1)[:, -2:]
    clear = top2[:, 1] > top2[:, 0] * (1 + 2**-9)
    assert (probs.argmax(1) == df["y_pred"].to_numpy())[clear].all()
    test = df[df["split"] == "test"]
    m = many.metrics["splits"]["test"]
    rep = classification_report(test["y_true"], test["y_pred"], labels=range(300),
                                output_dict=True, zero_division=0)  # fmt: skip
    assert m["accuracy"] == pytest.approx(rep["accuracy"])
    assert m["macro"]["f1"] == pytest.approx(rep["macro avg"]["f1-score"])
    assert 0.6 < m["accuracy"] < 0.85  # "about 75%"
    recalls = [c["recall"] for c in m["per_class"] if c["support"] >= 5]
    assert min(recalls) < 0.45  # some classes much worse
    cm = np.array(m["confusion_matrix"])
    off = cm - np.diag(np.diag(cm))
    neighbour = sum(off[i, (i + d) % 300] for i in range(300) for d in (1, 2, 3))
    assert neighbour > 0.6 * off.sum()  # mistakes concentrate on a few neighbours
    np.testing.assert_array_equal(
        cm, confusion_matrix(test["y_true"], test["y_pred"], labels=range(300))
    )
    rows = test.index.to_numpy()
    assert m["top5_accuracy"] == pytest.approx(
        top_k_accuracy_score(test["y_true"], probs[rows], k=5, labels=range(300)), abs=2e-3
    )


def test_probability_views_agree_with_sklearn_on_float32_inputs(tmp_path: Path) -> None:
    """The float16-stored run gives the numbers sklearn gives on the float32 originals."""
    data = synthetic.draw_split(
        3000, 20, accuracy=0.75, rng=np.random.default_rng(3), hard=np.zeros(20, bool)
    )
    probs32, y = data["probs"], data["y_true"]
    run = _write(RunStore(tmp_path), probs32, y=y)
    got = run.probs()
    np.testing.assert_array_equal(run.predictions()["y_true"], y)
    for c in range(20):
        ap = thresholds.average_precision_score(y, got, c)
        assert ap == pytest.approx(average_precision_score(y == c, got[:, c]), abs=1e-12)
        # Rounding to float16 ties the tiniest scores (below 6e-5), which moves AP a little;
        # the ranking of everything that can be flagged is kept, so AUC barely moves.
        assert ap == pytest.approx(average_precision_score(y == c, probs32[:, c]), abs=5e-3)
        assert thresholds.roc_auc_score(y, got, c) == pytest.approx(
            roc_auc_score(y == c, probs32[:, c]), abs=1e-4
        )
    ece16 = calibration.top_label(y, got.argmax(1), got.max(1)).ece
    ece32 = calibration.top_label(y, probs32.argmax(1), probs32.max(1)).ece
    assert ece16 == pytest.approx(ece32, abs=2e-3)


def test_image_heatmap_is_small_and_its_targets_open_cells(many: runs.Run) -> None:
    res = confusion.split_results(many.predictions(), "test", many.class_names)
    drawn = confusion_fig.matrix_figure(res.cm, many.class_names, highlight=(0, 1))
    assert drawn.image  # 300 classes: the one image, not a heatmap
    fig = drawn.figure
    assert fig.data[0].type == "image" and fig.data[0].source.startswith("data:image/png")
    assert len(fig.to_json()) < 400_000
    cells = ci.target_cells(res.cm, range(300))
    assert drawn.cells == cells and drawn.trace == ci.TARGET_TRACE
    pairs = confusion.most_confused_pairs(res.cm, many.class_names)
    assert len(cells) == min(len(pairs), ci.TARGETS_MAX)
    assert [res.cm[i, j] for i, j in cells] == pairs["count"].tolist()[: len(cells)]
    k = 5  # the 6th target, clicked, names its cell; its rows are the cell's images
    i, j = cells[k]
    point = {"curve_number": ci.TARGET_TRACE, "point_index": k}
    assert confusion_fig.selected_cell([point], [], cells=cells, trace=ci.TARGET_TRACE) == (i, j)
    assert fig.data[ci.TARGET_TRACE].customdata[k][2] == res.cm[i, j] == len(res.cell_rows(i, j))


def test_image_colors_follow_a_log_scale() -> None:
    z = ci.intensity(np.array([0, 1, 9, 99]), None, 99)
    log = np.log1p([1, 9, 99]) / np.log1p(99)
    np.testing.assert_allclose(z, [0, *(ci.FLOOR + (1 - ci.FLOOR) * log)])
    assert ci.intensity(np.array([0.0, 1.0]), "true", 1).tolist() == [0.0, 1.0]
    assert tuple(ci.LUT[0]) == (247, 251, 255) and tuple(ci.LUT[-1]) == (8, 48, 107)


def test_class_search_view(many: runs.Run) -> None:
    m = many.metrics["splits"]["test"]
    table = tables.per_class_table(m)
    found = tables.class_view(table, query="HUSKY", sort="f1")
    assert len(found) > 0 and all("husky" in c for c in found["class"])
    assert found["f1"].is_monotonic_increasing
    everything = tables.class_view(table, query="", sort="class")
    assert everything["class"].tolist() == sorted(table["class"])


def test_class_table_counting_sort_equals_the_sorted_curves_and_sklearn() -> None:
    d = synthetic.draw_split(
        1500, 30, accuracy=0.7, rng=np.random.default_rng(5), hard=np.zeros(30, bool)
    )
    y, p = d["y_true"], d["probs"].astype(np.float16).astype(np.float32)  # as stored
    names = [str(c) for c in range(30)]
    fast = thresholds.class_table(y, p, names)  # float16 scores: the counting-sort path
    assert thresholds._float16_histograms(y, p, 30) is not None
    assert thresholds._float16_histograms(y, d["probs"], 30) is None  # float32: sorted path
    for c in range(30):
        cur = thresholds.class_curves(y, p, c)
        assert fast["support"][c] == cur.n_pos == (y == c).sum()
        assert fast["average_precision"][c] == pytest.approx(cur.average_precision, abs=1e-12)
        assert fast["roc_auc"][c] == pytest.approx(roc_auc_score(y == c, p[:, c]), abs=1e-12)
        assert fast["average_precision"][c] == pytest.approx(
            average_precision_score(y == c, p[:, c]), abs=1e-12
        )


def test_bench_analysis_times_every_page_and_sklearn(many: runs.Run) -> None:
    from bench import analysis

    work = analysis.page_work(many)
    report = work["metrics (split_report)"]()
    df = many.predictions()
    test = df[df["split"] == "test"]
    rep = classification_report(test["y_true"], test["y_pred"], labels=range(300),
                                output_dict=True, zero_division=0)  # fmt: skip
    assert report["weighted"]["f1"] == pytest.approx(rep["weighted avg"]["f1-score"])
    times = analysis.measure(many, repeats=1)
    assert set(times) == {*work, "sklearn"} and all(t > 0 for t in times.values())


def test_bench_bootstrap_times_the_compare_pages_bootstrap() -> None:
    from bench import bootstrap

    assert 0 < bootstrap.measure(n=200, k=3, repeats=1) < 60


@pytest.mark.slow  # starts a child process (imports the core)
def test_bench_memory_reads_a_child_peak(many: runs.Run) -> None:
    from bench import memory

    peak = memory.peak_mb(many.path.parent, many.run_id, "open")
    assert 50 < peak < memory.GOAL_MB


def test_recall_chart_of_many_classes_shows_the_worst_only(many: runs.Run) -> None:
    from core.figures import charts

    table = tables.per_class_table(many.metrics["splits"]["test"])
    fig = charts.recall_bars(table)
    shown = fig.data[0].y  # horizontal: classes on y
    present = table[table["support"] > 0]
    worst = present.nsmallest(charts.BARS_MAX, "recall", keep="all")
    assert len(shown) == charts.BARS_MAX < len(present)
    assert max(present.set_index("class").loc[list(shown), "recall"]) <= worst["recall"].max()
    assert f"worst of {len(present)} classes" in fig.layout.title.text


def test_gap_chart_of_many_classes_shows_the_largest_gaps_only(many: runs.Run) -> None:
    from core.analysis import diagnostics
    from core.figures import charts

    ov = diagnostics.overfitting(many.metrics, other="test")
    fig = charts.gap_bars(ov.class_gaps)
    assert list(fig.data[0].x) == [g.gap for g in ov.class_gaps[: charts.BARS_MAX]]
    assert f"of {len(ov.class_gaps)} classes" in fig.layout.title.text
