"""Data leakage by the model's own eyes: near-duplicates by penultimate-layer embeddings.

An image's embedding is the input of the model's last ``nn.Linear`` (what the classifier head
sees), L2-normalised; two images the model cannot tell apart have cosine similarity close to 1.
Held-out vs train pairs above a threshold are leaks, like the pHash pairs of core.images.leakage.
Embeddings are computed once per run and cached in ``<run>/embeddings.npy`` (float16).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from core.engine import data
from core.engine.inference import normalise_batch, resolve_device
from core.engine.preprocessing import Preprocessing
from core.errors import ClassLensError
from core.images import gallery, gradcam, leakage
from core.runs import Run

CACHE_FILE = "embeddings.npy"
# A trained classifier packs each class tightly: at 0.99 most same-class images pair up.
DEFAULT_SIMILARITY = 0.998
BLOCK = 4_000_000  # similarities computed per block of the (na, nb) matrix
Progress = Callable[[int, int], None]  # (images done, images total)


def last_linear(module: nn.Module) -> nn.Linear:
    """Return the last ``nn.Linear`` in ``module`` (registration order), or raise."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ClassLensError(
            f"Model embeddings need an nn.Linear head; this model ({type(module).__name__}) "
            "has none."
        )
    return linears[-1]


def penultimate(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return ``features(x)``: the (B, d) input of ``module``'s last nn.Linear for input x.

    A forward pre-hook on that layer captures its input (flattened from dim 1) during a
    normal forward pass, under inference mode; the hook is removed after each call.
    """
    layer = last_linear(module)

    def features(x: torch.Tensor) -> torch.Tensor:
        saved: list[torch.Tensor] = []

        def hook(_m: nn.Module, inputs: tuple[Any, ...]) -> None:
            saved.append(inputs[0].detach())

        handle = layer.register_forward_pre_hook(hook)
        try:
            with torch.inference_mode():
                module(x)
        finally:
            handle.remove()
        if not saved:
            raise ClassLensError("the model's last nn.Linear was not called in its forward pass.")
        return saved[-1].flatten(1)

    return features


def embed(
    module: nn.Module,
    paths: Sequence[str | Path],
    prep: Preprocessing,
    *,
    device: torch.device | str,
    batch_size: int = 128,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (embeddings, readable): (n, d) float32 L2-normalised rows and a (n,) bool mask.

    An image that cannot be decoded gets a zero row and readable False (never fatal); a row
    whose features are all zero stays zero. progress: called as (done, total) after each batch.
    """
    device = torch.device(device)
    module = module.to(device).eval()
    features = penultimate(module)
    n = len(paths)
    readable = np.zeros(n, dtype=bool)
    rows: list[tuple[list[int], np.ndarray]] = []
    width = None
    for start in range(0, n, batch_size):
        chunk, pixels = [], []
        for i in range(start, min(start + batch_size, n)):
            try:
                pixels.append(data.decode(Path(paths[i]), prep))
            except (OSError, ValueError, Image.DecompressionBombError):
                continue
            chunk.append(i)
        if chunk:
            x = normalise_batch(torch.from_numpy(np.stack(pixels)), prep, device)
            f = features(x).float()
            f = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
            rows.append((chunk, f.cpu().numpy()))
            width = f.shape[1]
            readable[chunk] = True
        if progress is not None:
            progress(min(start + batch_size, n), n)
    if width is None:  # nothing decoded: the width of a blank image's features
        blank = torch.zeros((1, prep.channels, prep.image_size, prep.image_size), device=device)
        width = features(blank).shape[1]
    out = np.zeros((n, width), dtype=np.float32)
    for chunk, feats in rows:
        out[chunk] = feats
    return out, readable


def cosine_pairs(
    emb_a: Any, emb_b: Any, *, min_similarity: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (i, j, similarity) with ``emb_a[i] . emb_b[j] >= min_similarity``, closest first.

    emb_a: (na, d), emb_b: (nb, d) L2-normalised rows (so the dot product is the cosine).
    i, j are int64, similarity float32; sorted by similarity descending, then i, then j. The
    (na, nb) matrix is computed in row blocks of about 4M entries.
    """
    a = np.asarray(emb_a, dtype=np.float32)
    b = np.asarray(emb_b, dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2 or (len(a) and len(b) and a.shape[1] != b.shape[1]):
        raise ValueError(f"embeddings must be (n, d) with the same d, got {a.shape}, {b.shape}.")
    found_i, found_j, found_s = [np.empty(0, np.int64)], [np.empty(0, np.int64)], []
    found_s.append(np.empty(0, np.float32))
    block = max(1, BLOCK // max(1, len(b)))
    for start in range(0, len(a), block):
        sim = a[start : start + block] @ b.T
        i, j = np.nonzero(sim >= min_similarity)
        found_i.append(i.astype(np.int64) + start)
        found_j.append(j.astype(np.int64))
        found_s.append(sim[i, j].astype(np.float32))
    i, j, s = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_s)
    order = np.lexsort((j, i, -s))
    return i[order], j[order], s[order]


# --- the per-run cache --------------------------------------------------------------------------


def cache_path(run: Run) -> Path:
    """Return where a run's embedding cache lives: ``embeddings.npy`` in the run folder."""
    return Path(run.path) / CACHE_FILE


def _read_cache(run: Run, n: int) -> np.ndarray | None:
    """Return the cached (n, d) float32 embeddings if readable and n rows long."""
    try:
        cached = np.load(cache_path(run), allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if cached.ndim != 2 or len(cached) != n or cached.dtype != np.float16:
        return None
    return cached.astype(np.float32)


def _write_cache(run: Run, emb16: np.ndarray) -> None:
    """Write the cache atomically (temp file + os.replace); a read-only store is no error."""
    final = cache_path(run)
    tmp = final.with_name(f".{CACHE_FILE}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a name
            np.save(f, emb16, allow_pickle=False)
        os.replace(tmp, final)
    except OSError:
        tmp.unlink(missing_ok=True)


def has_cached_embeddings(run: Run) -> bool:
    """Return True when the run's embedding cache exists and matches its predictions."""
    run = getattr(run, "parent", None) or run  # a slice reads its parent's cache
    return _read_cache(run, len(run.predictions())) is not None


def readable(emb: np.ndarray) -> np.ndarray:
    """Return the (n,) mask of rows that hold an embedding (unreadable images are zero rows)."""
    return np.abs(np.asarray(emb)).sum(axis=1) > 0


def run_embeddings(run: Run, *, progress: Progress | None = None) -> np.ndarray:
    """Return (n, d) float32 embeddings, one row per ``run.predictions()`` row, in order.

    Computed once with the run's own model (core.images.gradcam.load_for_run: non-native formats,
    a changed file or a model without nn.Linear raise ClassLensError) and preprocessing, then
    cached as float16 in ``embeddings.npy``; recomputed when missing, unreadable or of another
    row count. Values are those of the cache (float16-rounded) whether computed or read back.
    """
    parent = getattr(run, "parent", None)
    if parent is not None:  # a slice: the parent's embeddings, its rows
        return run_embeddings(parent, progress=progress)[run.rows]
    predictions = run.predictions()
    cached = _read_cache(run, len(predictions))
    if cached is not None:
        return cached
    fmt = run.meta["checkpoint"]["format"]
    if fmt not in gradcam.NATIVE_FORMATS:
        raise ClassLensError(
            f"Model embeddings need the model's layers; a {fmt} checkpoint hides its layers. "
            "Evaluate a model saved as a state_dict or .safetensors file to see them."
        )
    ckpt = gradcam.load_for_run(run.meta, require_conv=False)
    files = [
        gallery.image_path(run, s, p)
        for s, p in zip(predictions["split"], predictions["path"], strict=True)
    ]
    emb, _ = embed(
        ckpt.module,
        files,
        gradcam.run_preprocessing(run.meta),
        device=resolve_device("auto"),
        progress=progress,
    )
    emb16 = emb.astype(np.float16)
    _write_cache(run, emb16)
    return emb16.astype(np.float32)


def embedding_pairs(
    run: Run, emb: np.ndarray, split: str, *, min_similarity: float, train_split: str = "train"
) -> pd.DataFrame:
    """Return the ``split`` vs ``train_split`` pairs with cosine similarity >= min_similarity.

    emb: ``run_embeddings(run)``. Columns are core.images.leakage.PAIR_COLUMNS (as leak_pairs), with
    ``distance`` = 1 - similarity; closest pairs first; unreadable images are never paired.
    """
    split_of = run.predictions()["split"].to_numpy()
    ok = readable(emb)
    held = np.flatnonzero((split_of == split) & ok)
    train = np.flatnonzero((split_of == train_split) & ok)
    i, j, sim = cosine_pairs(emb[held], emb[train], min_similarity=min_similarity)
    sim = np.minimum(sim.astype(np.float64), 1.0)
    return leakage.pair_table(run, held[i], train[j], distance=1.0 - sim, similarity=sim)
