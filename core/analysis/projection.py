"""Embeddings to a 2-D map, the points worth drawing, and a selection's numbers. Pure.

``project`` maps (n, d) embeddings to (n, 2) with PCA (fast, the default), t-SNE
(scikit-learn) or UMAP (``umap-learn``, imported only when asked for: numba makes its import
cost seconds). Each is deterministic for a seed. No labels are used: the map is not tuned on
any split. Unreadable images (zero embedding rows) get NaN coordinates and are not drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = {  # method -> what the page calls it
    "pca": "PCA (fast)",
    "tsne": "t-SNE",
    "umap": "UMAP",
}
MAX_DRAWN = 15_000  # correct points drawn at most; every mistake is drawn in addition
TSNE_MAX = 20_000  # t-SNE above this many points takes many minutes on a CPU
Progress = Callable[[int, int], None]


def umap_available() -> bool:
    """Return True when ``umap-learn`` is installed (without importing it)."""
    from importlib.util import find_spec

    return find_spec("umap") is not None


def project(
    emb: Any, *, method: str = "pca", seed: int = 0, progress: Progress | None = None
) -> np.ndarray:
    """Return (n, 2) float32 coordinates of ``emb`` (n, d) under ``method`` for ``seed``.

    Rows that are all zero (unreadable images) get NaN. progress: (step, steps) calls.
    """
    if method not in METHODS:
        raise ValueError(f"unknown projection {method!r}; use one of {', '.join(METHODS)}.")
    x = np.asarray(emb, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (n, d), got shape {x.shape}.")
    ok = np.abs(x).sum(axis=1) > 0
    out = np.full((len(x), 2), np.nan, dtype=np.float32)
    if progress is not None:
        progress(0, 2)
    if ok.sum() >= 3:
        out[ok] = _fit(x[ok], method, seed).astype(np.float32)
    elif ok.any():  # too few points for a map: put them on a line
        out[ok] = np.column_stack([np.arange(ok.sum()), np.zeros(ok.sum())])
    if progress is not None:
        progress(2, 2)
    return out


def _fit(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    if method == "pca" or x.shape[1] <= 2:
        from sklearn.decomposition import PCA

        if x.shape[1] < 2:
            return np.column_stack([x[:, 0], np.zeros(len(x))])
        coords = PCA(n_components=2, svd_solver="full", random_state=seed).fit_transform(x)
        # PCA's sign is arbitrary per axis: fix it (largest |value| positive) for stable maps
        flip = np.sign(coords[np.abs(coords).argmax(axis=0), [0, 1]])
        return coords * np.where(flip == 0, 1, flip)
    if method == "tsne":
        from sklearn.manifold import TSNE

        if len(x) > TSNE_MAX:
            raise ValueError(
                f"t-SNE on {len(x):,} images would take very long; it is offered up to "
                f"{TSNE_MAX:,}. Use PCA or UMAP for this run."
            )
        perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
        return TSNE(
            n_components=2, init="pca", random_state=seed, perplexity=perplexity
        ).fit_transform(x)
    if not umap_available():
        raise ValueError("UMAP needs the umap-learn package: pip install umap-learn.")
    import umap  # lazy: numba compiles on first use

    return umap.UMAP(n_components=2, random_state=seed, n_jobs=1).fit_transform(x)


def drawn_rows(wrong: Any, *, max_drawn: int = MAX_DRAWN, seed: int = 0) -> np.ndarray:
    """Return the sorted row indices to draw: every ``wrong`` row, and at most ``max_drawn``
    of the others, a uniform sample fixed by ``seed``."""
    wrong = np.asarray(wrong, dtype=bool)
    right = np.flatnonzero(~wrong)
    if len(right) > max_drawn:
        right = np.random.default_rng(seed).choice(right, max_drawn, replace=False)
    return np.sort(np.concatenate([np.flatnonzero(wrong), right]))


@dataclass(frozen=True)
class SelectionStats:
    """The numbers of the images inside a selection."""

    n: int  # images selected
    n_correct: int
    n_drawn: int  # of them drawn on the map (the rest are in the undrawn background sample)

    @property
    def accuracy(self) -> float:
        """Share of the selection predicted right (NaN when empty)."""
        return self.n_correct / self.n if self.n else float("nan")


def selection_stats(mask: Any, correct: Any, drawn: Any) -> SelectionStats:
    """Return the counts of the selected rows. mask, correct: (n,) bool; drawn: row indices."""
    mask = np.asarray(mask, dtype=bool)
    correct = np.asarray(correct, dtype=bool)
    drawn_mask = np.zeros(len(mask), dtype=bool)
    drawn_mask[np.asarray(drawn, dtype=np.int64)] = True
    return SelectionStats(
        n=int(mask.sum()),
        n_correct=int((mask & correct).sum()),
        n_drawn=int((mask & drawn_mask).sum()),
    )


def hover_lines(
    y_true: Any, y_pred: Any, confidence: Any, class_names: list[str] | tuple[str, ...]
) -> list[str]:
    """Return one hover line per point: "3 ✓ · 97%" or "3 → 8 · 62%" (true, predicted,
    confidence of the predicted class)."""
    names = list(class_names)
    return [
        f"{names[t]} ✓ · {c:.0%}" if t == p else f"{names[t]} → {names[p]} · {c:.0%}"
        for t, p, c in zip(
            np.asarray(y_true).tolist(),
            np.asarray(y_pred).tolist(),
            np.asarray(confidence, dtype=float).tolist(),
            strict=True,
        )
    ]
