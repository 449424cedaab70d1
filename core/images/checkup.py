"""The health summary's inputs, read from a stored run: core.analysis.health stays pure, this reads.

Cheap inputs (calibration bins, suspicious labels) come from the predictions. Leakage by pHash
reads the run's ``phash.parquet`` and hashes the images only when asked (a small run is
hashed on open: AUTO_HASH_MAX); leakage by embeddings only reads ``embeddings.npy``, never runs
the model. The Overview caches each of these per run; the HTML report calls
:func:`run_summary`, so both show the same checklist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from core.analysis import calibration, failure_clusters, health, provenance, slices, suspicious
from core.analysis.diagnostics import Thresholds
from core.images import leakage
from core.runs import Run

# Hash on open up to this many images: ~0.4 ms an image on a 2-core box (the 1,803 sample
# images in 0.7 s), so ~2 s at most; a larger run waits for a button (or the Leakage page).
AUTO_HASH_MAX = 5_000


def reliability(run: Run, split: str) -> calibration.Reliability:
    """Return the top-label reliability bins of ``split`` (core.analysis.calibration.top_label)."""
    p = run.predictions()
    rows = p[p["split"] == split]
    return calibration.top_label(rows["y_true"], rows["y_pred"], rows["confidence"])


def suspicious_count(run: Run, split: str) -> int:
    """Return how many ``split`` labels core.analysis.suspicious.suspicious_labels disputes."""
    table = suspicious.suspicious_labels(
        run.predictions(), run.probs(), class_names=run.class_names, splits=[split]
    )
    return len(table)


def _finding(run: Run, pairs: Any, split: str, method: str, readable: Any) -> health.LeakFinding:
    """Return the finding of ``pairs``; readable: (n,) bool per prediction row."""
    after = leakage.metrics_without(run, split, set(pairs["path"]))
    before = run.metrics["splits"][split]
    in_split = run.predictions()["split"].to_numpy() == split
    unread = int((in_split & ~np.asarray(readable, dtype=bool)).sum())
    return health.leak_finding(pairs, before, after, split=split, method=method, unread=unread)


def hashes_ready(run: Run) -> bool:
    """Return True when pixel leakage is cheap now: the pHash cache exists or the run is small."""
    return leakage.cache_path(run).exists() or len(run.predictions()) <= AUTO_HASH_MAX


def pixel_leak(
    run: Run, split: str, *, progress: leakage.Progress | None = None
) -> health.LeakFinding:
    """Return the pHash leakage finding of held-out ``split`` (hashing the images if needed)."""
    d = leakage.DEFAULT_DISTANCE
    hashes = leakage.run_hashes(run, progress=progress)
    pairs = leakage.leak_pairs(run, hashes, split, max_distance=d)
    return _finding(run, pairs, split, f"pHash within {d} bits", hashes["readable"].to_numpy())


def embedding_leak(run: Run, split: str) -> health.LeakFinding | None:
    """Return the embedding leakage finding of held-out ``split``, or None when the run's
    embeddings were never computed (this never runs the model)."""
    from core.images import embeddings  # torch: imported only here

    if not embeddings.has_cached_embeddings(run):
        return None
    s = embeddings.DEFAULT_SIMILARITY
    emb = embeddings.run_embeddings(run)
    pairs = embeddings.embedding_pairs(run, emb, split, min_similarity=s)
    method = f"embedding cosine similarity at least {s:g}"
    return _finding(run, pairs, split, method, embeddings.readable(emb))


def no_embeddings(run: Run) -> str | None:
    """Return why this run's model cannot give embeddings (its checkpoint format), or None."""
    from core.images import gradcam

    fmt = run.meta["checkpoint"].get("format")
    if fmt in gradcam.NATIVE_FORMATS:
        return None
    return (
        f"Model embeddings need the model's layers; a {fmt} checkpoint hides them. The pixel "
        "check above still applies."
    )


def no_leakage(run: Run, split: str) -> str | None:
    """Return why leakage cannot be judged on this run (no train or held-out split), or None."""
    if health.held_out_split(run.splits, split) is not None:
        return None
    return (
        "Leakage needs a train split and a test or val split; this run has "
        f"{', '.join(run.splits) or 'none'}."
    )


def weak_segments(
    run: Run, split: str, *, measure: bool = False, progress: Any = None
) -> slices.Search:
    """Return the weak-segment search on ``split`` over the slice table: metadata, classes and
    subfolders always; image properties when already measured, or ``measure`` (reads every
    image once, reporting (done, total) to ``progress``)."""
    from core.images import columns, properties

    with_props = measure or properties.has_cached_properties(run)
    df = columns.slice_columns(run, with_properties=with_props, progress=progress)
    return slices.weak_segments(df, columns.column_kinds(df), split=split)


CLUSTER_MAX = 20_000  # a split larger than this is clustered on its page, not on Overview


def no_clusters(run: Run) -> str | None:
    """Return why this run cannot have failure clusters (its checkpoint hides its layers)."""
    if no_embeddings(run) is None:
        return None
    fmt = run.meta["checkpoint"].get("format")
    return f"Failure clusters need the model's embeddings; a {fmt} checkpoint hides its layers."


def worst_cluster(run: Run, split: str) -> failure_clusters.Cluster | None:
    """Return the worst failure cluster of ``split`` (core.analysis.failure_clusters, default
    k, seed 0, as the Failure clusters page), or None when the run's embeddings were never
    computed or the split is larger than CLUSTER_MAX (this never runs the model)."""
    from core.images import embeddings

    rows = np.flatnonzero(run.predictions()["split"].to_numpy() == split)
    if not len(rows) or len(rows) > CLUSTER_MAX or not embeddings.has_cached_embeddings(run):
        return None
    emb = embeddings.run_embeddings(run)[rows]
    p = run.predictions()
    k = failure_clusters.default_k(len(rows), len(run.class_names))
    labels = failure_clusters.cluster(emb, k=k, seed=0)
    y_true, y_pred = p["y_true"].to_numpy()[rows], p["y_pred"].to_numpy()[rows]
    found = failure_clusters.failure_clusters(emb, labels, y_true, y_pred)
    return found[0] if found else None


Get = Callable[[Run, str], Any]  # (run, split) -> one input of the summary


@dataclass(frozen=True)
class Inputs:
    """Where :func:`run_summary` reads each input: straight from the run (the HTML report) or
    through the Overview's per-server caches (ui.health)."""

    reliability: Get = reliability
    suspicious: Get = suspicious_count
    pixel_leak: Get = pixel_leak
    embedding_leak: Get = embedding_leak  # None when the embeddings were never computed
    segments: Get = weak_segments
    worst_cluster: Get = worst_cluster
    # what no cluster reads as: False leaves the line out (the report: only when the
    # embeddings exist), None says "not computed yet" (the Overview, which offers to compute)
    no_cluster: Literal[False] | None = False


def run_summary(
    run: Run,
    split: str,
    t: Thresholds = Thresholds(),
    *,
    inputs: Inputs = Inputs(),
    embedding_error: str | None = None,
) -> health.Summary:
    """Return the health summary of ``split`` with every input that is cheap now: pixel
    leakage when :func:`hashes_ready`, embedding leakage when its cache exists.

    inputs: the getters (cached ones on the Overview). embedding_error: why computing the
    embeddings failed in this session, if it did (the line then says so).
    """
    held = health.held_out_split(run.splits, split)
    unavailable = no_leakage(run, split)
    leak = inputs.pixel_leak(run, held) if held and hashes_ready(run) else None
    emb_unavailable = unavailable or no_embeddings(run) or embedding_error
    emb = inputs.embedding_leak(run, held) if held and emb_unavailable is None else None
    n = run.metrics["splits"][split]["n"]
    cluster = (inputs.worst_cluster(run, split) or inputs.no_cluster) if n else inputs.no_cluster
    return health.summary(
        run.metrics,
        run.meta,
        split,
        t,
        reliability=inputs.reliability(run, split) if n else None,
        suspicious=inputs.suspicious(run, split),
        leak=leak,
        leak_unavailable=unavailable,
        embedding_leak=emb,
        embedding_unavailable=emb_unavailable,
        preprocessing_warning=provenance.preprocessing_warning(run.meta, run.metrics),
        segments=inputs.segments(run, split) if n else None,
        clusters=cluster,
        clusters_unavailable=no_clusters(run),
        whole=run.parent.metrics if run.parent is not None else None,
    )
