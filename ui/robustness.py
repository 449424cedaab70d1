"""The Robustness page's helpers: its derived runs read, estimated and started on the shared
task pool (``stored_runs``), and the first-flips gallery (``first_flips``): each image as the
model saw it at the lowest severity where its prediction changed."""

from __future__ import annotations

import io
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from core.hosting import tasks
from core.images import gallery
from core.images import robustness as derive
from core.images import robustness_worker as worker
from core.images.gallery import paginate
from core.runs import Run, RunStore
from ui import tasks as ui_tasks
from ui.auth import can_edit
from ui.gallery import md_escape, pager, thumbnail_grid
from ui.text import md_text

Pair = tuple[str, int]  # (corruption, severity)


def stored_runs(
    base: Run, store: RunStore, split: str, pairs: list[Pair], *, sample: int | None, seed: int
) -> dict[Pair, Run]:
    """Return the stored derived runs of ``pairs``; for the others show the running
    computation's progress, or the time estimate and (editors only) the button that starts
    them: ONE task per run, split and images, whose one child process
    (core.images.robustness_worker) computes them all, seen by every session."""
    ids = {p: derive.derived_id(base, split, *p, sample=sample, seed=seed) for p in pairs}
    stored = {p: r for p in pairs if (r := store.get(ids[p])) is not None}
    missing = [p for p in pairs if p not in stored]
    key = ("robustness", str(store.root), base.run_id, split, sample, seed)
    task = tasks.get(key)
    if task is not None and task.finished and task.error is not None:
        st.error(md_text(task.error))  # an engine error: may quote the checkpoint's path
    # One element for the bar, or the estimate and its button: "Compute them" and the running
    # computation's progress take the same place (the button left beside the bar otherwise,
    # each running rerun ending in st.rerun), and what follows keeps its place.
    if task is not None and not task.finished:
        if ui_tasks.ready(task, f"Evaluating corrupted copies ({task.label})"):
            st.rerun()  # it finished while this rerun waited: read its runs from the store
    elif missing:
        names = sorted({c for c, _ in pairs})
        levels = sorted({s for _, s in pairs})
        n_img, secs, start = worker.estimate(store, base, split, sample, names, levels, seed=seed)
        todo = (
            f"{len(missing)} of {len(pairs)} (corruption, severity) runs are not computed yet: "
            f"{n_img:,} images to evaluate, about {secs:,.0f} s (incl. ~{start:,.0f} s to "
            "start) at this run's speed."
        )
        if not can_edit():
            st.info(f"{todo} Only an editor can start them; the stored ones are shown below.")
            return stored
        box = st.container()
        box.info(todo, icon=":material/schedule:")
        if box.button("Compute them", type="primary", key="rb_start"):
            tasks.forget(key)  # a finished earlier computation of other settings
            run_all = partial(worker.corrupted_runs, store, base, split, missing)
            tasks.submit(
                key,
                partial(run_all, sample=sample, seed=seed),
                label=f"{len(missing)} runs of {base.run_id} {split}",
                progress=True,
            )
            st.rerun()
    return stored


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
