"""The Leakage page through AppTest: planted near-copies are found, and only they; the metrics
without them drop exactly those images."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import ImageEnhance
from streamlit.testing.v1 import AppTest

from core.engine.evaluate import evaluate
from core.images import embeddings, leakage
from core.runs import Run
from tests.app.conftest import open_page
from tests.conftest import classlens_meta, make_model, save_safetensors
from tests.test_leakage import scene
from ui.state import list_runs

pytestmark = pytest.mark.slow

COUNT = re.compile(
    r"^\*\*([\d,]+)\*\* (\w+)–train pairs? within (\d+) bits · "
    r"\*\*([\d,]+)\*\* of ([\d,]+) \w+ images nearly duplicates? a training image$"
)
CLASSES = ("k0", "k1", "k2")


def _count(at: AppTest) -> tuple[int, int, int]:
    """Return (pairs, leaked images, split images) from the page's count line."""
    found = [m for e in at.markdown if (m := COUNT.match(e.value))]
    assert len(found) == 1, [e.value for e in at.markdown]
    m = found[0]
    return int(m[1].replace(",", "")), int(m[4].replace(",", "")), int(m[5].replace(",", ""))


def _evaluate(data: Path, tmp_path: Path) -> Run:
    ckpt = save_safetensors(
        make_model(num_classes=len(CLASSES)),
        tmp_path / "m.safetensors",
        classlens_meta(class_names=None),
    )
    run = evaluate(ckpt, data, runs_dir=os.environ["CLASSLENS_RUNS_DIR"], device="cpu")
    list_runs.clear()  # the sidebar's run list is cached for a few seconds
    return run


@pytest.fixture
def leaky_run(sample_runs: dict[str, Run], tmp_path: Path) -> Run:
    """Return a run whose test split holds an exact copy and a brightened copy (labelled as
    another class) of two train images, among otherwise unrelated images."""
    data = tmp_path / "data"
    for s, split in enumerate(("train", "test")):
        for c, name in enumerate(CLASSES):
            folder = data / split / name
            folder.mkdir(parents=True)
            for i in range(3):
                scene(1000 + 100 * s + 10 * c + i, size=32).save(folder / f"{i}.png")
    shutil.copy(data / "train/k0/1.png", data / "test/k0/copy.png")
    img = scene(1000 + 10 * 2 + 2, size=32)  # train/k2/2.png
    ImageEnhance.Brightness(img).enhance(1.1).save(data / "test/k1/bright.png")
    return _evaluate(data, tmp_path)


def test_finds_exactly_the_planted_copies(leaky_run: Run) -> None:
    at = open_page("leakage", leaky_run)
    assert at.title[0].value == "Leakage"
    assert at.slider(key="lk_distance").value == 4
    n_test = leaky_run.metrics["splits"]["test"]["n"]
    assert n_test == 11
    assert _count(at) == (2, 2, n_test)
    # the thumbnails of both pairs, and the flag on the one labelled differently
    assert len(at.image) == 4
    assert sum("labels differ" in m.value for m in at.markdown) == 1
    assert any("carry different labels" in w.value for w in at.warning)
    images = next(m for m in at.metric if m.label == "Images")
    assert images.value == f"{n_test - 2:,}"
    # independent of the page: the numbers shown are those of the rows left
    df = leaky_run.predictions()
    rest = df[(df.split == "test") & ~df.path.isin(["k0/copy.png", "k1/bright.png"])]
    accuracy = next(m for m in at.metric if m.label == "Accuracy")
    assert accuracy.value == f"{(rest.y_true == rest.y_pred).mean():.1%}"
    assert leakage.cache_path(leaky_run).is_file()


def test_distance_zero_keeps_only_the_exact_copy(leaky_run: Run) -> None:
    at = open_page("leakage", leaky_run)
    at.slider(key="lk_distance").set_value(0).run()
    assert not at.exception, at.exception
    assert _count(at)[:2] == (1, 1)
    assert not any("labels differ" in m.value for m in at.markdown)


def test_no_train_split_says_so(sample_runs: dict[str, Run], tmp_path: Path) -> None:
    for c, name in enumerate(CLASSES):
        (tmp_path / "flat" / name).mkdir(parents=True)
        scene(c, size=32).save(tmp_path / "flat" / name / "0.png")
    at = open_page("leakage", _evaluate(tmp_path / "flat", tmp_path))
    assert any("needs a **train** split" in i.value for i in at.info)
    assert not at.markdown or all(not COUNT.match(m.value) for m in at.markdown)


def test_sample_good_run_renders(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["good"]
    at = open_page("leakage", run)
    pairs, leaked, n_test = _count(at)
    assert n_test == run.metrics["splits"]["test"]["n"]
    hashes = leakage.run_hashes(run)
    expected = leakage.leak_pairs(run, hashes, "test", max_distance=4)
    assert (pairs, leaked) == (len(expected), expected["path"].nunique())
    images = next(m for m in at.metric if m.label == "Images")
    assert images.value == f"{n_test - leaked:,}"


def test_sample_leaked_copies_are_found_and_change_the_metrics(
    sample_runs: dict[str, Run],
) -> None:
    """The sample script copies 6 training images (brightened) into test/: all are found."""
    run = sample_runs["good"]
    planted = {p for p in run.predictions()["path"] if "/leak-" in p}
    assert len(planted) == 6
    at = open_page("leakage", run)
    at.slider(key="lk_distance").set_value(2).run()
    pairs, leaked, n_test = _count(at)
    hashes = leakage.run_hashes(run)
    found = set(leakage.leak_pairs(run, hashes, "test", max_distance=2)["path"])
    assert found == planted, "at distance 2 exactly the planted copies"
    assert leaked == 6 and pairs >= 6
    original = run.metrics["splits"]["test"]
    without = leakage.metrics_without(run, "test", planted)
    assert without["n"] == original["n"] - 6
    assert without["accuracy"] != original["accuracy"]
    accuracy = next(m for m in at.metric if m.label == "Accuracy")
    assert accuracy.value == f"{100 * without['accuracy']:.1f}%"


def test_sample_embeddings_find_the_planted_copies(sample_runs: dict[str, Run]) -> None:
    """Model embeddings at the default 0.998 find all 6 planted copies; the metrics drop every
    leaked test image found."""
    run = sample_runs["good"]
    planted = {p for p in run.predictions()["path"] if "/leak-" in p}
    assert len(planted) == 6
    at = open_page("leakage", run)
    at.segmented_control(key="lk_method").set_value("Model embeddings").run()
    assert not at.exception, at.exception
    assert at.slider(key="lk_similarity").value == pytest.approx(0.998)
    counts = [
        m
        for e in at.markdown
        if (
            m := re.match(
                r"^\*\*([\d,]+)\*\* test–train pairs at cosine similarity ≥ 0\.998 · "
                r"\*\*([\d,]+)\*\* of ([\d,]+) test images",
                e.value,
            )
        )
    ]
    assert len(counts) == 1, [e.value for e in at.markdown]
    emb = embeddings.run_embeddings(run)  # read back from the cache the page wrote
    expected = embeddings.embedding_pairs(run, emb, "test", min_similarity=0.998)
    found = set(expected["path"])
    assert planted <= found
    for p in planted:  # each paired with the train image it copies
        original = p.replace("leak-", "")
        assert ((expected["path"] == p) & (expected["train_path"] == original)).any(), p
    leaked = len(found)
    n_test = run.metrics["splits"]["test"]["n"]
    assert int(counts[0][2].replace(",", "")) == leaked
    assert int(counts[0][3].replace(",", "")) == n_test
    images = next(m for m in at.metric if m.label == "Images")
    assert images.value == f"{n_test - leaked:,}"
    assert any(m.value.startswith("Cosine similarity **") for m in at.markdown)


def test_metric_deltas_only_for_changes_that_show(sample_runs: dict[str, Run]) -> None:
    """Each metric's Δ agrees with the values shown: none where they round to the same 0.1,
    otherwise their difference (it read "+0.0 pts" with an up arrow before)."""
    run = sample_runs["good"]
    at = open_page("leakage", run)
    _, leaked, _ = _count(at)
    assert leaked, "the sample has leaked images at the default distance"
    for label, key in (("Accuracy", "accuracy"), ("Balanced accuracy", "balanced_accuracy")):
        shown = next(m for m in at.metric if m.label == label)
        before = float(f"{run.metrics['splits']['test'][key]:.1%}".rstrip("%"))
        after = float(shown.value.rstrip("%"))
        if round(after - before, 1) == 0:
            assert not shown.delta, (label, shown.delta)
        else:
            assert shown.delta == f"{after - before:+.1f} pts", (label, shown.delta)
