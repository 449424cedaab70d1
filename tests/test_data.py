"""Datasets: layouts, class order, skipped files, fingerprints and channel conversion."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import (
    SIZE,
    SORTED_CLASSES,
    assert_cli_error,
    assert_cli_run,
    classlens_meta,
    cli_inprocess,
    draw,
    make_model,
    save_safetensors,
    write_dataset,
)
from PIL import Image
from sklearn.metrics import confusion_matrix

from core.engine import data, evaluate
from core.engine.preprocessing import Preprocessing
from core.errors import ClassLensError

# --- layouts ----------------------------------------------------------------------------------


def test_split_layout_is_scanned_with_sorted_class_names(dataset: Path) -> None:
    ds = data.scan(dataset)

    assert ds.split_dirs == {"train": dataset / "train", "test": dataset / "test"}
    assert ds.class_names == SORTED_CLASSES == ("bird", "cat", "dog")
    assert (ds.count("train"), ds.count("test")) == (12, 12)
    assert ds.skipped == ()
    first = ds.items[0]
    assert (first.split, first.path, first.label) == ("train", "bird/000.png", 0)
    # Every label is the index of its folder name in the sorted class names.
    assert all(ds.class_names[it.label] == it.path.split("/")[0] for it in ds.items)
    assert ds.abspath(first) == dataset / "train" / "bird" / "000.png"


def test_single_folder_layout_is_one_test_split(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "flat", splits=None)

    ds = data.scan(root)

    assert ds.split_dirs == {"test": root}
    assert ds.class_names == ("bird", "cat", "dog")
    assert ds.count("test") == 12
    assert {it.split for it in ds.items} == {"test"}
    assert ds.items[0].path == "bird/000.png"


def test_split_folder_aliases_and_order(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "d", splits=("Testing", "validation", "training"), per_class=1)

    ds = data.scan(root)

    assert list(ds.split_dirs) == ["train", "val", "test"]
    assert [it.split for it in ds.items] == ["train"] * 3 + ["val"] * 3 + ["test"] * 3


# --- skipped files ----------------------------------------------------------------------------


def _write_broken_files(root: Path) -> dict[str, str]:
    """Add bad files to a train/test dataset; return {path in test: expected reason regex}."""
    test = root / "test"
    (test / "cat" / "empty.png").write_bytes(b"")
    png = (test / "cat" / "000.png").read_bytes()
    (test / "cat" / "broken.png").write_bytes(png[: len(png) // 2])  # a real PNG, cut short
    (test / "dog" / "notes.txt").write_text("not an image")
    (test / "dog" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    draw(2, 9).save(test / "bird" / ".hidden.png")
    (test / "README.md").write_text("beside the class folders")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # beside the split folders
    return {
        "cat/empty.png": r"empty file \(0 bytes\)",
        "cat/broken.png": r"unreadable image \(OSError: .*truncated",
        "dog/notes.txt": r"not an image",
        "dog/.DS_Store": r"hidden file",
        "bird/.hidden.png": r"hidden file",
        "README.md": r"not inside a class folder",
    }


def test_scan_lists_hidden_empty_and_non_image_files(dataset: Path) -> None:
    expected = _write_broken_files(dataset)

    ds = data.scan(dataset)

    found = {(s.split, s.path): s.reason for s in ds.skipped}
    # The truncated PNG has a good name and size: only decoding finds it (during inference).
    assert set(found) == {("test", p) for p in expected if p != "cat/broken.png"} | {
        ("", ".DS_Store")
    }
    assert ds.count("test") == 13  # the 12 good images + broken.png
    for path, reason in expected.items():
        if path != "cat/broken.png":
            assert re.search(reason, found[("test", path)])


@pytest.mark.parametrize("splits", [None, ("train", "test")], ids=["single-split", "splits"])
@pytest.mark.parametrize("name", ["metadata.csv", "metadata.parquet"])
def test_root_metadata_file_is_not_listed_as_skipped(
    tmp_path: Path, splits: tuple[str, ...] | None, name: str
) -> None:
    root = write_dataset(tmp_path / "d", splits=splits, per_class=1)
    (root / name).write_text("path,scanner\n")
    (root / "notes.txt").write_text("beside the images")  # still listed: not metadata
    where = "test" if splits is None else ""
    (root / ("test" if splits else ".") / "cat" / "metadata.csv").write_text("path\n")

    ds = data.scan(root)

    found = {(s.split, s.path) for s in ds.skipped}
    assert (where, name) not in found
    assert (where, "notes.txt") in found
    # only the root's file is the metadata: one inside a class folder is no image
    assert ("test", "cat/metadata.csv") in found


def test_cli_skips_bad_files_lists_them_and_scores_the_rest(
    dataset: Path, checkpoint: Path, runs_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    expected = _write_broken_files(dataset)

    proc = cli_inprocess(capsys, "evaluate", "--checkpoint", checkpoint, "--data", dataset)

    run = assert_cli_run(proc, runs_dir)
    assert "Traceback" not in proc.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    meta = json.loads((run / "meta.json").read_text())
    test, train = metrics["splits"]["test"], metrics["splits"]["train"]
    assert sorted(test["skipped"]) == sorted(expected)
    assert train["skipped"] == []
    reasons = {(s["split"], s["path"]): s["reason"] for s in meta["skipped"]}
    assert set(reasons) == {("test", p) for p in expected} | {("", ".DS_Store")}
    for path, reason in expected.items():
        assert re.search(reason, reasons[("test", path)]), (path, reasons[("test", path)])

    # Metrics are over the good images only, and match an independent count.
    df = pd.read_parquet(run / "predictions.parquet")
    assert (test["n"], train["n"], len(df)) == (12, 12, 24)
    assert not set(expected) & set(df.path[df.split == "test"])
    for split, report in (("test", test), ("train", train)):
        part = df[df.split == split]
        want = confusion_matrix(part.y_true, part.y_pred, labels=[0, 1, 2])
        assert report["confusion_matrix"] == want.tolist()
        assert sum(map(sum, report["confusion_matrix"])) == report["n"]


def test_a_dataset_whose_images_all_fail_to_decode_gives_an_empty_run(
    tmp_path: Path, checkpoint: Path
) -> None:
    root = write_dataset(tmp_path / "d", splits=None, per_class=1)
    for png in root.glob("*/*.png"):
        png.write_bytes(png.read_bytes()[:40])  # past the header, cut in the pixels

    run = evaluate.evaluate(checkpoint, root, device="cpu")

    report = run.metrics["splits"]["test"]
    assert (report["n"], report["accuracy"]) == (0, 0.0)
    assert sorted(report["skipped"]) == ["bird/000.png", "cat/000.png", "dog/000.png"]
    assert len(run.predictions()) == 0
    assert run.probs().shape == (0, 3)


def test_checkpoint_class_order_is_kept_and_labels_follow_it(
    tmp_path: Path, dataset: Path, model: object
) -> None:
    order = ["dog", "bird", "cat"]  # not the sorted folder order
    ckpt = save_safetensors(model, tmp_path / "m.safetensors", classlens_meta(class_names=order))

    run = evaluate.evaluate(ckpt, dataset, device="cpu")

    assert run.class_names == order == run.metrics["classes"]
    df = run.predictions()
    folder = df.path.str.split("/").str[0]
    assert (np.array(order)[df.y_true] == folder).all()
    assert [c["class"] for c in run.metrics["splits"]["test"]["per_class"]] == order


# --- unusable datasets ------------------------------------------------------------------------


def test_cli_refuses_datasets_without_images(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = tmp_path / "no-images"
    for name in SORTED_CLASSES:
        (no_images / name).mkdir(parents=True)
    (no_images / "cat" / "labels.csv").write_text("a,b\n")

    def evaluate_cli(root: Path) -> object:
        return cli_inprocess(capsys, "evaluate", "--checkpoint", checkpoint, "--data", root)

    assert_cli_error(evaluate_cli(empty), r"no class folders in .*empty: expected root/<class>/")
    assert_cli_error(
        evaluate_cli(no_images), r"no readable images in .*no-images \(1 file\(s\) skipped\)"
    )
    assert_cli_error(
        evaluate_cli(tmp_path / "nowhere"), r"dataset folder not found: .*nowhere.*--data"
    )
    with pytest.raises(ClassLensError, match=r"dataset folder not found: .*nowhere"):
        data.scan(tmp_path / "nowhere")


# --- fingerprint ------------------------------------------------------------------------------


def test_fingerprint_follows_image_bytes(dataset: Path) -> None:
    before = data.scan(dataset).fingerprint
    assert data.scan(dataset).fingerprint == before  # nothing changed

    path = dataset / "test" / "cat" / "001.png"
    pixels = np.array(Image.open(path))
    pixels[0, 0] ^= 0xFF
    Image.fromarray(pixels).save(path)
    changed = data.scan(dataset).fingerprint

    assert changed != before
    (dataset / "test" / "cat" / "001.png").rename(dataset / "test" / "dog" / "001b.png")
    assert data.scan(dataset).fingerprint not in (before, changed)  # a label changed


# --- channels ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "channels"), [("L", 3), ("RGB", 1), ("L", 1), ("RGB", 3)], ids=str
)
def test_decode_converts_to_the_model_channels(tmp_path: Path, mode: str, channels: int) -> None:
    path = tmp_path / "x.png"
    draw(1, 0, size=20, mode=mode).save(path)
    prep = Preprocessing(
        image_size=SIZE, channels=channels, mean=(0.5,) * channels, std=(0.5,) * channels
    )

    arr = data.decode(path, prep)

    assert (arr.shape, arr.dtype) == ((channels, SIZE, SIZE), np.uint8)
    if mode == "L" and channels == 3:
        assert (arr[0] == arr[1]).all() and (arr[1] == arr[2]).all()
    if mode == "RGB" and channels == 3:
        assert not (arr[0] == arr[2]).all()  # the tint survives


def test_center_crop_resize(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.fromarray(np.tile(np.arange(40, dtype=np.uint8) * 6, (20, 1))).save(path)
    prep = Preprocessing(image_size=8, channels=1, mean=(0.5,), std=(0.5,), resize="center_crop")

    arr = data.decode(path, prep)

    assert arr.shape == (1, 8, 8)
    # The crop keeps the middle of the gradient: no column from the far left or right edge.
    assert arr.min() > 60 and arr.max() < 180


@pytest.mark.parametrize(
    ("mode", "channels"), [("L", 3), ("RGB", 1)], ids=["gray->3ch", "rgb->1ch"]
)
def test_models_run_on_images_of_the_other_channel_count(
    tmp_path: Path, mode: str, channels: int
) -> None:
    root = write_dataset(tmp_path / "d", splits=None, mode=mode, per_class=2)
    meta = classlens_meta(
        preprocessing={"image_size": SIZE, "channels": channels, "mean": [0.5], "std": [0.5]}
    )
    ckpt = save_safetensors(make_model(in_channels=channels), tmp_path / "m.safetensors", meta)

    run = evaluate.evaluate(ckpt, root, device="cpu")

    assert run.metrics["splits"]["test"]["n"] == 6
    assert run.meta["preprocessing"]["channels"] == channels
    assert run.meta["preprocessing"]["mean"] == [0.5] * channels  # one value stretched per channel
