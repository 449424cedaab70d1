"""Compare: two or more runs of one dataset on the same images — which model is better, by how
much, whether the difference is more than chance, and the images where they disagree."""

from __future__ import annotations

import streamlit as st

from core.analysis import compare, compare_view
from core.analysis.compare_view import N_RESAMPLES
from core.errors import ClassLensError
from ui import compare_tables, slice_filter
from ui.alerts import verdict_box
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


run = current_run()
whole = run.parent or run  # the stored run (current_run is under the sidebar's slice filter)
st.title("Compare runs")
st.caption(
    "Two or more checkpoints on the same images. A few points of accuracy can be luck of the "
    "draw: the intervals below come from a paired bootstrap (every model scored on the same "
    f"{N_RESAMPLES:,} resamples of the images) and McNemar's test asks whether the models' "
    "disagreements lean one way more than chance would."
)

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
for i, finding in enumerate(
    compare.conclude(boot, result.tests, names=md, class_names=md_classes, baseline=baseline)
):
    body = compare_view.conclusion_body(finding)
    if finding.direction:
        verdict_box(
            "good" if finding.direction > 0 else "needs attention", body, key=f"verdict_{i}"
        )
    else:
        st.info(body, icon=":material/balance:")

st.subheader("Overall")
compare_tables.overall(boot, names=names, baseline=baseline, run=run, split=split)
st.caption(
    f"Δ: each run minus the baseline ({md[baseline]}) in percentage points, with its 95% "
    f"interval from {N_RESAMPLES:,} paired bootstrap resamples. An interval that excludes 0 "
    "is a difference larger than resampling noise."
)

st.subheader("Per class")
keep("cmp_metric", "recall", options=list(compare.PER_CLASS))
metric = st.segmented_control(
    "Metric",
    list(compare.PER_CLASS),
    format_func=compare_tables.METRIC_LABELS.get,
    key="cmp_metric",
    required=True,
)
compare_tables.per_class(
    boot,
    names=names,
    class_names=aligned.class_names,
    baseline=baseline,
    metric=metric,
    run=run,
    split=split,
)
st.caption(
    f"Δ: {metric} minus the baseline's in percentage points, with its 95% interval. Green: "
    "higher than the baseline, red: lower, where the interval excludes 0."
)

st.subheader("Is the difference more than chance?")
compare_tables.mcnemar(result.tests, names=names, run=run, split=split)
st.caption(
    "McNemar's exact test looks only at the images the two models disagree on: b are right "
    "in A only, c in B only. If neither model were better, each disagreement would fall either "
    "way with probability ½; a p-value below 0.05 says the split b : c is unlikely by chance."
)

st.subheader("Where they disagree")
disagreements(result, chosen, ids=ids, baseline=baseline, split=split)
