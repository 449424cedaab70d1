"""Image properties (core.images.properties): each measurement against an independent formula
(scipy's Laplacian, per-channel arithmetic), and the stacked measurement of a chunk of files
equal to measuring each file alone, in input order, unreadable files listed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from core.images import properties


def _reference(image: Image.Image) -> tuple[float, float, float, float]:
    rgb = np.asarray(image.convert("RGB")).astype(float)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    rg, yb = r - g, (r + g) / 2 - b
    colour = np.sqrt(rg.var() + yb.var()) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    # scipy's Laplacian: [1, -2, 1] in each direction; borders left out
    sharp = ndimage.laplace(luma)[1:-1, 1:-1].var() if min(luma.shape) >= 3 else 0.0
    return luma.mean() / 255, luma.std() / 255, colour, sharp


def _images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(0)
    out = {}
    for i in range(5):
        out[f"a{i}.png"] = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    for i in range(2):
        out[f"b{i}.png"] = Image.fromarray(rng.integers(0, 256, (9, 17, 3), dtype=np.uint8))
    out["grey.png"] = Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), "L")
    out["tiny.png"] = Image.fromarray(rng.integers(0, 256, (2, 2, 3), dtype=np.uint8))
    out["flat.png"] = Image.new("RGB", (32, 32), (90, 90, 90))
    out["photo.jpg"] = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return out


@pytest.mark.parametrize("name", list(_images()))
def test_measure_equals_the_formulas(name: str) -> None:
    image = _images()[name]
    np.testing.assert_allclose(properties.measure(image), _reference(image), rtol=1e-12, atol=1e-12)


def test_files_measured_in_stacks_equal_each_file_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = []
    for name, image in _images().items():
        image.save(tmp_path / name)
        paths.append(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    paths.insert(3, tmp_path / "broken.png")
    monkeypatch.setattr(properties, "BATCH_PIXELS", 32 * 32 * 2)  # stacks of 2 at 32x32
    table = properties.measure_files(paths)
    assert len(table) == len(paths)
    for path, (_, row) in zip(paths, table.iterrows(), strict=True):
        if path.name == "broken.png":
            assert not row["readable"] and np.isnan(row["brightness"])
            continue
        with Image.open(path) as img:
            want = _reference(img)
            size = img.size
        got = row[["brightness", "contrast", "colourfulness", "sharpness"]].to_numpy(float)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=path.name)
        assert (row["width"], row["height"]) == size
        assert row["file size"] == path.stat().st_size
        assert row["format"] == ("JPEG" if path.suffix == ".jpg" else "PNG")
        assert row["readable"]
    assert table.loc[[p.name == "flat.png" for p in paths], "near-blank"].all()
    assert table["near-blank"].sum() == 1
