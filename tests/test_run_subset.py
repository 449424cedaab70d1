"""Run.subset: a run restricted to some images has the numbers of scikit-learn on those images
and of a run evaluated on only those images; derived caches stay the parent's."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from core.analysis.metrics import split_report
from core.engine.evaluate import evaluate
from core.images import embeddings, leakage
from core.runs import Run, RunStore, predictions_table

REPO = Path(__file__).resolve().parents[1]
NAMES = ["ant", "bee", "cat", "dog", "eel", "fox"]


def _synthetic_run(runs_dir: Path, n: int = 600, seed: int = 0) -> Run:
    """Return a stored run of random predictions over two splits (70% right)."""
    rng = np.random.default_rng(seed)
    k = len(NAMES)
    y_true = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y_true] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y_pred = probs.argmax(1)
    split = rng.choice(["train", "test"], n).tolist()
    table = predictions_table(
        split=split,
        path=[f"{NAMES[t]}/{i:05d}.png" for i, t in enumerate(y_true)],
        y_true=y_true,
        y_pred=y_pred,
        confidence=probs.max(1),
        loss=-np.log(probs[np.arange(n), y_true]),
        probs=probs,
    )
    split_of = np.array(split)
    metrics = {
        "classes": NAMES,
        "splits": {
            s: split_report(y_true[split_of == s], y_pred[split_of == s], class_names=NAMES)
            for s in ("train", "test")
        },
    }
    meta = {"dataset": {"root": "/nowhere"}, "absent_classes": [], "skipped": [{"path": "x"}]}
    return RunStore(runs_dir).write(f"synthetic{seed:07d}", table, meta, metrics)


def _sklearn_split(y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray) -> dict:
    labels = list(range(len(NAMES)))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": len(y_true),
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, y_pred),
        "macro_f1": skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "weighted_recall": skm.recall_score(
            y_true, y_pred, labels=labels, average="weighted", zero_division=0
        ),
        "mcc": skm.matthews_corrcoef(y_true, y_pred),
        "kappa": skm.cohen_kappa_score(y_true, y_pred),
        "top3": skm.top_k_accuracy_score(y_true, probs, k=3, labels=labels),
        "cm": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "precision": p,
        "recall": r,
        "f1": f,
        "support": s,
    }


def _ours(report: dict) -> dict:
    per = report["per_class"]
    return {
        "n": report["n"],
        "accuracy": report["accuracy"],
        "balanced_accuracy": report["balanced_accuracy"],
        "macro_f1": report["macro"]["f1"],
        "weighted_recall": report["weighted"]["recall"],
        "mcc": report["mcc"],
        "kappa": report["kappa"],
        "top3": report["top3_accuracy"],
        "cm": report["confusion_matrix"],
        "precision": np.array([c["precision"] for c in per]),
        "recall": np.array([c["recall"] for c in per]),
        "f1": np.array([c["f1"] for c in per]),
        "support": np.array([c["support"] for c in per]),
    }


def _assert_same(ours: dict, want: dict) -> None:
    assert ours["n"] == want["n"] and ours["cm"] == want["cm"]
    for key in ("precision", "recall", "f1", "support"):
        np.testing.assert_allclose(ours[key], want[key], atol=1e-12, err_msg=key)
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_recall", "mcc", "kappa"):
        assert ours[key] == pytest.approx(want[key], abs=1e-12), key
    assert ours["top3"] == pytest.approx(want["top3"], abs=1e-12)


@pytest.fixture
def run(runs_dir: Path) -> Run:
    return _synthetic_run(runs_dir)


def test_every_number_equals_sklearn_on_the_subset(run: Run) -> None:
    df = run.predictions()
    keep = (df["y_true"].isin([1, 4]) | (df["confidence"] < 0.4)).to_numpy()
    sub = run.subset(keep, "true class is bee or eel")
    assert 0 < keep.sum() < len(keep)
    probs16 = run.probs()[keep]  # what the subset holds: the stored (float16-exact) vectors
    for split in ("train", "test"):
        in_split = df["split"].to_numpy()[keep] == split
        want = _sklearn_split(
            df["y_true"].to_numpy()[keep][in_split],
            df["y_pred"].to_numpy()[keep][in_split],
            probs16[in_split],
        )
        _assert_same(_ours(sub.metrics["splits"][split]), want)
    assert sub.metrics["classes"] == NAMES and sub.class_names == NAMES
    assert sub.metrics["splits"]["test"]["skipped"] == []


def test_the_subset_holds_the_rows_and_says_n_of_n(run: Run) -> None:
    df = run.predictions()
    keep = (df["split"] == "test").to_numpy() & (df["y_true"] == 2).to_numpy()
    sub = run.subset(keep, "split is test and true class is cat")
    pd.testing.assert_frame_equal(sub.predictions(), df[keep].reset_index(drop=True))
    np.testing.assert_array_equal(sub.probs(), run.probs()[keep])
    assert sub.splits == ["test"]  # a split with no image left is gone, as in such a run
    info = sub.meta["slice"]
    assert info["label"] == "split is test and true class is cat"
    assert (info["n"], info["of"]) == (int(keep.sum()), len(df))
    assert info["n_by_split"] == {"test": int(keep.sum())}
    assert info["of_by_split"] == {
        s: int((df["split"] == s).sum()) for s in ("train", "test") if (df["split"] == s).any()
    }
    assert info["parent"] == run.run_id and sub.parent is run and sub.path == run.path
    assert sub.run_id.startswith(run.run_id + "~") and sub.run_id != run.run_id
    assert sub.meta["n_predictions"] == keep.sum() and sub.meta["skipped"] == []
    np.testing.assert_array_equal(sub.rows, np.flatnonzero(keep))
    # the same rows make the same id; other rows another one
    assert run.subset(keep.copy(), "again").run_id == sub.run_id
    assert run.subset(~keep, "rest").run_id != sub.run_id
    assert (
        run.subset(keep, "x", key="true class~is~cat").run_id == f"{run.run_id}~true class~is~cat"
    )


def test_a_subset_of_a_subset_counts_against_the_whole_run(run: Run) -> None:
    df = run.predictions()
    first = run.subset((df["split"] == "test").to_numpy(), "test")
    inner = (first.predictions()["confidence"] >= 0.5).to_numpy()
    second = first.subset(inner, "test and confident")
    want = np.flatnonzero((df["split"] == "test").to_numpy() & (df["confidence"] >= 0.5).to_numpy())
    np.testing.assert_array_equal(second.rows, want)
    assert second.parent is run and second.meta["slice"]["of"] == len(df)
    pd.testing.assert_frame_equal(second.predictions(), df.iloc[want].reset_index(drop=True))


def test_an_empty_subset_has_no_split(run: Run) -> None:
    sub = run.subset(np.zeros(len(run.predictions()), bool), "nothing")
    assert sub.splits == [] and len(sub.predictions()) == 0 and sub.probs().shape == (0, 6)


@pytest.mark.parametrize(
    "bad", [np.ones(3, bool), np.ones(600, int), [True] * 599], ids=["short", "ints", "list"]
)
def test_a_wrong_mask_is_refused(run: Run, bad: object) -> None:
    with pytest.raises(ValueError, match="one entry per prediction"):
        run.subset(bad, "x")


def test_derived_caches_are_the_parents_cut_to_the_rows(run: Run) -> None:
    df = run.predictions()
    rng = np.random.default_rng(1)
    hashes = pd.DataFrame(
        {
            "split": df["split"].to_numpy(),
            "path": df["path"].to_numpy(),
            "hash": rng.integers(0, 2**63, len(df), dtype=np.uint64),
            "readable": np.ones(len(df), bool),
        }
    )
    pq.write_table(pa.Table.from_pandas(hashes, preserve_index=False), leakage.cache_path(run))
    emb = rng.normal(size=(len(df), 8)).astype(np.float16)
    np.save(embeddings.cache_path(run), emb)
    before = (leakage.cache_path(run).read_bytes(), embeddings.cache_path(run).read_bytes())
    keep = (df["y_true"] == 0).to_numpy()
    sub = run.subset(keep, "ant")
    assert leakage.has_cached_hashes(sub) and embeddings.has_cached_embeddings(sub)
    got = leakage.run_hashes(sub)
    np.testing.assert_array_equal(got["hash"].to_numpy(), hashes["hash"].to_numpy()[keep])
    assert list(got.index) == list(sub.predictions().index)
    np.testing.assert_array_equal(embeddings.run_embeddings(sub), emb[keep].astype(np.float32))
    # the parent's files were read, not rewritten for the subset
    after = (leakage.cache_path(run).read_bytes(), embeddings.cache_path(run).read_bytes())
    assert after == before


@pytest.mark.slow
@pytest.mark.parametrize("how", ["every third image", "true class 3 or 8"])
def test_equals_a_run_evaluated_on_only_those_images(
    tmp_path: Path, runs_dir: Path, how: str
) -> None:
    """The acceptance: the subset's numbers are those of a run of only its images (classes
    without an image in the slice are absent there as in a dataset without their folder)."""
    digits = REPO / "sample_data" / "digits"
    ckpt = REPO / "sample_data" / "checkpoints" / "good.safetensors"
    full = evaluate(ckpt, digits, runs_dir=runs_dir, device="cpu", probe_preprocessing=False)
    df = full.predictions()
    if how == "every third image":  # every class and split keeps images
        keep = (df.groupby(["split", "y_true"]).cumcount() % 3 == 0).to_numpy()
    else:
        keep = df["y_true"].isin([3, 8]).to_numpy()
    sub = full.subset(keep, how)
    copy = tmp_path / "digits-third"
    for split, path in zip(df["split"][keep], df["path"][keep], strict=True):
        (copy / split / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(digits / split / path, copy / split / path)
    alone = evaluate(ckpt, copy, runs_dir=runs_dir, device="cpu", probe_preprocessing=False)
    assert alone.meta["preprocessing"] == full.meta["preprocessing"]
    assert sub.splits == alone.splits
    assert sub.meta["absent_classes"] == alone.meta["absent_classes"]
    for split in alone.splits:
        ours, theirs = sub.metrics["splits"][split], alone.metrics["splits"][split]
        assert ours["confusion_matrix"] == theirs["confusion_matrix"]
        for key in ("n", "accuracy", "balanced_accuracy", "macro", "weighted", "mcc", "kappa"):
            assert ours[key] == pytest.approx(theirs[key], abs=1e-12), key
        pd.testing.assert_frame_equal(
            pd.DataFrame(ours["per_class"]), pd.DataFrame(theirs["per_class"]), atol=1e-12
        )
        # top-k: from the stored float16 vectors here, the model's float32 there (ties only)
        for key in ("top3_accuracy", "top5_accuracy"):
            assert ours[key] == pytest.approx(theirs[key], abs=2 / ours["n"]), key
    a = sub.predictions().sort_values(["split", "path"]).reset_index(drop=True)
    b = alone.predictions().sort_values(["split", "path"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-5)


def test_classes_without_an_image_in_the_slice_are_absent(run: Run) -> None:
    df = run.predictions()
    keep = df["y_true"].isin([1, 4]).to_numpy()
    sub = run.subset(keep, "true class is bee or eel")
    assert sub.meta["absent_classes"] == ["ant", "cat", "dog", "fox"]
    test = sub.metrics["splits"]["test"]
    rows = keep & (df["split"] == "test").to_numpy()
    y_true, y_pred = df["y_true"].to_numpy()[rows], df["y_pred"].to_numpy()[rows]
    for avg in ("precision", "recall", "f1"):
        want = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=[1, 4], average="macro", zero_division=0
        )[("precision", "recall", "f1").index(avg)]
        assert test["macro"][avg] == pytest.approx(want, abs=1e-12)
    assert [c.get("absent", False) for c in test["per_class"]] == [True, False] + [True] * 2 + [
        False,
        True,
    ]


def test_a_slice_is_not_described_as_unreadable_files(tmp_path: Path) -> None:
    """Overview's count note and run facts on a slice: the images outside it were filtered
    out, not skipped; counts by hand with numpy over the predictions."""
    from dataclasses import replace

    from core.analysis import tables

    stored = _synthetic_run(tmp_path)
    split = stored.predictions()["split"].to_numpy()
    found = {s: int((split == s).sum()) for s in ("train", "test")}
    meta = {**stored.meta, "class_names": NAMES, "dataset": {"root": "/d", "splits": found}}
    run = replace(stored, meta=meta)
    mask = (run.predictions()["y_true"] == 0).to_numpy()  # the ants only
    kept = {s: int((split[mask] == s).sum()) for s in ("train", "test")}
    sub = run.subset(mask, "true class is ant")

    counts = tables.image_counts(sub.meta, sub.metrics).set_index("split")
    for s in ("train", "test"):
        assert counts.loc[s].tolist() == [kept[s], kept[s], 0, 0]
        assert tables.count_note(sub.meta, sub.metrics, s) == ""  # was "... could not be read"
    facts = {k: dict(v) for k, v in tables.run_facts(sub.meta, sub.metrics).items()}
    assert facts["Dataset"]["test images"] == f"{found['test']:,} ({kept['test']:,} in this slice)"
    assert facts["Model"]["classes"] == "6 (5 with no image in this slice: bee, cat, dog, eel, fox)"
    # the full run still reads as before
    assert dict(tables.run_facts(run.meta, run.metrics)["Dataset"])["test images"] == (
        f"{found['test']:,}"
    )
