"""Leakage: held-out images that nearly duplicate a training image, and the metrics without them.

Images are compared by perceptual hash (pHash): a few differing bits out of 64 means the same
picture, re-encoded, brightened or shifted; or by the model's own penultimate-layer embeddings
(cosine similarity). Hashes and embeddings are computed once per run and cached.
"""

from __future__ import annotations

import streamlit as st

from core.analysis import deltas, near_copies
from core.hosting import tasks
from core.images import embeddings, gallery, leakage
from ui import downloads
from ui import tasks as ui_tasks
from ui.boot import ensure_app
from ui.gallery import pager
from ui.page_state import keep
from ui.pair_cards import pair_cards
from ui.state import current_run

ensure_app()

# Per kind of shared work: what computes it once per run, and what pairs the images with it.
WORK = {
    "phash": (leakage.run_hashes, leakage.leak_pairs),
    "embeddings": (embeddings.run_embeddings, embeddings.embedding_pairs),
}

st.title("Leakage")
st.caption(
    "Held-out images that nearly duplicate a training image let a model score well by "
    "remembering rather than generalising. Pairs are found by perceptual hash: the number of "
    "differing bits out of 64 (0 = the same picture, about 32 = unrelated images), or by the "
    "model's own embeddings: the cosine similarity of what its last layer sees."
)
run = current_run()
held_out = near_copies.held_out_splits(run.splits)
if not held_out:
    st.info(
        "Leakage needs a **train** split and a **test** or **val** split in the dataset; this "
        f"run has {', '.join(run.splits) or 'no split'}. Evaluate on a dataset laid out as "
        "root/train/<class>/… and root/test/<class>/… to check it.",
        icon=":material/info:",
    )
    st.stop()

c_method, c_dist, c_split = st.columns([1.4, 2, 1], vertical_alignment="bottom")
keep("lk_method", near_copies.PHASH, options=list(near_copies.METHODS))
method = c_method.segmented_control(
    "Method",
    list(near_copies.METHODS),
    key="lk_method",
    required=True,
    help="Perceptual hash: pixels alike. Model embeddings: alike to the model (the input of "
    "its last linear layer); needs a checkpoint saved as a state_dict or .safetensors file.",
)
m = near_copies.METHODS[method]
keep(m.key, m.default)
threshold = c_dist.slider(
    m.slider, m.low, m.high, step=m.step, format=m.fmt, key=m.key, help=m.help
)
keep("lk_split", held_out[0], options=held_out)
split = (
    c_split.segmented_control("Held-out split", held_out, key="lk_split", required=True)
    if len(held_out) > 1
    else held_out[0]
)

compute, find = WORK[m.kind]
label = f"{m.verb} {run.run_id}"
task = tasks.submit((m.kind, run.run_id), compute, run, label=label, progress=True)
shared = ui_tasks.result(task, f"{m.verb} the images (first visit of this run only)")
pairs = find(run, shared, split, **{m.arg: threshold})
found = near_copies.summarise(pairs)
n_split = int(run.metrics["splits"][split]["n"])
st.markdown(found.count_line(split, n_split, m.within_text(threshold)))
if found.n_differ:
    st.warning(
        f"{found.n_differ:,} pairs carry different labels: the same picture labelled two ways "
        "is a labelling error as well as a leak.",
        icon=":material/warning:",
    )

st.subheader(f"{split.capitalize()} metrics without the leaked images")
without = leakage.metrics_without(run, split, found.leaked)
tiles = deltas.changes(run.metrics["splits"][split], without)
for col, t in zip(st.columns(len(tiles)), tiles, strict=True):
    col.metric(
        t.label,
        t.shown(t.after),
        delta=t.delta,
        delta_color="off" if t.count else "normal",
        help=t.note(split),
    )
st.caption(
    "Δ: without the leaked images minus with them; none where both show the same. A "
    "score that drops when the near-copies are removed was flattered by leakage."
)

if pairs.empty:
    st.success(m.none_text(split, threshold))
    st.stop()

st.subheader("Pairs, closest first")
downloads.offer(
    pairs, what="Leaked pairs", stem=downloads.file_stem(run, split, "leakage"), key="lk_pairs"
)
page, size = pager(len(pairs), key="lk_pairs", reset_on=(run.run_id, split, method, threshold))
pair_cards(gallery.paginate(pairs, page=page, page_size=size), run, split, m.closeness_text)
