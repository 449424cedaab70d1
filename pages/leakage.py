"""Leakage: held-out images that nearly duplicate a training image, and the metrics without them.

Images are compared by perceptual hash (pHash): a few differing bits out of 64 means the same
picture, re-encoded, brightened or shifted; or by the model's own penultimate-layer embeddings
(cosine similarity). Hashes and embeddings are computed once per run and cached.
"""

from __future__ import annotations

import streamlit as st

from core.analysis import deltas
from core.hosting import tasks
from core.images import embeddings, gallery, leakage
from core.runs import Run
from ui import downloads
from ui import tasks as ui_tasks
from ui.boot import ensure_app
from ui.gallery import md_escape, pager, thumbnail_png
from ui.page_state import keep
from ui.state import current_run

ensure_app()

DEFAULT_DISTANCE = 4  # small images (the 32 px digits) start to collide above ~4 bits
MAX_DISTANCE = 16
PHASH, EMBEDDINGS = "Perceptual hash", "Model embeddings"
# A trained classifier packs each class tightly: at 0.99 most same-class images pair up.
DEFAULT_SIMILARITY = 0.998
MIN_SIMILARITY = 0.90
PAIR_PX = 96
PAIRS_PER_ROW = 3


def _shared(run: Run, kind: str) -> object:
    """Return the run's pHashes or embeddings (``kind``), computed once per server on a
    core.hosting.tasks worker (read back from the run's cache file when it has one); while
    they compute, show progress and rerun; when they cannot be had, say why and stop."""
    work, verb = {
        "phash": (leakage.run_hashes, "Hashing"),
        "embeddings": (embeddings.run_embeddings, "Embedding"),
    }[kind]
    task = tasks.submit((kind, run.run_id), work, run, label=f"{verb} {run.run_id}", progress=True)
    if not ui_tasks.ready(task, f"{verb} the images (first visit of this run only)"):
        ui_tasks.rerun_if_pending()
    if task.error is not None:
        st.info(task.error, icon=":material/info:")
        st.stop()
    return task.result


def _thumb(run: Run, split: str, path: str) -> None:
    png = thumbnail_png(str(gallery.image_path(run, split, path)), PAIR_PX)  # decoded once
    if png is None:
        st.warning(f"Image not found: {md_escape(path)}", icon=":material/broken_image:")
        return
    st.image(png, width=PAIR_PX)


st.title("Leakage")
st.caption(
    "Held-out images that nearly duplicate a training image let a model score well by "
    "remembering rather than generalising. Pairs are found by perceptual hash: the number of "
    "differing bits out of 64 (0 = the same picture, about 32 = unrelated images), or by the "
    "model's own embeddings: the cosine similarity of what its last layer sees."
)
run = current_run()
names = run.class_names
held_out = [s for s in ("test", "val") if s in run.splits]
if "train" not in run.splits or not held_out:
    st.info(
        "Leakage needs a **train** split and a **test** or **val** split in the dataset; this "
        f"run has {', '.join(run.splits) or 'no split'}. Evaluate on a dataset laid out as "
        "root/train/<class>/… and root/test/<class>/… to check it.",
        icon=":material/info:",
    )
    st.stop()

c_method, c_dist, c_split = st.columns([1.4, 2, 1], vertical_alignment="bottom")
keep("lk_method", PHASH, options=[PHASH, EMBEDDINGS])
method = c_method.segmented_control(
    "Method",
    [PHASH, EMBEDDINGS],
    key="lk_method",
    required=True,
    help="Perceptual hash: pixels alike. Model embeddings: alike to the model (the input of "
    "its last linear layer); needs a checkpoint saved as a state_dict or .safetensors file.",
)
if method == EMBEDDINGS:
    keep("lk_similarity", DEFAULT_SIMILARITY)
    min_similarity = c_dist.slider(
        "Min cosine similarity",
        MIN_SIMILARITY,
        1.0,
        step=0.001,
        format="%.3f",
        key="lk_similarity",
        help="Pairs whose embeddings have at least this cosine similarity. Higher is stricter: "
        "a trained classifier packs a whole class close together; near-copies sit above ~0.998.",
    )
    within = f"at cosine similarity ≥ {min_similarity:.3f}"
else:
    keep("lk_distance", DEFAULT_DISTANCE)
    max_distance = c_dist.slider(
        "Max Hamming distance",
        0,
        MAX_DISTANCE,
        key="lk_distance",
        help="Pairs whose hashes differ in at most this many of 64 bits. Lower is stricter: "
        "0 finds exact copies only; small images (digits) start to look alike above about 4.",
    )
    within = f"within {max_distance} bits"
keep("lk_split", held_out[0], options=held_out)
split = (
    c_split.segmented_control("Held-out split", held_out, key="lk_split", required=True)
    if len(held_out) > 1
    else held_out[0]
)

if method == EMBEDDINGS:
    emb = _shared(run, "embeddings")
    pairs = embeddings.embedding_pairs(run, emb, split, min_similarity=min_similarity)
    threshold: object = min_similarity
else:
    pairs = leakage.leak_pairs(run, _shared(run, "phash"), split, max_distance=max_distance)
    threshold = max_distance
leaked = sorted(set(pairs["path"]))
n_split = int(run.metrics["splits"][split]["n"])
st.markdown(
    f"**{len(pairs):,}** {split}–train pairs {within} · "
    f"**{len(leaked):,}** of {n_split:,} {split} images nearly duplicate a training image"
)
n_differ = int(pairs["labels_differ"].sum())
if n_differ:
    st.warning(
        f"{n_differ:,} pairs carry different labels: the same picture labelled two ways is a "
        "labelling error as well as a leak.",
        icon=":material/warning:",
    )

st.subheader(f"{split.capitalize()} metrics without the leaked images")
tiles = deltas.changes(run.metrics["splits"][split], leakage.metrics_without(run, split, leaked))
for col, t in zip(st.columns(len(tiles)), tiles, strict=True):
    col.metric(
        t.label,
        t.shown(t.after),
        delta=t.delta,
        delta_color="off" if t.count else "normal",
        help=f"{split} images left after removing the leaked ones (of {t.shown(t.before)})."
        if t.count
        else f"With every {split} image: {t.shown(t.before)}.",
    )
st.caption(
    "Δ: without the leaked images minus with them; none where both show the same. A "
    "score that drops when the near-copies are removed was flattered by leakage."
)

if pairs.empty:
    st.success(
        f"No {split} image has cosine similarity ≥ {min_similarity:.3f} with a training image."
        if method == EMBEDDINGS
        else f"No {split} image is within {max_distance} bits of a training image."
    )
    st.stop()

st.subheader("Pairs, closest first")
downloads.offer(
    pairs, what="Leaked pairs", stem=downloads.file_stem(run, split, "leakage"), key="lk_pairs"
)
page, size = pager(len(pairs), key="lk_pairs", reset_on=(run.run_id, split, method, threshold))
shown = gallery.paginate(pairs, page=page, page_size=size)
for start in range(0, len(shown), PAIRS_PER_ROW):
    cells = st.columns(PAIRS_PER_ROW)
    rows = shown.iloc[start : start + PAIRS_PER_ROW].itertuples()
    for cell, pair in zip(cells, rows, strict=False):
        with cell.container(border=True):
            left, right = st.columns(2)
            with left:
                _thumb(run, split, pair.path)
                st.caption(f"{split}: **{md_escape(names[pair.y_true])}**")
            with right:
                _thumb(run, "train", pair.train_path)
                st.caption(f"train: **{md_escape(names[pair.train_y_true])}**")
            flag = " · :red[labels differ]" if pair.labels_differ else ""
            closeness = (
                f"Cosine similarity **{pair.similarity:.4f}**"
                if method == EMBEDDINGS
                else f"Distance **{pair.distance}** · {pair.similarity:.0%} similar"
            )
            st.markdown(
                f"{closeness}{flag}",
                help=f"{split}/{pair.path} ↔ train/{pair.train_path}",
            )
