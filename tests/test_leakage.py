"""core.images.leakage: pHash on drawn images, Hamming against a bit loop, pairs against brute
force,
metrics without the leaked images against scikit-learn, and the per-run hash cache."""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance
from sklearn import metrics as skm

from core.engine.evaluate import evaluate
from core.images import leakage
from tests.conftest import classlens_meta, make_model, save_safetensors

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "sample_data" / "digits"


def scene(seed: int, size: int = 64) -> Image.Image:
    """Return a grayscale image of a few soft blobs (smooth, like a photo at low resolution)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    pixels = np.zeros((size, size))
    for _ in range(4):
        cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.08, 0.3)
        pixels += rng.uniform(-1, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r**2)
    pixels = (pixels - pixels.min()) / max(np.ptp(pixels), 1e-9) * 200 + 20
    return Image.fromarray(pixels.astype(np.uint8), mode="L")


def _jpeg(img: Image.Image, quality: int = 75) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf)


def _shift(img: Image.Image) -> Image.Image:
    """Return ``img`` moved one pixel right (the new column repeats the edge)."""
    a = np.asarray(img)
    return Image.fromarray(np.concatenate([a[:, :1], a[:, :-1]], axis=1))


COPIES = {
    "identical": lambda im: im.copy(),
    "brightened": lambda im: ImageEnhance.Brightness(im).enhance(1.08),
    "shifted-1px": _shift,
    "jpeg": _jpeg,
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("make_copy", list(COPIES.values()), ids=list(COPIES))
def test_phash_finds_a_near_copy(seed: int, make_copy) -> None:
    img = scene(seed)
    d = int(leakage.hamming(leakage.phash(img), leakage.phash(make_copy(img))))
    assert d <= 6, d


def test_phash_finds_a_reencoded_digit_and_rejects_another_digit() -> None:
    files = sorted((DIGITS / "test" / "3").glob("*.png"))[:2]
    a, b = (Image.open(f) for f in files)
    assert int(leakage.hamming(leakage.phash(a), leakage.phash(_jpeg(a.convert("L"))))) <= 4
    assert int(leakage.hamming(leakage.phash(a), leakage.phash(b))) > 12


def test_phash_rejects_different_images() -> None:
    hashes = [leakage.phash(scene(seed)) for seed in range(8)]
    distances = [int(leakage.hamming(x, y)) for x, y in itertools.combinations(hashes, 2)]
    assert min(distances) > 12, distances
    assert all(0 <= h < 2**64 for h in hashes)


def test_phash_is_64_bits_half_set() -> None:
    # bits are "above the median" of 64 coefficients: about half are set
    h = leakage.phash(scene(3))
    assert 24 <= bin(h).count("1") <= 40


@pytest.mark.parametrize("table", [False, True], ids=["popcount", "lookup-table"])
def test_hamming_matches_a_bit_loop(monkeypatch: pytest.MonkeyPatch, table: bool) -> None:
    if table:
        monkeypatch.delattr(np, "bitwise_count", raising=False)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**64, 50, dtype=np.uint64, endpoint=False)
    b = rng.integers(0, 2**64, 50, dtype=np.uint64, endpoint=False)
    a[0], b[0] = 2**64 - 1, 0  # all 64 bits differ
    got = leakage.hamming(a, b)
    assert got.dtype == np.int64
    assert got.tolist() == [bin(int(x) ^ int(y)).count("1") for x, y in zip(a, b, strict=True)]
    assert got[0] == 64
    assert leakage.hamming(a[:, None], b[None, :]).shape == (50, 50)
    assert int(leakage.hamming(5, 3)) == 2


def test_similarity() -> None:
    assert leakage.similarity(np.array([0, 16, 64])).tolist() == [1.0, 0.75, 0.0]


@pytest.mark.parametrize("max_distance", [0, 3, 8])
def test_near_duplicates_matches_brute_force(max_distance: int) -> None:
    rng = np.random.default_rng(max_distance)
    b = rng.integers(0, 2**63, 300, dtype=np.uint64)
    # a: random hashes plus copies of some b with a few bits flipped
    a = rng.integers(0, 2**63, 200, dtype=np.uint64)
    for i in range(0, 200, 7):
        flips = rng.choice(64, size=rng.integers(0, 10), replace=False)
        a[i] = b[(3 * i) % 300] ^ np.uint64(sum(1 << int(f) for f in flips))
    a[5] = b[9]  # an exact copy, also found at distance 0
    got = leakage.near_duplicates(a, b, max_distance=max_distance)
    expected = sorted(
        (d, i, j)
        for i, x in enumerate(a.tolist())
        for j, y in enumerate(b.tolist())
        if (d := bin(x ^ y).count("1")) <= max_distance
    )
    assert [tuple(p) for p in got.tolist()] == [(i, j, d) for d, i, j in expected]
    assert len(expected) > 0


def test_near_duplicates_empty_and_bad_distance() -> None:
    empty = np.array([], dtype=np.uint64)
    assert leakage.near_duplicates(empty, np.array([1], np.uint64), max_distance=4).shape == (0, 3)
    assert leakage.near_duplicates(np.array([1], np.uint64), empty, max_distance=4).shape == (0, 3)
    with pytest.raises(ValueError, match=r"max_distance must be an int in \[0, 64\], got 65"):
        leakage.near_duplicates(empty, empty, max_distance=65)


def test_phash_files_marks_unreadable(tmp_path: Path) -> None:
    scene(0).save(tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    calls = []
    hashes, readable = leakage.phash_files(
        [tmp_path / "a.png", tmp_path / "broken.png", tmp_path / "missing.png"],
        progress=lambda done, total: calls.append((done, total)),
    )
    assert readable.tolist() == [True, False, False]
    assert int(hashes[0]) == leakage.phash(scene(0))
    assert calls == [(3, 3)]


# --- on a run ------------------------------------------------------------------------------------


def fake_run(tmp_path: Path) -> SimpleNamespace:
    """Return a run-like object over 6 test and 4 train images, 3 classes, with probs."""
    splits = ["test"] * 6 + ["train"] * 4
    paths = [f"c{i % 3}/{i:03d}.png" for i in range(10)]
    y_true = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    y_pred = np.array([0, 1, 1, 0, 2, 2, 0, 1, 2, 1])
    probs = np.eye(3, dtype=np.float32)[y_pred] * 0.7 + 0.1
    predictions = pd.DataFrame(
        {"split": splits, "path": paths, "y_true": y_true, "y_pred": y_pred}
    ).set_axis(np.arange(10) + 100)
    return SimpleNamespace(
        path=tmp_path,
        class_names=["a", "b", "c"],
        metrics={"splits": {"test": {"skipped": ["x.png"]}, "train": {"skipped": []}}},
        predictions=lambda: predictions,
        probs=lambda: probs,
    )


@pytest.mark.parametrize(
    "excluded", [[], ["c2/002.png"], ["c0/000.png", "c1/004.png", "c0/006.png"], ["nope.png"]]
)
def test_metrics_without_matches_sklearn_on_the_remaining_rows(
    tmp_path: Path, excluded: list[str]
) -> None:
    run = fake_run(tmp_path)
    got = leakage.metrics_without(run, "test", excluded)
    df = run.predictions()
    rest = df[(df.split == "test") & ~df.path.isin(excluded)]
    labels = [0, 1, 2]
    assert got["n"] == len(rest)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(rest.y_true, rest.y_pred))
    assert got["balanced_accuracy"] == pytest.approx(
        skm.balanced_accuracy_score(rest.y_true, rest.y_pred)
    )
    f1 = skm.f1_score(rest.y_true, rest.y_pred, labels=labels, average="macro", zero_division=0)
    assert got["macro"]["f1"] == pytest.approx(f1)
    assert (
        got["confusion_matrix"]
        == skm.confusion_matrix(rest.y_true, rest.y_pred, labels=labels).tolist()
    )
    assert got["skipped"] == ["x.png"]


def test_leak_pairs_on_hashes(tmp_path: Path) -> None:
    run = fake_run(tmp_path)
    rng = np.random.default_rng(1)
    values = rng.integers(0, 2**63, 10, dtype=np.uint64)
    values[1] = values[7]  # test c1/001 == train c1/007, same label
    values[3] = values[8] ^ np.uint64(0b101)  # test c0/003 ~ train c2/008 (2 bits), other label
    hashes = pd.DataFrame(
        {"split": run.predictions().split, "path": run.predictions().path, "hash": values}
    ).assign(readable=True)
    pairs = leakage.leak_pairs(run, hashes, "test", max_distance=3)
    assert list(pairs.columns) == list(leakage.PAIR_COLUMNS)
    assert pairs[["row", "train_row", "distance"]].values.tolist() == [[101, 107, 0], [103, 108, 2]]
    assert pairs["labels_differ"].tolist() == [False, True]
    assert pairs["similarity"].tolist() == [1.0, 1 - 2 / 64]
    hashes.loc[101, "readable"] = False  # an unreadable image is never paired
    assert leakage.leak_pairs(run, hashes, "test", max_distance=3)["row"].tolist() == [103]


@pytest.fixture
def tiny_run(tmp_path: Path, runs_dir: Path):
    """Return a real run: 2 classes x 3 drawn images per split, a random tiny DigitsCNN."""
    for s, split in enumerate(("train", "test")):
        for c in range(2):
            folder = tmp_path / "data" / split / f"k{c}"
            folder.mkdir(parents=True)
            for i in range(3):
                scene(100 * s + 10 * c + i, size=16).save(folder / f"{i}.png")
    ckpt = save_safetensors(
        make_model(num_classes=2), tmp_path / "m.safetensors", classlens_meta(class_names=None)
    )
    return evaluate(ckpt, tmp_path / "data", runs_dir=runs_dir, device="cpu")


def test_hashes_are_cached_in_the_run_folder(tiny_run, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = leakage.phash_files

    def counting(paths, **kw):
        calls.append(len(paths))
        return real(paths, **kw)

    monkeypatch.setattr(leakage, "phash_files", counting)
    assert not leakage.has_cached_hashes(tiny_run)
    first = leakage.run_hashes(tiny_run)
    assert calls == [12]
    assert leakage.cache_path(tiny_run).is_file()
    assert leakage.has_cached_hashes(tiny_run)
    assert not [p for p in tiny_run.path.iterdir() if p.name.startswith(".")]  # no temp left
    again = leakage.run_hashes(tiny_run)
    assert calls == [12]  # read back, not recomputed
    pd.testing.assert_frame_equal(first, again)
    assert again["hash"].dtype == np.uint64 and again["readable"].all()
    df = tiny_run.predictions()
    path = leakage.gallery.image_path(tiny_run, df.split.iloc[0], df.path.iloc[0])
    assert int(again["hash"].iloc[0]) == leakage.phash(Image.open(path))

    leakage.cache_path(tiny_run).write_bytes(b"damaged")  # unreadable: recomputed, rewritten
    pd.testing.assert_frame_equal(leakage.run_hashes(tiny_run), first)
    assert calls == [12, 12]
    leakage.run_hashes(tiny_run)
    assert calls == [12, 12]
