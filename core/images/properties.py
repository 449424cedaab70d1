"""Image properties per prediction row: brightness, contrast, colourfulness, sharpness, size.

Computed once per run from the image files and stored beside the run as
``properties.parquet`` (a derived cache, like ``phash.parquet``). Each image is decoded with
PIL and measured with whole-array numpy operations (no per-pixel Python):

- brightness: mean luma (ITU-R 601 weights) in [0, 1];
- contrast: standard deviation of luma in [0, 0.5];
- colourfulness: Hasler & Suesstrunk (2003), ``sqrt(sd_rg^2 + sd_yb^2) + 0.3 *
  sqrt(mean_rg^2 + mean_yb^2)`` on 0..255 channels (0 for grey images);
- sharpness: variance of the 4-neighbour Laplacian of luma on 0..255 (low = blurred);
- width, height (pixels), aspect ratio (width / height), file size (bytes), format (PNG, ...);
- near-blank: contrast below ``NEAR_BLANK_CONTRAST`` (a blank or almost uniform image).

An unreadable file gets NaN measurements and ``readable`` False: listed, never fatal.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from core import runs
from core.images import gallery

CACHE_FILE = "properties.parquet"
NEAR_BLANK_CONTRAST = 0.02  # luma std below 2% of full scale: nothing to see
LUMA = np.array([0.299, 0.587, 0.114])
NUMERIC = ("brightness", "contrast", "colourfulness", "sharpness", "width", "height")
COLUMNS = (*NUMERIC, "aspect ratio", "file size", "format", "near-blank")
Progress = Callable[[int, int], None]  # (images done, images total)
CHUNK = 256  # files per worker task
_MAX_PIXELS = 16_000_000  # larger images are measured on a thumbnail of this many pixels


def measure(image: Image.Image) -> tuple[float, float, float, float]:
    """Return (brightness, contrast, colourfulness, sharpness) of one decoded image."""
    b, c, col, sharp = measure_many(rgb_pixels(image)[None])[0]
    return float(b), float(c), float(col), float(sharp)


def rgb_pixels(image: Image.Image) -> np.ndarray:
    """Return the (h, w, 3) uint8 RGB pixels measured for ``image`` (a thumbnail of at most
    4000 px a side when it has more than ``_MAX_PIXELS``)."""
    if image.width * image.height > _MAX_PIXELS:
        image = image.copy()
        image.thumbnail((4000, 4000))
    return np.asarray(image.convert("RGB"))


def measure_many(rgb_u8: np.ndarray) -> np.ndarray:
    """Return the (b, 4) brightness, contrast, colourfulness, sharpness of a stack of b
    same-size images, (b, h, w, 3) uint8 RGB: whole-array numpy per stack, so small images
    do not pay a dozen numpy calls each (per-call overhead was half the cost at 32x32)."""
    rgb = rgb_u8.astype(np.float64)  # 0..255
    luma = rgb @ LUMA  # (b, h, w)
    px = (1, 2)
    brightness = luma.mean(axis=px) / 255.0
    contrast = luma.std(axis=px) / 255.0
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    colourfulness = np.hypot(rg.std(axis=px), yb.std(axis=px)) + 0.3 * np.hypot(
        rg.mean(axis=px), yb.mean(axis=px)
    )
    return np.stack([brightness, contrast, colourfulness, laplacian_variance(luma)], axis=1)


def laplacian_variance(luma: np.ndarray) -> np.ndarray:
    """Return the variance of the 4-neighbour Laplacian over the interior pixels of each
    (b, h, w) luma image ((b,) zeros when smaller than 3x3)."""
    if luma.shape[1] < 3 or luma.shape[2] < 3:
        return np.zeros(luma.shape[0])
    lap = (
        luma[:, :-2, 1:-1]
        + luma[:, 2:, 1:-1]
        + luma[:, 1:-1, :-2]
        + luma[:, 1:-1, 2:]
        - 4 * luma[:, 1:-1, 1:-1]
    )
    return lap.var(axis=(1, 2))


_UNREADABLE = (np.nan,) * 6 + (np.nan, "", False)
BATCH_PIXELS = 1 << 20  # pixels measured as one stack (~50 MB of float64 working arrays)


def _read(path: str) -> tuple[np.ndarray, tuple[Any, ...]] | None:
    """Return (RGB pixels, (width, height, file size, format)) of one file, None if unreadable."""
    try:
        size = os.path.getsize(path)
        with Image.open(path) as img:
            fmt = img.format or ""
            width, height = img.size
            img.draft("RGB", img.size)  # no-op except JPEG; keeps full resolution
            return rgb_pixels(img), (width, height, size, fmt)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None


def _chunk(paths: Sequence[str]) -> list[tuple[Any, ...]]:
    """Return one row per path: the 4 measurements, width, height, size, format, readable;
    same-size images measured together in stacks of up to BATCH_PIXELS pixels."""
    rows: list[tuple[Any, ...]] = [_UNREADABLE] * len(paths)
    by_shape: dict[tuple[int, ...], list[tuple[int, np.ndarray, tuple[Any, ...]]]] = {}
    for i, path in enumerate(paths):
        read = _read(path)
        if read is not None:
            by_shape.setdefault(read[0].shape, []).append((i, *read))
    for shape, items in by_shape.items():
        step = max(1, BATCH_PIXELS // max(1, shape[0] * shape[1]))
        for start in range(0, len(items), step):
            part = items[start : start + step]
            values = measure_many(np.stack([rgb for _, rgb, _ in part]))
            for (i, _, info), v in zip(part, values, strict=True):
                rows[i] = (*(float(x) for x in v), *info, True)
    return rows


def measure_files(
    paths: Sequence[str | Path], *, workers: int = 0, progress: Progress | None = None
) -> pd.DataFrame:
    """Return one row of properties per file (``COLUMNS`` plus ``readable``), in input order.

    workers: processes decoding in parallel (0 = in this process).
    """
    names = [str(p) for p in paths]
    chunks = [names[i : i + CHUNK] for i in range(0, len(names), CHUNK)]
    rows: list[tuple[Any, ...]] = []
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(_chunk, chunks):
                rows.extend(part)
                if progress is not None:
                    progress(len(rows), len(names))
    else:
        for chunk in chunks:
            rows.extend(_chunk(chunk))
            if progress is not None:
                progress(len(rows), len(names))
    raw = pd.DataFrame(
        rows,
        columns=[*NUMERIC, "file size", "format", "readable"],
    )
    width = raw["width"].astype(float)
    height = raw["height"].astype(float)
    out = pd.DataFrame(
        {
            "brightness": raw["brightness"].astype(float),
            "contrast": raw["contrast"].astype(float),
            "colourfulness": raw["colourfulness"].astype(float),
            "sharpness": raw["sharpness"].astype(float),
            "width": width,
            "height": height,
            "aspect ratio": width / height,
            "file size": raw["file size"].astype(float),
            "format": raw["format"].astype(str),
            "near-blank": (raw["contrast"].astype(float) < NEAR_BLANK_CONTRAST)
            & raw["readable"].astype(bool),
            "readable": raw["readable"].astype(bool),
        }
    )
    return out


# --- the per-run cache --------------------------------------------------------------------------


def cache_path(run: runs.Run) -> Path:
    """Return where a run's properties cache lives: ``properties.parquet`` in the run folder."""
    return Path(run.path) / CACHE_FILE


def _keys(split: Any, path: Any) -> pd.Index:
    return pd.Index(pd.Series(split).astype(str).to_numpy() + "\0" + pd.Series(path).to_numpy())


def _read_table(run: runs.Run) -> pd.DataFrame | None:
    try:
        cached = pq.read_table(cache_path(run)).to_pandas()
    except (OSError, ValueError, pa.ArrowException):
        return None
    if list(cached.columns) != ["split", "path", *COLUMNS, "readable"]:
        return None
    return cached


def _read_cache(run: runs.Run, predictions: pd.DataFrame) -> pd.DataFrame | None:
    """Return the cached rows of ``predictions`` (by split and path, in its order and index),
    or None when the cache is missing, unreadable or lacks some of them (e.g. a run subset
    reads its parent's cache)."""
    cached = _read_table(run)
    if cached is None:
        return None
    wanted = _keys(predictions["split"], predictions["path"])
    have = _keys(cached["split"], cached["path"])
    if len(have) == len(wanted) and (have == wanted).all():
        return cached.set_axis(predictions.index)
    if not have.is_unique:
        return None
    pos = have.get_indexer(wanted)
    if (pos < 0).any():
        return None
    return cached.iloc[pos].set_axis(predictions.index)


def _write_cache(run: runs.Run, table: pd.DataFrame) -> None:
    """Write the cache atomically; a read-only store is no error."""
    runs.write_table_atomic(cache_path(run), table)


def has_cached_properties(run: runs.Run) -> bool:
    """Return True when the run's properties cache exists and matches its predictions."""
    run = getattr(run, "parent", None) or run  # a slice (Run.subset) reads its parent's cache
    return _read_cache(run, run.predictions()) is not None


def run_properties(
    run: runs.Run, *, workers: int | None = None, progress: Progress | None = None
) -> pd.DataFrame:
    """Return one row per prediction row (same index): split, path, ``COLUMNS``, readable.

    Read from ``properties.parquet`` when it matches ``run.predictions()``, else measured
    from the image files (``workers`` processes; default: up to 4 when there are many files)
    and written there atomically.
    """
    if run.parent is not None:  # a slice: the parent's rows, never rewritten
        whole = run_properties(run.parent, workers=workers, progress=progress)
        return whole.iloc[run.rows].set_axis(run.predictions().index)
    predictions = run.predictions()
    cached = _read_cache(run, predictions)
    if cached is not None:
        return cached
    files = [
        gallery.image_path(run, s, p)
        for s, p in zip(predictions["split"], predictions["path"], strict=True)
    ]
    if workers is None:
        workers = min(4, os.cpu_count() or 1) if len(files) > 4 * CHUNK else 0
    props = measure_files(files, workers=workers, progress=progress)
    fresh = pd.concat(
        [
            pd.DataFrame(
                {
                    "split": predictions["split"].astype(str).to_numpy(),
                    "path": predictions["path"].to_numpy(),
                }
            ),
            props,
        ],
        axis=1,
    )
    old = _read_table(run)
    if old is not None and len(old) > len(fresh):  # a subset: add to the cache, never shrink it
        table = pd.concat([old, fresh], ignore_index=True)
        table = table[~_keys(table["split"], table["path"]).duplicated(keep="last")]
    else:
        table = fresh
    _write_cache(run, table)
    return fresh.set_axis(predictions.index)
