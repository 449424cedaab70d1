"""Datasets: discover an ImageFolder tree, fingerprint it, decode images for a model.

Layouts: ``root/<split>/<class>/<image>`` with splits among train/val/test, or
``root/<class>/<image>`` read as a single ``test`` split. Hidden, empty and non-image files
are skipped and listed with the reason, never fatal and never silent; images that fail to
decode are found during inference and listed the same way.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core import paths
from core.engine import metadata
from core.engine.preprocessing import Preprocessing
from core.errors import ClassLensError
from core.hosting import safety
from core.hosting.settings import current

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".gif", ".webp", ".avif", ".tif", ".tiff"}
    | {".ppm", ".pgm"}
)
# Folder names accepted for each split; the key is the name used everywhere else.
SPLIT_ALIASES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}
SPLIT_ORDER = tuple(SPLIT_ALIASES)


@dataclass(frozen=True)
class Item:
    """One image of a dataset."""

    split: str  # train / val / test
    path: str  # relative to the split folder, e.g. "cat/001.png" (the root for one split)
    label: int  # index into Dataset.class_names


@dataclass(frozen=True)
class Skipped:
    """A file left out, and why."""

    split: str  # the split it sat in, or "" for files beside the split folders
    path: str  # relative like Item.path
    reason: str


@dataclass(frozen=True)
class Dataset:
    """An image folder, scanned: what will be evaluated and what was left out."""

    root: Path
    split_dirs: dict[str, Path]  # split -> folder holding its class folders
    class_names: tuple[str, ...]  # sorted class folder names
    items: tuple[Item, ...]
    skipped: tuple[Skipped, ...]
    fingerprint: str  # changes when any image, name or label changes

    def abspath(self, item: Item) -> Path:
        """Return the file behind ``item``."""
        return self.split_dirs[item.split] / item.path

    def count(self, split: str) -> int:
        """Return the number of images in ``split``."""
        return sum(1 for it in self.items if it.split == split)


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__MACOSX")


def _split_dirs(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    children = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for split, aliases in SPLIT_ALIASES.items():
        for alias in aliases:
            if alias in children:
                found[split] = children[alias]
                break
    return found or {"test": root}


def _scan_split(split: str, folder: Path, skipped: list[Skipped]) -> dict[str, list[str]]:
    """Return {class: [relative image paths]} for one split folder, recording skips."""
    by_class: dict[str, list[str]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            if _is_hidden(entry.name):
                skipped.append(Skipped(split, entry.name + "/", "hidden folder"))
                continue
            by_class[entry.name] = []
            for dirpath, dirnames, filenames in os.walk(entry):
                dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
                for name in sorted(filenames):
                    rel = os.path.relpath(os.path.join(dirpath, name), folder)
                    reason = _reject_reason(Path(dirpath) / name)
                    if reason:
                        skipped.append(Skipped(split, rel.replace(os.sep, "/"), reason))
                    else:
                        by_class[entry.name].append(rel.replace(os.sep, "/"))
        else:
            why = "hidden file" if _is_hidden(entry.name) else "not inside a class folder"
            skipped.append(Skipped(split, entry.name, why))
    return by_class


def _reject_reason(path: Path) -> str | None:
    if _is_hidden(path.name):
        return "hidden file"
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return "not an image (unknown extension)"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    roots = _roots(
        os.environ.get(ROOTS_ENV), os.environ.get("CLASSLENS_HOSTED"), str(paths.cache_dir())
    )
    if roots is not None:  # a symlink inside an allowed folder must not lead out of it
        real = Path(os.path.realpath(path))
        if not any(real.is_relative_to(r) for r in roots):
            return "links outside the allowed folders (not read)"
    # From the header only: a decompression bomb is listed here and never decoded. Other
    # damage is found by decoding, during inference, and listed there.
    return safety.pixel_problem(path, _max_pixels(os.environ.get(MAX_PIXELS_ENV)))


MAX_PIXELS_ENV = "CLASSLENS_MAX_IMAGE_PIXELS"
ROOTS_ENV = "CLASSLENS_ALLOWED_ROOTS"


@lru_cache(maxsize=4)
def _roots(raw: str | None, hosted: str | None, cache: str) -> tuple[Path, ...] | None:
    """Return the folders dataset files must resolve into when hosted or roots are set (the
    allowed roots, the cache with extracted zips, the bundled sample), else None: anywhere.
    Keyed by the env values, so settings are read once per scan, not per file."""
    settings = current()
    if not settings.hosted and not settings.allowed_roots:
        return None
    sample = Path(__file__).resolve().parents[2] / "sample_data"
    return (*settings.allowed_roots, Path(os.path.realpath(cache)), sample)


@lru_cache(maxsize=4)
def _max_pixels(raw: str | None) -> int:
    """Return the pixel limit (keyed by its env value: settings are read once, not per file)."""
    return current().max_image_pixels


def scan(root: str | Path) -> Dataset:
    """Return the dataset under ``root``: its splits, classes, images and skipped files."""
    root = Path(root)
    if not root.is_dir():
        raise ClassLensError(f"dataset folder not found: {root}. Check the path passed to --data.")
    split_dirs = _split_dirs(root)
    skipped: list[Skipped] = []
    if split_dirs != {"test": root}:  # files and folders beside the split folders
        used = set(split_dirs.values())
        skipped += [
            Skipped("", p.name + ("/" if p.is_dir() else ""), "not inside a split folder")
            for p in sorted(root.iterdir())
            if p not in used
        ]
    per_split = {s: _scan_split(s, d, skipped) for s, d in split_dirs.items()}
    # The root's metadata file is read with the run (core.engine.metadata), not skipped.
    top = "test" if split_dirs == {"test": root} else ""
    skipped = [s for s in skipped if not (s.split == top and s.path in metadata.FILE_NAMES)]
    class_names = tuple(sorted({c for classes in per_split.values() for c in classes}))
    if not class_names:
        raise ClassLensError(
            f"no class folders in {root}: expected root/<class>/<image> or "
            "root/<split>/<class>/<image> with splits among train, val, test."
        )
    index = {c: i for i, c in enumerate(class_names)}
    items = tuple(
        Item(split, path, index[cls])
        for split in SPLIT_ORDER
        if split in per_split
        for cls, paths in sorted(per_split[split].items())
        for path in paths
    )
    if not items:
        raise ClassLensError(
            f"no readable images in {root} ({len(skipped)} file(s) skipped). Image files "
            f"must end in one of {', '.join(sorted(IMAGE_EXTENSIONS))}."
        )
    fp = fingerprint(items, split_dirs)
    return Dataset(root, split_dirs, class_names, items, tuple(skipped), fp)


def fingerprint(items: tuple[Item, ...], split_dirs: dict[str, Path]) -> str:
    """Return a hash of every image's split, path, label and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for it in items:
        h.update(f"{it.split}\0{it.path}\0{it.label}\0".encode())
        with open(split_dirs[it.split] / it.path, "rb") as f:
            h.update(hashlib.blake2b(f.read(), digest_size=16).digest())
    return h.hexdigest()


def decode(
    path: Path,
    prep: Preprocessing,
    *,
    corrupt: Callable[[Image.Image], Image.Image] | None = None,
) -> np.ndarray:
    """Return the image at ``path`` as uint8 (channels, size, size), or raise OSError/ValueError.

    Resizing happens here, on uint8 pixels; normalising happens on the device (inference).
    ``corrupt`` (core.engine.corruptions) changes the decoded "L"/"RGB" image before any
    resizing: what a worse camera would have produced.
    """
    limit = _max_pixels(os.environ.get(MAX_PIXELS_ENV))
    with warnings.catch_warnings():
        # Our own limit is checked before any decoding; PIL's bomb warning (for limits raised
        # past its own) must not turn into an error under -W error.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img: Image.Image = Image.open(path)
    with img:
        if img.width * img.height > limit:
            raise ValueError(f"image too large ({img.width}x{img.height}); not decoded")
        img.load()  # forces a full decode: truncated files fail here, not later
        img = to_mode(img, prep.channels)
    if corrupt is not None:
        img = corrupt(img)
    size = prep.image_size
    if prep.backend == "hf_torchvision":
        return _hf_torchvision(img, prep)
    resample = _RESAMPLE[prep.interpolation]
    if prep.resize == "center_crop":
        img = _center_crop(img, size, prep.crop_pct, resample)
    elif img.size != (size, size):
        img = img.resize((size, size), resample)
    arr = np.array(img, dtype=np.uint8)  # a writable copy: torch.from_numpy needs one
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Return ``img`` as 8-bit "L" (channels 1) or "RGB" (channels 3), scaling high bit depths.

    PIL's own ``convert`` clips 16-bit and 32-bit pixels to 0..255 (a 16-bit PNG turns white);
    here they are scaled as torchvision's ``to_dtype(..., scale=True)`` does (16-bit: the high
    byte). "I" images (no declared depth) above 255 are read as 16-bit; float "F" images in
    [0, 1] are scaled by 255, others clipped. 8-bit modes convert as torchvision's loader does.
    """
    target = "L" if channels == 1 else "RGB"
    if img.mode.startswith("I;16") or img.mode == "I":
        arr: np.ndarray = np.asarray(img).astype(np.int64)
        if img.mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr = np.clip(arr, 0, 65535) >> 8
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        if arr.size and arr.min() >= 0.0 and arr.max() <= 1.0:
            arr = arr * 255.0
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    return img if img.mode == target else img.convert(target)


_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


def _center_crop(
    img: Image.Image,
    size: int,
    crop_pct: float | None = None,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> Image.Image:
    """Return torchvision's ``Resize(round(size / 0.875))`` then ``CenterCrop(size)`` of ``img``
    (with ``crop_pct``: timm's eval transform, ``Resize(floor(size / crop_pct))`` first).

    Exactly its arithmetic: the shorter side becomes ``short``, the longer one is truncated
    (``int``), the crop offsets are ``int(round(...))``; PIL's resize antialiases.
    """
    # >= size: the crop never needs torchvision's padding
    short = round(size / 0.875) if crop_pct is None else math.floor(size / crop_pct)
    w, h = img.size
    img = img.resize(
        (short, int(short * h / w)) if w <= h else (int(short * w / h), short), resample
    )  # PIL returns a copy when the size is already right, as torchvision's Resize does
    left = int(round((img.width - size) / 2.0))
    top = int(round((img.height - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def _hf_torchvision(img: Image.Image, prep: Preprocessing) -> np.ndarray:
    """Return (channels, size, size) uint8 as transformers' torchvision image-processor backend
    makes it: ``tvF.resize`` of the uint8 tensor (antialiased); with center_crop the shorter
    side to ``int(size / crop_pct)``, the longer truncated, crop offsets floored."""
    from torchvision.transforms.v2 import functional as tvF

    arr = np.array(img, dtype=np.uint8)
    t = torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())
    mode = getattr(tvF.InterpolationMode, prep.interpolation.upper())
    size = prep.image_size
    if prep.resize != "center_crop":
        return tvF.resize(t, [size, size], interpolation=mode, antialias=True).numpy()
    short = int(size / (prep.crop_pct or 0.875))
    h, w = t.shape[1:]
    new = [int(short * h / w), short] if w <= h else [short, int(short * w / h)]
    t = tvF.resize(t, new, interpolation=mode, antialias=True)
    top, left = int((t.shape[1] - size) / 2.0), int((t.shape[2] - size) / 2.0)
    return t[:, top : top + size, left : left + size].numpy()


class ImageDataset(torch.utils.data.Dataset):
    """Decodes dataset items for a DataLoader; a file that fails yields ok=False, not an error."""

    def __init__(
        self,
        paths: list[Path],
        prep: Preprocessing,
        corrupt: Callable[[Image.Image, int], Image.Image] | None = None,
    ) -> None:
        self.paths, self.prep = paths, prep
        self.corrupt = corrupt  # (image, position) -> image; picklable (loader workers)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str, str]:
        """Return (uint8 pixels, i, why it could not be decoded or "", a warning or "")."""
        try:
            fn = self.corrupt
            arr = decode(self.paths[i], self.prep, corrupt=None if fn is None else _at(fn, i))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            blank = torch.zeros((self.prep.channels, self.prep.image_size, self.prep.image_size))
            why = f"unreadable image ({exc.__class__.__name__}: {exc})"
            return blank.to(torch.uint8), i, why, ""
        return torch.from_numpy(arr), i, "", blank_warning(arr)


def _at(
    fn: Callable[[Image.Image, int], Image.Image], i: int
) -> Callable[[Image.Image], Image.Image]:
    return lambda img: fn(img, i)


def blank_warning(arr: np.ndarray) -> str:
    """Return a warning when decoded pixels are all one value (else ""): a blank image, or one
    whose mode or bit depth did not convert as its author meant."""
    if arr.size and arr.min() == arr.max():
        return (
            f"blank after conversion (every pixel is {int(arr.flat[0])}): check the image's "
            "mode and bit depth"
        )
    return ""
