"""Data leakage: held-out images that nearly duplicate a training image, found by pHash.

A perceptual hash (DCT-based pHash) summarises an image's low frequencies in 64 bits, so an
image and its re-encoded, slightly brightened or shifted copy differ in a few bits while two
different images differ in about 32. Test-vs-train pairs within a Hamming distance are leaks:
the model may have memorised them, and metrics without them say how much that flatters it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from core import runs
from core.analysis import metrics
from core.contracts import SplitMetrics
from core.images import gallery
from core.runs import Run

HASH_BITS = 64
HASH_SIZE = 32  # images are reduced to 32x32 grayscale before the DCT
LOW_FREQ = 8  # an 8x8 block of low frequencies gives the 64 bits
CACHE_FILE = "phash.parquet"
DEFAULT_DISTANCE = 4  # bits: small images (the 32 px digits) start to collide above ~4
Progress = Callable[[int, int], None]  # (images done, images total)

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _dct_matrix(n: int) -> np.ndarray:
    """Return the orthonormal (n, n) DCT-II matrix D, so ``D @ x`` is the DCT of a column x."""
    k, i = np.mgrid[0:n, 0:n]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d


_DCT = _dct_matrix(HASH_SIZE)


def phash(image: Image.Image) -> int:
    """Return the 64-bit perceptual hash of ``image`` as a python int.

    The image is reduced to 32x32 grayscale; of its 2-D DCT-II the 8x8 lowest frequencies
    after the DC term (rows and columns 1..8, as in phash.org's ``ph_dct_imagehash``) become
    bits: 1 where the coefficient is above their median. The first bit is the (1, 1) term.
    """
    small = image.convert("L").resize((HASH_SIZE, HASH_SIZE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float64)
    coeffs = _DCT @ pixels @ _DCT.T
    low = coeffs[1 : LOW_FREQ + 1, 1 : LOW_FREQ + 1].reshape(-1)
    bits = low > np.median(low)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def phash_files(
    paths: Sequence[str | Path], *, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return (hashes, readable): (n,) uint64 pHashes of the files and a (n,) bool mask.

    An unreadable file gets hash 0 and readable False: it is never matched, never fatal.
    progress: called as (done, total) every 64 files and at the end.
    """
    hashes = np.zeros(len(paths), dtype=np.uint64)
    readable = np.zeros(len(paths), dtype=bool)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                hashes[i] = phash(img)
            readable[i] = True
        except (OSError, ValueError, Image.DecompressionBombError):
            pass
        if progress is not None and ((i + 1) % 64 == 0 or i + 1 == len(paths)):
            progress(i + 1, len(paths))
    return hashes, readable


def hamming(a: Any, b: Any) -> np.ndarray:
    """Return the number of differing bits between uint64 hashes ``a`` and ``b`` (broadcast).

    a, b: uint64 arrays or python ints; the result has their broadcast shape, dtype int64.
    """
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0: a popcount instruction, 25x the table
        return np.bitwise_count(x).astype(np.int64)
    x = np.asarray(x)  # a 0-d input stays 0-d (ascontiguousarray would make it 1-d)
    counts = _POPCOUNT[np.ascontiguousarray(x).reshape(-1).view(np.uint8)].reshape(*x.shape, 8)
    return counts.sum(axis=-1, dtype=np.int64)


def similarity(distance: Any) -> Any:
    """Return 1 - distance / 64: 1.0 for identical hashes, about 0.5 for unrelated images."""
    return 1.0 - np.asarray(distance, dtype=np.float64) / HASH_BITS


def near_duplicates(hashes_a: Any, hashes_b: Any, *, max_distance: int) -> np.ndarray:
    """Return the (k, 3) int64 pairs (i, j, distance) with hamming(a[i], b[j]) <= max_distance.

    hashes_a: (na,) uint64, e.g. the held-out images; hashes_b: (nb,) uint64, the train images.
    Sorted by distance, then i, then j. Works in row blocks of about 4M comparisons, so a few
    thousand by a few thousand takes well under a second.
    """
    if isinstance(max_distance, bool) or not 0 <= int(max_distance) <= HASH_BITS:
        raise ValueError(f"max_distance must be an int in [0, {HASH_BITS}], got {max_distance!r}.")
    a = np.asarray(hashes_a, dtype=np.uint64).reshape(-1)
    b = np.asarray(hashes_b, dtype=np.uint64).reshape(-1)
    found = [np.empty((0, 3), dtype=np.int64)]
    block = max(1, 4_000_000 // max(1, len(b)))
    for start in range(0, len(a), block):
        dist = hamming(a[start : start + block, None], b[None, :])
        i, j = np.nonzero(dist <= max_distance)
        found.append(np.stack([i + start, j, dist[i, j]], axis=1).astype(np.int64))
    pairs = np.concatenate(found)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0], pairs[:, 2]))]


# --- the per-run cache --------------------------------------------------------------------------


def cache_path(run: Run) -> Path:
    """Return where a run's pHash cache lives: ``phash.parquet`` in the run folder."""
    return Path(run.path) / CACHE_FILE


def _read_cache(run: Run, predictions: pd.DataFrame) -> pd.DataFrame | None:
    """Return the cached hashes if readable and row for row those of ``predictions``."""
    try:
        cached = pq.read_table(cache_path(run)).to_pandas()
    except (OSError, ValueError, pa.ArrowException):
        return None
    if list(cached.columns) != ["split", "path", "hash", "readable"] or len(cached) != len(
        predictions
    ):
        return None
    same = (cached["split"].to_numpy() == predictions["split"].to_numpy()).all() and (
        cached["path"].to_numpy() == predictions["path"].to_numpy()
    ).all()
    return cached.set_axis(predictions.index) if same else None


def _write_cache(run: Run, table: pd.DataFrame) -> None:
    """Write the cache atomically; a read-only store is no error."""
    runs.write_table_atomic(cache_path(run), table)


def has_cached_hashes(run: Run) -> bool:
    """Return True when the run's pHash cache exists and matches its predictions."""
    run = getattr(run, "parent", None) or run  # a slice reads its parent's cache
    return _read_cache(run, run.predictions()) is not None


def run_hashes(run: Run, *, progress: Progress | None = None) -> pd.DataFrame:
    """Return one row per prediction row (same index): split, path, hash (uint64), readable.

    The hashes are a derived cache stored next to the run's immutable predictions, in
    ``phash.parquet``: computed once from the image files, written atomically, and
    recomputed when missing, unreadable or out of step with ``run.predictions()``.
    """
    parent = getattr(run, "parent", None)
    if parent is not None:  # a slice: the parent's hashes, its rows
        whole = run_hashes(parent, progress=progress)
        return whole.iloc[run.rows].set_axis(run.predictions().index)
    predictions = run.predictions()
    cached = _read_cache(run, predictions)
    if cached is not None:
        return cached
    files = [
        gallery.image_path(run, s, p)
        for s, p in zip(predictions["split"], predictions["path"], strict=True)
    ]
    hashes, readable = phash_files(files, progress=progress)
    table = pd.DataFrame(
        {
            "split": predictions["split"].astype(str).to_numpy(),
            "path": predictions["path"].to_numpy(),
            "hash": hashes,
            "readable": readable,
        }
    )
    _write_cache(run, table)
    return table.set_axis(predictions.index)


# --- leaks and the metrics without them ---------------------------------------------------------


PAIR_COLUMNS = (
    "row",  # index of the held-out image in run.predictions()
    "path",
    "y_true",
    "y_pred",
    "train_row",  # index of the train image in run.predictions()
    "train_path",
    "train_y_true",
    "distance",
    "similarity",
    "labels_differ",  # the two copies carry different true labels: a label error too
)


def leak_pairs(
    run: Run, hashes: pd.DataFrame, split: str, *, max_distance: int, train_split: str = "train"
) -> pd.DataFrame:
    """Return the ``split`` vs ``train_split`` image pairs within ``max_distance`` bits.

    hashes: ``run_hashes(run)``. Columns are PAIR_COLUMNS, closest pairs first; unreadable
    images are never paired.
    """
    predictions = run.predictions()
    ok = hashes["readable"].to_numpy()
    held = np.flatnonzero((predictions["split"].to_numpy() == split) & ok)
    train = np.flatnonzero((predictions["split"].to_numpy() == train_split) & ok)
    values = hashes["hash"].to_numpy(dtype=np.uint64)
    pairs = near_duplicates(values[held], values[train], max_distance=max_distance)
    return pair_table(
        run,
        held[pairs[:, 0]],
        train[pairs[:, 1]],
        distance=pairs[:, 2],
        similarity=similarity(pairs[:, 2]),
    )


def pair_table(
    run: Run, held_rows: Any, train_rows: Any, *, distance: Any, similarity: Any
) -> pd.DataFrame:
    """Return the PAIR_COLUMNS table of pairs given by positions in ``run.predictions()``.

    held_rows, train_rows: (k,) positions of each pair's held-out and train image; distance and
    similarity: (k,) values per pair, in the order wanted.
    """
    predictions = run.predictions()
    a = predictions.iloc[np.asarray(held_rows, dtype=np.int64)]
    b = predictions.iloc[np.asarray(train_rows, dtype=np.int64)]
    return pd.DataFrame(
        {
            "row": a.index.to_numpy(),
            "path": a["path"].to_numpy(),
            "y_true": a["y_true"].to_numpy(),
            "y_pred": a["y_pred"].to_numpy(),
            "train_row": b.index.to_numpy(),
            "train_path": b["path"].to_numpy(),
            "train_y_true": b["y_true"].to_numpy(),
            "distance": np.asarray(distance),
            "similarity": np.asarray(similarity),
            "labels_differ": a["y_true"].to_numpy() != b["y_true"].to_numpy(),
        },
        columns=list(PAIR_COLUMNS),
    )


def metrics_without(run: Run, split: str, excluded_paths: Iterable[str]) -> SplitMetrics:
    """Return ``split``'s metrics (core.analysis.metrics.split_report) without the excluded images.

    excluded_paths: paths of ``split``'s rows (as in ``run.predictions()["path"]``) to leave
    out, e.g. the held-out side of the leak pairs. Unknown paths are ignored.
    """
    predictions = run.predictions()
    excluded = set(excluded_paths)
    keep = (predictions["split"].to_numpy() == split) & ~predictions["path"].isin(excluded)
    keep = np.asarray(keep)
    return metrics.split_report(
        predictions["y_true"].to_numpy()[keep],
        predictions["y_pred"].to_numpy()[keep],
        class_names=run.class_names,
        probs=run.probs()[keep],
        skipped=run.metrics["splits"][split]["skipped"] if split in run.metrics["splits"] else (),
    )
