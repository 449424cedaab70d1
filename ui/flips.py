"""The Robustness page's first-flips gallery: each image as the model saw it at the lowest
severity where its prediction changed, with its clean and corrupted prediction."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from core.images import gallery
from core.images import robustness as derive
from core.images.gallery import paginate
from core.runs import Run
from ui.gallery import md_escape, pager, thumbnail_grid


@st.cache_data(max_entries=1024, show_spinner=False)
def _view(run_id: str, split: str, path: str, corruption: str, severity: int, _run: Run) -> bytes:
    """Return the corrupted image as the model saw it, enlarged nearest-neighbour to about
    a thumbnail's size, as PNG bytes (decoded once per server)."""
    arr = derive.corrupted_view(_run, split, path, corruption, severity)
    factor = max(1, gallery.THUMB_PX // max(arr.shape[:2]))
    big = np.repeat(np.repeat(arr, factor, axis=0), factor, axis=1)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="PNG")
    return buf.getvalue()


def first_flips(
    flips: pd.DataFrame,
    stored: dict[tuple[str, int], Run],
    base: Run,
    *,
    split: str,
    corruption: str,
    key: str,
    reset_on: object,
) -> None:
    """Render ``flips`` (core.analysis.robustness.first_flips of ``corruption``) a page at a
    time, grouped by severity: each image corrupted as the model saw it, its true class,
    the clean prediction (✓ / ✗) and the prediction at that severity, which opens in full."""
    page, size = pager(len(flips), key=key, reset_on=reset_on)
    names = base.class_names
    for s, rows in paginate(flips, page=page, page_size=size).groupby("severity", sort=True):
        derived = stored[(corruption, int(s))]
        shown = derived.predictions().iloc[rows["row"].to_numpy()]
        before = dict(zip(shown.index, rows.itertuples(), strict=True))
        views = {}
        for idx, r in before.items():
            try:
                views[idx] = _view(base.run_id, split, r.path, corruption, int(s), base)
            except (OSError, ValueError):
                continue  # the clean thumbnail (or its "not found") is shown instead

        def headline(idx: int, b: dict = before, s: int = int(s)) -> str:
            r = b[idx]
            mark = "✓" if r.clean_correct else "✗"
            return (
                f"**{md_escape(names[r.y_true])}** · clean {md_escape(names[r.clean_pred])} "
                f"{mark} → :red[**{md_escape(names[r.y_pred])}**] at {s}"
            )

        st.caption(f"Severity {int(s)}: as the model saw them (corrupted, at its input size)")
        thumbnail_grid(shown, derived, key=f"{key}_{int(s)}", headline=headline, overlays=views)
