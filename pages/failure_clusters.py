"""Failure clusters: groups of alike images (to the model) where it fails together."""

from __future__ import annotations

from functools import partial

import streamlit as st

from core.analysis import failure_clusters as fc
from core.hosting import tasks
from core.images import embedding_map
from ui import tasks as ui_tasks
from ui.boot import ensure_app
from ui.gallery import md_escape, md_names, thumbnail_grid
from ui.page_state import keep
from ui.slice_filter import columns_for
from ui.state import current_run, split_picker

ensure_app()
SEED = 0  # k-means' seed: the same clusters every visit
CARDS = 6  # clusters shown as cards, worst first

st.title("Failure clusters")
st.caption(
    "The split's images grouped by k-means on the model's penultimate-layer embeddings "
    "(images the model finds alike), then ranked worst first by the lower end of the 95% "
    "interval of each group's error rate, which weighs error rate by size. The grouping never "
    "sees labels or predictions, and the number of groups is a fixed rule of the split's size "
    "and class count unless you change it: nothing is tuned on the split it judges."
)
run = current_run()
names = run.class_names
c_split, c_k = st.columns([2, 1], vertical_alignment="bottom")
with c_split:
    split = split_picker(run, key="fc_split")
n_split = int((run.predictions()["split"] == split).sum())
default = fc.default_k(n_split, len(names))
keep("fc_k", default)
k = int(
    c_k.number_input(
        "Clusters",
        min_value=1,
        max_value=max(1, min(200, n_split)),
        step=1,
        key="fc_k",
        help=f"k of k-means. The default, {default}, is one per class plus two (4 to 60, at "
        "most one per 10 images). More clusters split large groups into smaller ones.",
    )
)
table = columns_for(run)
task = tasks.submit(
    ("clusters", run.run_id, split, k, SEED, tuple(table.columns)),
    partial(embedding_map.split_clusters, k=k, seed=SEED),
    run,
    split,
    table,
    label=f"Failure clusters of {run.run_id} {split}",
    progress=True,
)
rows, clusters = ui_tasks.result(task, "Computing the embeddings and clusters (once per run and k)")
if not clusters:
    st.info(f"No readable {split} image to cluster.", icon=":material/info:")
    st.stop()
st.markdown(md_names(fc.worst_sentence(clusters[0], names, split), names))

predictions = run.predictions()
for rank, c in enumerate(clusters[:CARDS], start=1):
    with st.container(border=True, key=f"fc_card_{rank}"):
        st.markdown(
            f"#### #{rank} · {c.size:,} images · accuracy {fc.share_text(c.accuracy)} "
            f"(rest of the split {fc.share_text(c.accuracy_outside)})"
        )
        st.markdown(
            f"**{c.n_wrong:,} mistakes**"
            + (f", mostly {md_names(fc.pair_words(c.pairs, names), names)}" if c.pairs else "")
        )
        if c.distinctions:
            st.markdown(
                "What sets it apart: "
                + " · ".join(
                    f"**{md_escape(d.column)}** {md_escape(d.inside)} vs {md_escape(d.outside)} "
                    f"outside ({d.effect:+.1f} SD)"
                    for d in c.distinctions
                )
            )
        else:
            st.caption("No metadata or image property differs by half an SD or more.")
        st.caption("Nearest the cluster's centre:")
        thumbnail_grid(predictions.iloc[rows[c.nearest]], run, key=f"fc_near_{rank}")
if len(clusters) > CARDS:
    st.caption(f"{len(clusters) - CARDS:,} more clusters rank below these.")
