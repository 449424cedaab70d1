"""Compare: two or more runs of one dataset on the same images — which model is better, by how
much, whether the difference is more than chance, and the images where they disagree."""

from __future__ import annotations

import streamlit as st

from core.analysis import compare, compare_view
from core.analysis.compare_view import N_RESAMPLES
from core.errors import ClassLensError
from ui import compare_tables, slice_filter
from ui.boot import ensure_app
from ui.disagreements import disagreements
from ui.gallery import md_escape
from ui.page_state import keep
from ui.state import current_run, list_runs, load_run, run_label, seed_from_link, split_picker

ensure_app()


@st.cache_data(max_entries=32, show_spinner="Bootstrapping 1,000 resamples of the images…")
def _comparison(run_ids: tuple[str, ...], split: str) -> compare_view.Comparison:
    """Return the comparison of the runs on ``split``; runs are immutable: ids are the key."""
    return compare_view.compare_runs([load_run(rid) for rid in run_ids], split=split)


st.title("Compare runs")
st.caption(
    "Two or more checkpoints on the same images. A few points of accuracy can be luck of the "
    "draw: the intervals below come from a paired bootstrap (every model scored on the same "
    f"{N_RESAMPLES:,} resamples of the images) and McNemar's test asks whether the models' "
    "disagreements lean one way more than chance would."
)
run = current_run()
whole = run.parent or run  # the stored run (current_run is under the sidebar's slice filter)

runs = {r.run_id: r for r in list_runs()}
write_runs = seed_from_link("cmp_runs", "with", list(runs), many=True)  # ?with=&baseline=
keep("cmp_runs", lambda: compare.default_runs(whole, list(runs.values())), options=runs, many=True)
ids = st.multiselect(
    "Runs to compare",
    list(runs),
    key="cmp_runs",
    format_func=lambda rid: run_label(runs[rid]),
    placeholder="Pick two or more runs of the same dataset",
)
write_runs(ids)
if len(ids) < 2:
    st.info("Pick at least two runs of the same dataset to compare.", icon=":material/info:")
    st.stop()
chosen = [slice_filter.restrict(runs[rid]) for rid in ids]  # each under the slice filter
try:
    compare.check_same_dataset(chosen)
except ClassLensError as exc:
    st.error(str(exc), icon=":material/block:")
    st.stop()
names = compare.model_names(chosen)
md = [md_escape(n) for n in names]  # names inside markdown: a run named **b** shows as typed
label = dict(zip(ids, names, strict=True))

c_base, c_split = st.columns([2, 3], vertical_alignment="bottom")
write_baseline = seed_from_link("cmp_baseline", "baseline", ids)
keep("cmp_baseline", ids[0], options=ids)
base_id = c_base.selectbox(
    "Baseline (A)",
    ids,
    key="cmp_baseline",
    format_func=label.get,
    help="Every other run is compared with this one: deltas are that run minus the baseline.",
)
write_baseline(base_id)
baseline = ids.index(base_id)
with c_split:
    split = split_picker(chosen[0])

try:
    result = _comparison(tuple(r.run_id for r in chosen), split)
except ClassLensError as exc:
    st.error(str(exc), icon=":material/block:")
    st.stop()
aligned, boot = result.aligned, result.boot
if boot is None:
    st.info(f"No {split} image is present in every chosen run.", icon=":material/info:")
    st.stop()
st.markdown(f"Compared on **{len(aligned.y_true):,}** {split} images present in every run.")
if (dropped := compare_view.dropped_text(aligned.dropped, md)) is not None:
    st.warning(dropped, icon=":material/warning:")

st.subheader("Conclusion")
md_classes = [md_escape(c) for c in aligned.class_names]
compare_tables.conclusion(
    compare.conclude(boot, result.tests, names=md, class_names=md_classes, baseline=baseline)
)

st.subheader("Overall")
compare_tables.overall(boot, names=names, baseline=baseline, run=run, split=split)

st.subheader("Per class")
compare_tables.per_class(
    boot, names=names, class_names=aligned.class_names, baseline=baseline, run=run, split=split
)

st.subheader("Is the difference more than chance?")
compare_tables.mcnemar(result.tests, names=names, run=run, split=split)

st.subheader("Where they disagree")
disagreements(result, chosen, ids=ids, baseline=baseline, split=split)
