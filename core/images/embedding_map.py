"""A run's 2-D embedding map, computed once per (method, seed) and cached in the run folder.

``run_projection`` reads the run's embeddings (core.images.embeddings: computed with the
run's model the first time, cached in ``embeddings.npy``), projects every row (all splits in
one space) with core.analysis.projection, and stores ``projection-<method>-<seed>.npy``
(float32, one row per ``run.predictions()`` row) atomically beside the run. A slice
(``Run.subset``) reads its parent's map cut to its rows, so points keep their places.
``split_clusters`` finds a split's failure clusters (core.analysis.failure_clusters) in the
same embeddings.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from core.analysis import failure_clusters, projection
from core.images import embeddings
from core.runs import Run


def cache_path(run: Run, method: str, seed: int) -> Path:
    """Return where the run's ``method`` projection for ``seed`` is cached."""
    return Path(run.path) / f"projection-{method}-{int(seed)}.npy"


def _read(path: Path, n: int) -> np.ndarray | None:
    try:
        coords = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if coords.shape != (n, 2) or coords.dtype != np.float32:
        return None
    return coords


def _write(path: Path, coords: np.ndarray) -> None:
    """Write atomically (temp file + os.replace); a read-only store is no error."""
    tmp = path.with_name(f".{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            np.save(f, coords, allow_pickle=False)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def has_cached(run: Run, method: str, seed: int) -> bool:
    """Return True when the projection is cached and matches the run's row count."""
    return _read(cache_path(run, method, seed), len(run.predictions())) is not None


def run_projection(
    run: Run, *, method: str = "pca", seed: int = 0, progress: projection.Progress | None = None
) -> np.ndarray:
    """Return the run's (n, 2) float32 map coordinates (NaN for unreadable images).

    progress: (done, total) over the embedding pass (images) and then the projection.
    Raises core.errors.ClassLensError when the run's model cannot give embeddings and
    ValueError for an unknown method or a run too large for t-SNE.
    """
    parent = getattr(run, "parent", None)
    if parent is not None:  # a slice: the parent's map, its rows
        return run_projection(parent, method=method, seed=seed, progress=progress)[run.rows]
    n = len(run.predictions())
    path = cache_path(run, method, seed)
    cached = _read(path, n)
    if cached is not None:
        return cached
    emb = embeddings.run_embeddings(run, progress=progress)
    if progress is not None:  # the projection is one step after the images
        progress(n, n + 1)
    coords = projection.project(emb, method=method, seed=seed)
    _write(path, coords)
    if progress is not None:
        progress(n + 1, n + 1)
    return coords


def split_clusters(
    run: Run,
    split: str,
    columns: Any = None,
    *,
    k: int,
    seed: int = 0,
    progress: projection.Progress | None = None,
) -> tuple[np.ndarray, list[failure_clusters.Cluster]]:
    """Return (rows, clusters) of ``split``: rows are its positions in ``run.predictions()``
    and each cluster's rows / nearest index into them, worst cluster first.

    columns: the run's slice table (core.images.columns.slice_columns) for "what distinguishes
    it", or None. The embeddings are the run's (computed the first time, see run_embeddings).
    """
    predictions = run.predictions()
    emb = embeddings.run_embeddings(run, progress=progress)
    rows = np.flatnonzero(predictions["split"].to_numpy() == split)
    labels = failure_clusters.cluster(emb[rows], k=k, seed=seed)
    table = None if columns is None else columns.iloc[rows].reset_index(drop=True)
    found = failure_clusters.failure_clusters(
        emb[rows],
        labels,
        predictions["y_true"].to_numpy()[rows],
        predictions["y_pred"].to_numpy()[rows],
        columns=table,
    )
    return rows, found
