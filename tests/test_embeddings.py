"""core.images.embeddings: cosine pairs against brute force, penultimate features against a manual
forward, the per-run cache, and near-copies on the sample good checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.engine import models
from core.engine.evaluate import evaluate
from core.engine.nets import DigitsWideMLP
from core.engine.preprocessing import Preprocessing
from core.engine.sample import CHECKPOINTS, DATASET
from core.errors import ClassLensError
from core.images import embeddings, leakage
from tests.conftest import classlens_meta, make_model, save_safetensors
from tests.test_leakage import scene


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("min_similarity", [0.5, 0.9, 0.999])
def test_cosine_pairs_matches_brute_force(
    monkeypatch: pytest.MonkeyPatch, min_similarity: float
) -> None:
    monkeypatch.setattr(embeddings, "BLOCK", 500)  # several row blocks
    rng = np.random.default_rng(0)
    b = _unit(rng, 60, 4)
    a = _unit(rng, 40, 4)
    a[::5] = b[3:59:7] + rng.normal(scale=0.02, size=(8, 4))  # near-copies of some b
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    i, j, s = embeddings.cosine_pairs(a, b, min_similarity=min_similarity)
    expected = sorted(
        (-float(np.float32(x @ y)), p, q)
        for p, x in enumerate(a)
        for q, y in enumerate(b)
        if float(np.float32(x @ y)) >= min_similarity
    )
    assert len(expected) > 0
    assert i.dtype == np.int64 and j.dtype == np.int64 and s.dtype == np.float32
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(p, q) for _, p, q in expected]
    np.testing.assert_allclose(s, [-v for v, _, _ in expected], atol=1e-5)


def test_cosine_pairs_empty_and_bad_shapes() -> None:
    i, j, s = embeddings.cosine_pairs(np.zeros((0, 3)), np.ones((2, 3)), min_similarity=0.5)
    assert len(i) == len(j) == len(s) == 0
    with pytest.raises(ValueError, match="same d"):
        embeddings.cosine_pairs(np.ones((1, 3)), np.ones((1, 4)), min_similarity=0.5)


def test_penultimate_is_the_input_of_the_last_linear() -> None:
    model = make_model(num_classes=3)
    x = torch.randn(5, 1, 32, 32)
    got = embeddings.penultimate(model)(x)
    with torch.no_grad():
        manual = model.classifier[1](model.classifier[0](model.features(x)))  # Flatten, Dropout
    assert got.shape == (5, 64)
    torch.testing.assert_close(got, manual)
    assert not model.classifier[2]._forward_pre_hooks  # the hook is removed
    with pytest.raises(ClassLensError, match="need an nn.Linear head"):
        embeddings.penultimate(torch.nn.Conv2d(1, 1, 3))


def test_embed_normalises_and_marks_unreadable(tmp_path: Path) -> None:
    for k in range(3):
        scene(k, size=32).save(tmp_path / f"{k}.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    files = [tmp_path / "0.png", tmp_path / "broken.png", tmp_path / "1.png", tmp_path / "2.png"]
    prep = Preprocessing(image_size=32, channels=1, mean=(0.5,), std=(0.5,))
    calls = []
    emb, ok = embeddings.embed(
        make_model(), files, prep, device="cpu", batch_size=3, progress=lambda *a: calls.append(a)
    )
    assert emb.dtype == np.float32 and emb.shape == (4, 64)
    assert ok.tolist() == [True, False, True, True]
    assert (emb[1] == 0).all()
    np.testing.assert_allclose(np.linalg.norm(emb[ok], axis=1), 1.0, atol=1e-5)
    assert calls == [(3, 4), (4, 4)]
    assert embeddings.readable(emb).tolist() == ok.tolist()


def test_near_copy_is_close_on_the_sample_good_checkpoint() -> None:
    ckpt = models.load_checkpoint(CHECKPOINTS["good"])
    prep = Preprocessing(image_size=32, channels=1, mean=(0.5,), std=(0.5,))
    files = [
        DATASET / "train/3/00003.png",
        DATASET / "test/3/leak-00003.png",  # a brightened copy of the first
        DATASET / "train/5/00005.png",  # another class
    ]
    emb, ok = embeddings.embed(ckpt.module, files, prep, device="cpu")
    assert ok.all()
    assert float(emb[0] @ emb[1]) > 0.99
    assert float(emb[0] @ emb[2]) < float(emb[0] @ emb[1]) - 0.1


@pytest.fixture
def tiny_run(tmp_path: Path, runs_dir: Path):
    """Return a real run: 2 classes x 3 drawn images per split, a random tiny DigitsCNN, with
    test/k0/copy.png an exact copy of train/k0/1.png."""
    for s, split in enumerate(("train", "test")):
        for c in range(2):
            folder = tmp_path / "data" / split / f"k{c}"
            folder.mkdir(parents=True)
            for i in range(3):
                scene(100 * s + 10 * c + i, size=16).save(folder / f"{i}.png")
    scene(1, size=16).save(tmp_path / "data/test/k0/copy.png")
    ckpt = save_safetensors(
        make_model(num_classes=2), tmp_path / "m.safetensors", classlens_meta(class_names=None)
    )
    return evaluate(ckpt, tmp_path / "data", runs_dir=runs_dir, device="cpu")


def test_embeddings_are_cached_in_the_run_folder(tiny_run, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = embeddings.embed

    def counting(module, paths, prep, **kw):
        calls.append(len(paths))
        return real(module, paths, prep, **kw)

    monkeypatch.setattr(embeddings, "embed", counting)
    assert not embeddings.has_cached_embeddings(tiny_run)
    first = embeddings.run_embeddings(tiny_run)
    assert calls == [13]
    assert first.shape == (13, 64) and first.dtype == np.float32
    cached = np.load(embeddings.cache_path(tiny_run))
    assert cached.dtype == np.float16 and cached.shape == (13, 64)
    assert embeddings.has_cached_embeddings(tiny_run)
    assert not [p for p in tiny_run.path.iterdir() if p.name.startswith(".")]  # no temp left
    np.testing.assert_array_equal(embeddings.run_embeddings(tiny_run), first)
    assert calls == [13]  # read back, not recomputed

    embeddings.cache_path(tiny_run).write_bytes(b"damaged")  # unreadable: recomputed
    np.testing.assert_array_equal(embeddings.run_embeddings(tiny_run), first)
    assert calls == [13, 13]
    np.save(embeddings.cache_path(tiny_run), cached[:5])  # another row count: recomputed
    embeddings.run_embeddings(tiny_run)
    assert calls == [13, 13, 13]
    embeddings.run_embeddings(tiny_run)
    assert calls == [13, 13, 13]

    # the exact copy is found as a pair, in leak_pairs' columns
    pairs = embeddings.embedding_pairs(tiny_run, first, "test", min_similarity=0.999)
    assert list(pairs.columns) == list(leakage.PAIR_COLUMNS)
    copy = pairs[pairs["path"] == "k0/copy.png"]
    assert copy["train_path"].tolist()[:1] == ["k0/1.png"]
    assert copy["similarity"].iloc[0] == pytest.approx(1.0, abs=1e-3)
    assert (pairs["similarity"].diff().dropna() <= 0).all()


def test_read_only_run_folder_skips_saving(tiny_run, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a, **_k):
        raise PermissionError("read-only")

    monkeypatch.setattr(embeddings, "open", refuse, raising=False)
    emb = embeddings.run_embeddings(tiny_run)
    assert emb.shape == (13, 64)
    assert not embeddings.cache_path(tiny_run).exists()
    assert not [p for p in tiny_run.path.iterdir() if p.name.startswith(".")]


def test_non_native_run_is_refused(tiny_run) -> None:
    meta = {**tiny_run.meta, "checkpoint": {**tiny_run.meta["checkpoint"], "format": "torchscript"}}
    run = type(tiny_run)(tiny_run.run_id, tiny_run.path, meta, tiny_run.metrics)
    with pytest.raises(ClassLensError, match="hides its layers"):
        embeddings.run_embeddings(run)
    assert isinstance(run.predictions(), pd.DataFrame)


def test_penultimate_of_an_mlp_is_its_hidden_layer() -> None:
    mlp = DigitsWideMLP(input_size=8, width=16).eval()
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(embeddings.penultimate(mlp)(x), mlp.features(x))
