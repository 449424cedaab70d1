"""Corruptions (core/engine/corruptions.py) and the derived-run bookkeeping of
core/images/robustness.py that needs no model: sampling, ids, listing, estimates, refusals."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.engine import corruptions, models
from core.errors import ClassLensError
from core.images import robustness
from core.runs import Run, RunStore, predictions_table

NAMES = list(corruptions.CORRUPTIONS)


def _image(mode: str = "L", size: tuple[int, int] = (24, 16), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    return Image.fromarray(rng.integers(30, 220, shape, dtype=np.uint8), mode=mode)


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("name", NAMES)
def test_severity_zero_is_byte_exact_and_every_level_changes_the_image(
    name: str, mode: str
) -> None:
    img = _image(mode)
    same = corruptions.apply(img, name, 0, key="test/a.png")
    assert same is not img and same.mode == mode and same.tobytes() == img.tobytes()
    for severity in range(1, corruptions.CORRUPTIONS[name] + 1):
        out = corruptions.apply(img, name, severity, key="test/a.png")
        assert out.mode == mode and out.size == img.size
        assert out.tobytes() != img.tobytes(), f"{name} {severity} left the image unchanged"


def test_the_table_has_five_levels_and_a_flip_has_one() -> None:
    assert corruptions.CORRUPTIONS == {
        "gaussian_noise": 5, "blur": 5, "brightness_up": 5, "brightness_down": 5,
        "contrast": 5, "jpeg": 5, "downscale": 5, "rotate": 5, "hflip": 1,
    }  # fmt: skip
    assert all(corruptions.corruption_label(n) for n in NAMES)
    assert corruptions.parameter_text("jpeg", 2) == "JPEG quality 20"


def test_pixel_corruptions_equal_their_formulas_by_hand() -> None:
    x = np.array([[0, 10, 100], [200, 250, 255]], np.uint8)
    img = Image.fromarray(x, mode="L")

    def px(name: str, severity: int) -> np.ndarray:
        return np.asarray(corruptions.apply(img, name, severity, key="k"), dtype=np.int64)

    # brightness +-0.2 of 255 = 51 grey levels, clipped to 0..255
    np.testing.assert_array_equal(px("brightness_up", 2), [[51, 61, 151], [251, 255, 255]])
    np.testing.assert_array_equal(px("brightness_down", 2), [[0, 0, 49], [149, 199, 204]])
    # contrast 0.4 about the mean (815 / 6 = 135.83): 0 -> 81.5 rounds to 82 (half away: .5+)
    mean = x.mean()
    np.testing.assert_array_equal(px("contrast", 1), np.rint((x - mean) * 0.4 + mean))
    np.testing.assert_array_equal(px("hflip", 1), x[:, ::-1])


def test_noise_is_seeded_per_image_and_the_same_pattern_grows_with_severity() -> None:
    grey = Image.fromarray(np.full((40, 40), 128, np.uint8), mode="L")

    def noise(key: str, severity: int) -> np.ndarray:
        out = corruptions.apply(grey, "gaussian_noise", severity, key=key)
        return np.asarray(out, dtype=np.float64) - 128

    a1, again, b1 = noise("test/a.png", 1), noise("test/a.png", 1), noise("test/b.png", 1)
    np.testing.assert_array_equal(a1, again)  # reruns are identical
    assert np.abs(a1 - b1).mean() > 5  # another image, another draw
    # std 0.08 * 255 = 20.4 grey levels (1,600 draws: within 10%)
    assert abs(a1.std() - 0.08 * 255) < 0.1 * 0.08 * 255
    # severity 2 is the same draw scaled by 0.12 / 0.08, up to rounding and clipping at 0/255
    a2 = noise("test/a.png", 2)
    inside = np.abs(a2) < 126
    assert np.abs(a2[inside] - a1[inside] * 1.5).max() <= 1.5


def test_blur_and_downscale_lose_detail_step_by_step() -> None:
    img = _image(size=(64, 64), seed=1)  # random pixels: detail at every frequency
    line = np.zeros((64, 64), np.uint8)
    line[:, 32] = 255

    def detail(name: str, severity: int) -> float:  # energy of horizontal differences
        arr = np.asarray(corruptions.apply(img, name, severity, key="k"), dtype=np.float64)
        return float(np.abs(np.diff(arr, axis=1)).sum())

    def peak(severity: int) -> int:  # a one-pixel line spreads: its peak falls
        out = corruptions.apply(Image.fromarray(line, mode="L"), "blur", severity, key="k")
        return int(np.asarray(out)[:, 32].max())

    for name in ("blur", "downscale"):
        energy = [detail(name, s) for s in range(6)]
        assert all(a > b for a, b in zip(energy, energy[1:], strict=False)), (name, energy)
    peaks = [peak(s) for s in range(6)]
    assert peaks[0] == 255 and all(a > b for a, b in zip(peaks, peaks[1:], strict=False)), peaks


@pytest.mark.parametrize(
    ("name", "severity", "match"),
    [
        ("fog", 1, "unknown corruption 'fog': use one of gaussian_noise, blur"),
        ("blur", 6, "severity 6 is out of range for blur: use a whole number from 0 to 5"),
        ("blur", -1, "out of range"),
        ("blur", 1.5, "out of range"),
        ("blur", True, "out of range"),
        ("hflip", 2, "from 0 to 1 \\(a flip has one level\\)"),
    ],
)
def test_bad_names_and_severities_say_what_to_pass(name: str, severity: object, match: str) -> None:
    with pytest.raises(ClassLensError, match=match):
        corruptions.apply(_image(), name, severity, key="k")  # type: ignore[arg-type]


def test_the_loader_hook_pickles_and_knows_each_images_key() -> None:
    hook = pickle.loads(pickle.dumps(corruptions.Corrupt("gaussian_noise", 3, ("s/a", "s/b"))))
    img = _image()
    expected = corruptions.apply(img, "gaussian_noise", 3, key="s/b")
    assert hook(img, 1).tobytes() == expected.tobytes()
    with pytest.raises(ClassLensError, match="unknown corruption"):
        corruptions.Corrupt("fog", 1, ())


# --- derived runs without a model ---------------------------------------------------------------


def _run(store: RunStore, counts: list[int], *, rid: str = "a" * 16, timings=None) -> Run:
    y = np.repeat(np.arange(len(counts)), counts)
    n, k = len(y), len(counts)
    table = predictions_table(
        split=["test"] * n + ["train"] * 2,
        path=[f"{c}/{i:03d}.png" for i, c in enumerate(y)] + ["0/t1.png", "0/t2.png"],
        y_true=np.r_[y, 0, 0],
        y_pred=np.r_[y, 0, 0],
        confidence=np.ones(n + 2, np.float32),
        loss=np.zeros(n + 2, np.float32),
        probs=np.eye(k, dtype=np.float32)[np.r_[y, 0, 0]],
    )
    meta = {
        "checkpoint": {"name": "m", "path": "/nowhere/m.safetensors", "sha256": "0" * 64,
                       "format": "safetensors", "trusted": False},
        "dataset": {"root": str(store.root / "data"), "fingerprint": "f", "splits": {}},
        "timings": timings or {"load_s": 0.5, "images_per_s": 100.0},
    }  # fmt: skip
    splits = {s: {"n": 1} for s in ("train", "test")}
    return store.write(rid, table, meta, {"classes": [str(i) for i in range(k)], "splits": splits})


def test_a_sample_is_stratified_by_largest_remainder_and_seeded(tmp_path: Path) -> None:
    run = _run(RunStore(tmp_path), [50, 30, 20])
    paths = robustness.sample_paths(run, "test", 10, seed=3)
    assert [p.split("/")[0] for p in paths].count("0") == 5
    assert [p[0] for p in paths] == sorted(p[0] for p in paths)  # the run's row order
    assert [sum(p.startswith(f"{c}/") for p in paths) for c in range(3)] == [5, 3, 2]
    assert robustness.sample_paths(run, "test", 10, seed=3) == paths
    assert robustness.sample_paths(run, "test", 10, seed=4) != paths
    test_paths = run.predictions().query("split == 'test'")["path"].tolist()
    assert set(paths) <= set(test_paths)
    assert robustness.sample_paths(run, "test", None) == test_paths
    assert robustness.sample_paths(run, "test", 1000) == test_paths
    # quotas 2.27, 2.27, 0.45 -> floors 2, 2, 0; the one left goes to the largest remainder
    small = _run(RunStore(tmp_path / "b"), [5, 5, 1])
    picked = robustness.sample_paths(small, "test", 5, seed=0)
    assert [sum(p.startswith(f"{c}/") for p in picked) for c in range(3)] == [2, 2, 1]
    with pytest.raises(ClassLensError, match="at least 1"):
        robustness.sample_paths(run, "test", 0)
    with pytest.raises(ClassLensError, match="no split 'val' \\(it has train, test\\)"):
        robustness.sample_paths(run, "val", 5)


def test_derived_ids_are_deterministic_hidden_from_listings_and_read_by_id(
    tmp_path: Path,
) -> None:
    store = RunStore(tmp_path)
    run = _run(store, [6, 4])
    rid = robustness.derived_id(run, "test", "blur", 3, sample=5, seed=1)
    assert rid == f"{run.run_id}.test.blur.s3.n5.seed1"
    assert robustness.derived_id(run, "test", "blur", 3, sample=None) == (
        f"{run.run_id}.test.blur.s3.all"
    )
    assert robustness.derived_id(run, "test", "blur", 3, sample=10, seed=7).endswith(".all")
    with pytest.raises(ClassLensError, match="out of range for hflip"):
        robustness.derived_id(run, "test", "hflip", 2)
    assert robustness.cached(store, run, "test", "blur", 3, sample=5, seed=1) is None
    _run(store, [6, 4], rid=rid)  # stands in for a computed derived run
    assert [r.run_id for r in store.list()] == [run.run_id]
    assert {r.run_id for r in store.list(derived=True)} == {run.run_id, rid}
    hit = robustness.cached(store, run, "test", "blur", 3, sample=5, seed=1)
    assert hit is not None and hit.run_id == rid


def test_the_estimate_counts_only_what_is_not_stored(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = _run(store, [6, 4])  # 10 test images; 100 images/s, 0.5 s to load the model
    n, seconds = robustness.estimate(run, "test", None, ["blur", "hflip"], [1, 2])
    assert n == 30  # blur 1, blur 2, hflip 1 (a flip has no severity 2)
    assert seconds == pytest.approx(3 * (10 / 100 * robustness.CORRUPT_COST + 0.5))
    _run(store, [6, 4], rid=robustness.derived_id(run, "test", "blur", 1))
    assert robustness.estimate(run, "test", None, ["blur", "hflip"], [1, 2])[0] == 20
    assert robustness.estimate(run, "test", 4, ["blur"], [1]) == (4, pytest.approx(0.56))
    with pytest.raises(ClassLensError, match="unknown corruption"):
        robustness.estimate(run, "test", None, ["fog"], [1])


def test_the_dashboard_estimate_adds_one_child_start_up(tmp_path: Path) -> None:
    from core.images import robustness_worker as worker

    store = RunStore(tmp_path)
    run = _run(store, [6, 4])  # 10 test images; 100 images/s, 0.5 s to load the model
    # nothing measured yet: the module's default; 2 pairs x (10 images x 1.5 / 100 + 0.5 s)
    n, seconds, start = worker.estimate(store, run, "test", None, ["blur"], [1, 2])
    assert (n, start) == (20, worker.STARTUP_S)
    assert seconds == pytest.approx(2 * (0.15 + 0.5) + worker.STARTUP_S)
    worker._record_startup(store, 12.345)  # noqa: SLF001 - as the parent does on "started"
    assert worker.startup_s(store) == 12.35
    assert [r.run_id for r in store.list(derived=True)] == [run.run_id]  # not a run
    assert worker.estimate(store, run, "test", None, ["blur"], [1]) == (
        10, pytest.approx(0.65 + 12.35), 12.35
    )  # fmt: skip
    (store.root / worker.STARTUP_FILE).write_text("{not json")
    assert worker.startup_s(store) == worker.STARTUP_S
    for pair in ((1,), (2,)):  # everything stored: no child, nothing to start
        _run(store, [6, 4], rid=robustness.derived_id(run, "test", "blur", *pair))
    assert worker.estimate(store, run, "test", None, ["blur"], [1, 2]) == (0, 0.0, 0.0)


def test_bad_requests_are_refused_before_any_model_is_loaded(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = _run(store, [6, 4])
    with pytest.raises(ClassLensError, match="unknown corruption 'fog'"):
        robustness.corrupted_run(store, run, "test", "fog", 1)
    with pytest.raises(ClassLensError, match="severity 9 is out of range"):
        robustness.corrupted_run(store, run, "test", "blur", 9)
    with pytest.raises(ClassLensError, match="no split 'val'"):
        robustness.corrupted_run(store, run, "val", "blur", 1)
    sliced = run.subset(run.predictions()["y_true"].to_numpy() == 0, "class 0")
    with pytest.raises(ClassLensError, match="not a slice of it: clear the slice filter"):
        robustness.corrupted_run(store, sliced, "test", "blur", 1)
    with pytest.raises(ClassLensError, match="10 of the 10 images are no longer where"):
        robustness.corrupted_run(store, run, "test", "blur", 1)  # the dataset folder is gone
    assert store.list(derived=True) == [run]  # nothing half-written


def test_a_moved_or_replaced_checkpoint_is_refused_before_it_is_loaded(tmp_path: Path) -> None:
    from core.engine.nets import DigitsCNN

    path = tmp_path / "model.pt"
    torch.save(DigitsCNN(num_classes=10, in_channels=1).state_dict(), path)
    meta = {
        "checkpoint": {"path": str(path), "format": "state_dict",
                       "sha256": models.sha256_file(path), "trusted": True},
        "architecture": "digits_cnn",
    }  # fmt: skip
    assert robustness.load_model(meta).path == path  # a trusted pickle, as evaluated

    marker = tmp_path / "pwned"
    torch.save({"weights": _Pwn(marker)}, path)  # the same path, now a malicious pickle
    with pytest.raises(ClassLensError, match="changed since this run was evaluated.*not loaded"):
        robustness.load_model(meta)
    assert not marker.exists(), "the replaced file's code ran before its sha256 was checked"
    path.unlink()
    with pytest.raises(ClassLensError, match="checkpoint not found.*moved or deleted"):
        robustness.load_model(meta)
    path.mkdir()
    with pytest.raises(ClassLensError, match="single-file checkpoints only"):
        robustness.load_model(meta)


class _Pwn:
    """Unpickling this touches ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_corrupted_view_is_the_corrupted_image_at_the_models_input(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    run = _run(store, [2])
    folder = tmp_path / "runs" / "data" / "test" / "0"  # the fake run's dataset root
    folder.mkdir(parents=True)
    img = _image("RGB", size=(40, 30), seed=2)
    img.save(folder / "000.png")
    meta = json.loads((run.path / "meta.json").read_text())
    meta["preprocessing"] = {"image_size": 20, "channels": 1, "mean": [0.5], "std": [0.5]}
    (run.path / "meta.json").write_text(json.dumps(meta))
    run = store.get(run.run_id)
    by_hand = corruptions.apply(img.convert("L"), "rotate", 4, key="test/0/000.png")
    by_hand = np.asarray(by_hand.resize((20, 20), Image.Resampling.BILINEAR))
    view = robustness.corrupted_view(run, "test", "0/000.png", "rotate", 4)
    assert view.shape == (20, 20, 3) and view.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(view[:, :, c], by_hand)
    clean = np.asarray(img.convert("L").resize((20, 20), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(
        robustness.corrupted_view(run, "test", "0/000.png", "blur", 0)[:, :, 0], clean
    )
    with pytest.raises(ClassLensError, match="unknown corruption"):
        robustness.corrupted_view(run, "test", "0/000.png", "fog", 1)
