"""The shared image gallery: a pager, a thumbnail grid and the full-size view of one image.

Both the Mistakes page and the Confusion matrix page (the images behind a cell) use it. Rows
are slices of ``run.predictions()`` that keep its index, which is also the row of
``run.probs()``. Only the rows handed in (the visible page) are decoded, each file once per
server (``st.cache_data`` keyed by path and modification time).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from core.contracts import MetaJson
from core.figures import gallery as gallery_fig
from core.hosting import tasks
from core.images import gallery
from core.runs import Run
from ui import jobs
from ui import tasks as ui_tasks
from ui.page_state import keep, put
from ui.text import md_code, md_escape, md_names  # noqa: F401 (re-exported: pages import them here)

if TYPE_CHECKING:
    from core.engine.models import Checkpoint

FULL_PX = 320  # the enlarged view in the dialog


@st.cache_data(max_entries=4096, show_spinner=False)
def _thumbnail(path: str, mtime: float, size: int) -> bytes | None:
    """Return the thumbnail of ``path`` as PNG bytes (None when unreadable); mtime keys edits.

    PNG, not pixels: a few KB per entry in the cache, and st.image sends it as is.
    """
    try:
        pixels = gallery.thumbnail(path, size=size)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def thumbnail_png(path: str, size: int) -> bytes | None:
    """Return the thumbnail of ``path`` as PNG bytes, decoded once per file version and size
    (a bounded st.cache_data), or None when it cannot be read."""
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return None
    return _thumbnail(path, mtime, size)


def class_filter(
    label: str,
    class_names: Sequence[str],
    *,
    key: str,
    default: Sequence[int] = (),
    placeholder: str = "All classes",
) -> list[int]:
    """Render a class multiselect over class indices (empty = all) and return the chosen ones.

    The choice is kept across pages (ui.page_state) and to valid indices, so switching to a
    run with fewer classes never breaks the widget; ``default`` applies the first time only.
    """
    options = list(range(len(class_names)))
    keep(key, list(default), options=options, many=True)
    return st.multiselect(
        label,
        options,
        key=key,
        format_func=lambda c: class_names[c],
        placeholder=placeholder,
    )


def pager(n_rows: int, *, key: str, reset_on: Hashable = None) -> tuple[int, int]:
    """Render page-size and page-number controls and return (page, page_size), page 1-based.

    ``reset_on``: a value describing the current filters; when it changes, go back to page 1.
    Page and size are kept across pages (ui.page_state).
    """
    size_key, page_key, sig_key = f"{key}-size", f"{key}-page", f"{key}-filters"
    if st.session_state.get(sig_key) != reset_on:
        st.session_state[sig_key] = reset_on
        put(page_key, 1)
    c1, c2, c3 = st.columns([1, 1, 4], vertical_alignment="bottom")
    keep(size_key, gallery.PAGE_SIZES[0], options=gallery.PAGE_SIZES)
    size = c1.selectbox("Images per page", gallery.PAGE_SIZES, key=size_key)
    n_pages = gallery.page_count(n_rows, size)
    put(page_key, min(max(1, keep(page_key, 1)), n_pages))
    page = c2.number_input("Page", min_value=1, max_value=n_pages, step=1, key=page_key)
    c3.caption(f"Page {page} of {n_pages}")
    return int(page), int(size)


def relabel_headline(given: str, suggested: str, p_given: float, p_suggested: float) -> str:
    """Return the markdown line "given p → suggested p" of a suspicious label."""
    new = f":orange[**{md_escape(suggested)}** {p_suggested:.0%}]"
    return f"**{md_escape(given)}** {p_given:.0%} → {new}"


def _gradcam_model(sha256: str, meta: MetaJson) -> Checkpoint:
    """Return the run's checkpoint for Grad-CAM, loaded once per server (core.hosting.tasks,
    keyed by its sha256; a refusal is kept too and raised as ClassLensError)."""
    from core.images import gradcam

    return tasks.compute(
        ("gradcam-model", sha256), gradcam.load_for_run, meta, label="Grad-CAM model"
    )


def _overlays(
    sha256: str, meta: MetaJson, paths: tuple[str, ...], targets: tuple[int, ...], size: int
) -> list[np.ndarray | None]:
    """Return the Grad-CAM overlays of ``paths`` (runs on a core.hosting.tasks worker)."""
    from core.engine.inference import resolve_device
    from core.images import gradcam

    ckpt = _gradcam_model(sha256, meta)
    # The module is shared by every session and Grad-CAM hooks into it.
    with jobs.model_lock(f"gradcam:{sha256}"):
        return gradcam.overlays(
            ckpt,
            paths,
            gradcam.run_preprocessing(meta),
            targets=targets,
            size=size,
            device=resolve_device("auto"),
        )


def gradcam_overlays(
    rows: pd.DataFrame, run: Run, *, size: int = gallery.THUMB_PX
) -> dict[int, np.ndarray]:
    """Return {row index: Grad-CAM overlay of the predicted class} for ``rows`` (the visible
    page of ``run.predictions()``); when the run's checkpoint cannot have one, say why with
    ``st.info`` and return {}.

    Computed once per (checkpoint, images, targets, preprocessing, size) for every session, on
    a core.hosting.tasks worker: while it runs the page shows progress and plain thumbnails
    and reruns (the page ends with ``ui.tasks.rerun_if_pending()``).
    """
    sha = run.meta["checkpoint"]["sha256"]
    places = zip(rows["split"], rows["path"], strict=True)
    paths = tuple(str(gallery.image_path(run, split, rel)) for split, rel in places)
    targets = tuple(int(t) for t in rows["y_pred"])
    prep = str(sorted(run.meta["preprocessing"].items()))
    task = tasks.submit(
        ("gradcam", sha, paths, targets, prep, size),
        _overlays,
        sha,
        run.meta,
        paths,
        targets,
        size,
        label=f"Grad-CAM of {len(paths)} images",
    )
    if not ui_tasks.ready(task, f"Computing Grad-CAM for {len(paths)} images"):
        return {}
    if task.error is not None:
        st.info(task.error, icon=":material/info:")
        return {}
    return {int(i): img for i, img in zip(rows.index, task.result, strict=True) if img is not None}


def _headline(true_name: str, pred_name: str, correct: bool) -> str:
    if correct:
        return f":green[**{md_escape(true_name)}** ✓]"
    return f"**{md_escape(true_name)}** → :red[**{md_escape(pred_name)}**]"


def thumbnail_grid(
    rows: pd.DataFrame,
    run: Run,
    *,
    columns: int = 6,
    key: str,
    size: int = gallery.THUMB_PX,
    headline: Callable[[int], str] | None = None,
    overlays: Mapping[int, Any] | None = None,
) -> None:
    """Render ``rows`` (a slice of ``run.predictions()``) as thumbnails with their true and
    predicted class, confidence and top-3 probabilities; each opens a full-size view.

    headline: row index -> markdown replacing the "true → predicted · confidence" line.
    overlays: row index -> image (a Grad-CAM overlay) shown instead of the thumbnail.
    """
    if rows.empty:
        return
    names = run.class_names
    index = rows.index.to_numpy()
    top_idx, top_p = gallery.top_k(run.probs()[index], k=3)
    records = rows.to_dict("records")
    for start in range(0, len(rows), columns):
        cells = st.columns(columns)
        for offset, cell in enumerate(cells):
            pos = start + offset
            if pos >= len(rows):
                break
            row, idx = records[pos], int(index[pos])
            true_name, pred_name = names[row["y_true"]], names[row["y_pred"]]
            path = gallery.image_path(run, row["split"], row["path"])
            with cell.container(border=True):
                pixels = thumbnail_png(str(path), size)
                if pixels is None:
                    st.warning(
                        f"Image not found: {md_escape(row['path'])}",
                        icon=":material/broken_image:",
                    )
                elif overlays is not None and idx in overlays:
                    st.image(overlays[idx], width=size)
                else:
                    st.image(pixels, width=size)
                st.markdown(
                    headline(idx)
                    if headline is not None
                    else f"{_headline(true_name, pred_name, row['y_true'] == row['y_pred'])}"
                    f" · {row['confidence']:.0%}"
                )
                st.caption(
                    "Top 3: "
                    + " · ".join(
                        f"**{md_escape(names[c])}** {p:.0%}"
                        for c, p in zip(top_idx[pos], top_p[pos], strict=True)
                    )
                )
                if st.button(
                    "Enlarge",
                    key=f"{key}-zoom-{idx}",
                    icon=":material/zoom_in:",
                    type="tertiary",
                ):
                    full_view(run, idx)


@st.dialog("Full-size view", width="large")
def full_view(run: Run, idx: int) -> None:
    """Show one prediction row: the image large, its details and every class probability."""
    row = run.predictions().loc[idx]
    names = run.class_names
    path = gallery.image_path(run, row["split"], row["path"])
    left, right = st.columns([2, 3])
    with left:
        pixels = thumbnail_png(str(path), FULL_PX)
        if pixels is None:
            where = md_escape(f"{row['split']}/{row['path']}")  # never the server's path
            st.warning(f"Image not found: {where}", icon=":material/broken_image:")
        else:
            st.image(pixels, width=FULL_PX)
        correct = row["y_true"] == row["y_pred"]
        st.markdown(
            f"True {_headline(names[row['y_true']], names[row['y_pred']], correct)}"
            + ("" if correct else " (predicted)")
        )
        st.markdown(
            f"Confidence **{row['confidence']:.1%}** · loss **{row['loss']:.3f}**  \n"
            f"`{row['split']}/{row['path']}`"
        )
    with right:
        st.plotly_chart(
            gallery_fig.probability_figure(
                run.probs()[idx], names, y_true=int(row["y_true"]), y_pred=int(row["y_pred"])
            ),
            key=f"probs-{idx}",
            config={"displayModeBar": False},
        )
        st.caption("Green: the true class. Red: the predicted class when it is wrong.")
