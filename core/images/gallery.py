"""Image galleries over a run: which rows to show, in what order, and where their pixels are.

Rows are those of ``run.predictions()`` and keep its index, so a row always leads back to its
probabilities (``run.probs()[index]``) and to its file (:func:`image_path`). Only the rows of
the visible page are ever decoded (:func:`thumbnail`).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from core.engine.data import SPLIT_ALIASES
from core.runs import Run

SortKey = Literal["confidence", "loss"]
SORT_LABELS: dict[str, str] = {
    "confidence": "Most confidently wrong first",
    "loss": "Highest loss first",
}
PAGE_SIZES = (24, 48, 96)
THUMB_PX = 128  # tiny images (32 px digits) are enlarged to about this, nearest-neighbour


def split_dir(run: Run, split: str) -> Path:
    """Return the folder holding ``split``'s class folders for a run's dataset.

    Uses ``meta["dataset"]["split_dirs"]`` when the run stores it; otherwise resolves it as
    the dataset scan does: the root's child named like the split (``SPLIT_ALIASES``,
    case-insensitive), or the root itself for a single-split dataset (root/<class>/<image>).
    """
    dataset = run.meta["dataset"]
    root = Path(dataset["root"])
    stored = dataset.get("split_dirs") or {}
    if split in stored:
        return Path(stored[split])
    if not root.is_dir():
        return root / split  # the dataset moved away: the files will read as missing
    children = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    found: dict[str, Path] = {}
    for name, aliases in SPLIT_ALIASES.items():
        match = next((children[a] for a in aliases if a in children), None)  # first alias wins
        if match is not None:
            found[name] = match
    if not found:
        return root
    if split not in found:
        raise ValueError(
            f"split {split!r} has no folder under {root} (found: {', '.join(sorted(found))}). "
            "Re-evaluate the run if the dataset changed."
        )
    return found[split]


def image_path(run: Run, split: str, rel_path: str) -> Path:
    """Return the image file of a prediction row (``rel_path`` relative to its split folder)."""
    return split_dir(run, split) / rel_path


def filter_mistakes(
    predictions: pd.DataFrame,
    *,
    splits: Collection[str] | None = None,
    true_classes: Collection[int] | None = None,
    pred_classes: Collection[int] | None = None,
) -> pd.DataFrame:
    """Return the misclassified rows (y_true != y_pred) matching every given filter.

    splits, true_classes, pred_classes: allowed values; None or empty means all. The original
    index is kept.
    """
    keep = predictions["y_true"].to_numpy() != predictions["y_pred"].to_numpy()
    for column, allowed in (("split", splits), ("y_true", true_classes), ("y_pred", pred_classes)):
        if allowed:
            keep &= predictions[column].isin(list(allowed)).to_numpy()
    return predictions[keep]


def sort_rows(rows: pd.DataFrame, by: SortKey = "confidence") -> pd.DataFrame:
    """Return ``rows`` with the highest ``by`` (confidence or loss) first; ties keep row order."""
    if by not in SORT_LABELS:
        raise ValueError(f"by must be one of {', '.join(SORT_LABELS)}, got {by!r}.")
    return rows.sort_values(by, ascending=False, kind="stable")


def page_count(n_rows: int, page_size: int) -> int:
    """Return how many pages ``n_rows`` fill (at least 1, so an empty gallery has a page)."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}.")
    return max(1, math.ceil(n_rows / page_size))


def paginate(rows: pd.DataFrame, *, page: int, page_size: int) -> pd.DataFrame:
    """Return page ``page`` (1-based, clamped to the valid range) of ``rows``."""
    page = min(max(1, page), page_count(len(rows), page_size))
    return rows.iloc[(page - 1) * page_size : page * page_size]


def top_k(probs: Any, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Return (classes, probabilities), each (n, k), of each row's k highest probabilities,
    highest first; equal probabilities rank the lower class index first.

    probs: (n, n_classes) scores; k is capped at n_classes.
    """
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (n, n_classes), got shape {probs.shape}.")
    k = min(k, probs.shape[1])
    idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(probs, idx, axis=1)


def thumbnail(path: str | Path, *, size: int = THUMB_PX) -> np.ndarray:
    """Return the image at ``path`` as a uint8 (h, w, 3) array about ``size`` pixels wide.

    Small images are enlarged by a whole factor, nearest-neighbour, so digits stay crisp;
    large ones are shrunk to fit ``size`` x ``size``. Raises OSError when unreadable.
    """
    with Image.open(path) as opened:
        img = ImageOps.exif_transpose(opened).convert("RGB")
    longest = max(img.size)
    if longest < size:
        factor = max(1, size // longest)
        img = img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
    elif longest > size:
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img)
