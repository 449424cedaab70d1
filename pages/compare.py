"""Compare: two or more runs of one dataset on the same images — which model is better, by how
much, whether the difference is more than chance, and the images where they disagree."""

from __future__ import annotations

import streamlit as st

from core.analysis import compare
from core.analysis.tables import CELL_COLORS
from core.errors import ClassLensError
from core.images import gallery
from ui import downloads, slice_filter
from ui.alerts import verdict_box
from ui.boot import ensure_app
from ui.gallery import md_names, pager, thumbnail_grid
from ui.page_state import keep
from ui.state import (
    current_run,
    list_runs,
    load_run,
    run_label,
    seed_from_link,
    split_picker,
)

ensure_app()

N_RESAMPLES = 1000
CLASS_LINES = 8  # per-class differences spelled out under a conclusion; the table has them all


@st.cache_data(max_entries=32, show_spinner="Bootstrapping 1,000 resamples of the images…")
def _comparison(
    run_ids: tuple[str, ...], split: str
) -> tuple[compare.Aligned, compare.Bootstrap | None, list[compare.McNemar]]:
    """Return the aligned predictions, their paired bootstrap (None when no image is shared)
    and McNemar's test of every pair; runs are immutable, so ids and split are the key."""
    aligned = compare.align([load_run(rid) for rid in run_ids], split=split)
    if not len(aligned.y_true):
        return aligned, None, []
    boot = compare.bootstrap(
        aligned.y_true,
        aligned.y_pred,
        n_classes=len(aligned.class_names),
        n_resamples=N_RESAMPLES,
    )
    return aligned, boot, compare.mcnemar(aligned.y_true, aligned.y_pred)


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
    aligned, boot, tests = _comparison(tuple(r.run_id for r in chosen), split)
except ClassLensError as exc:
    st.error(str(exc), icon=":material/block:")
    st.stop()
n = len(aligned.y_true)
if boot is None:
    st.info(f"No {split} image is present in every chosen run.", icon=":material/info:")
    st.stop()
st.markdown(f"Compared on **{n:,}** {split} images present in every run.")
if any(aligned.dropped):
    st.warning(
        "Left out, because some other run has no prediction for them: "
        + ", ".join(f"{d:,} images of {names[i]}" for i, d in enumerate(aligned.dropped) if d)
        + ". Re-evaluate the runs on the same dataset to compare every image.",
        icon=":material/warning:",
    )

st.subheader("Conclusion")
for i, finding in enumerate(
    compare.conclude(boot, tests, names=names, class_names=aligned.class_names, baseline=baseline)
):
    lines = [f"- {line}" for line in finding.class_lines[:CLASS_LINES]]
    if len(finding.class_lines) > CLASS_LINES:
        lines.append(
            f"- and {len(finding.class_lines) - CLASS_LINES} more (see the per-class table below)"
        )
    body = finding.text
    if lines:
        body += "\n\nPer class, where the 95% interval excludes 0:\n" + "\n".join(lines)
    if finding.direction > 0:
        verdict_box("good", body, key=f"verdict_{i}")
    elif finding.direction < 0:
        verdict_box("needs attention", body, key=f"verdict_{i}")
    else:
        st.info(body, icon=":material/balance:")

st.subheader("Overall")
overall = compare.overall_table(boot, names=names, baseline=baseline)
levels = [compare.LABELS[m] for m in compare.OVERALL]
deltas = [f"Δ {c}" for c in levels]
st.dataframe(
    overall.style.format("{:.1%}", subset=levels).format(compare.points, subset=deltas),
    hide_index=True,
    key="cmp_overall",
    placeholder="–",  # the baseline's own delta
    column_config={f"{d} 95% CI": "95% CI" for d in deltas},  # narrow: fits at 1440 px
)
downloads.offer(
    overall, what="Overall", stem=downloads.file_stem(run, split, "compare"), key="cmp_o"
)
st.caption(
    f"Δ: each run minus the baseline ({names[baseline]}) in percentage points, with its 95% "
    f"interval from {N_RESAMPLES:,} paired bootstrap resamples. An interval that excludes 0 "
    "is a difference larger than resampling noise."
)

st.subheader("Per class")
keep("cmp_metric", "recall", options=list(compare.PER_CLASS))
metric = st.segmented_control(
    "Metric",
    list(compare.PER_CLASS),
    format_func={"recall": "Recall", "precision": "Precision", "f1": "F1"}.get,
    key="cmp_metric",
    required=True,
)
table, significant = compare.class_table(
    boot, names=names, class_names=aligned.class_names, baseline=baseline, metric=metric
)
colors = {1: CELL_COLORS["good"], -1: CELL_COLORS["bad"], 0: ""}
st.dataframe(
    table.style.apply(lambda _: significant.map(colors.get), axis=None)
    .format("{:.1%}", subset=[f"{metric} {name}" for name in names])
    .format(compare.points, subset=[f"Δ {name}" for i, name in enumerate(names) if i != baseline]),
    hide_index=True,
    height="content" if len(table) <= 30 else 600,
    key="cmp_class_table",
    column_config={f"Δ {name} 95% CI": "95% CI" for name in names},
)
downloads.offer(
    table, what="Per class", stem=downloads.file_stem(run, split, f"compare-{metric}"), key="cmp_c"
)
st.caption(
    f"Δ: {metric} minus the baseline's in percentage points, with its 95% interval. Green: "
    "higher than the baseline, red: lower, where the interval excludes 0."
)

st.subheader("Is the difference more than chance?")
st.dataframe(
    compare.mcnemar_table(tests, names=names).style.format(
        lambda p: "< 0.001" if p < 0.001 else f"{p:.3f}", subset=["p-value"]
    ),
    hide_index=True,
    key="cmp_mcnemar",
)
downloads.offer(
    lambda: compare.mcnemar_table(tests, names=names),
    what="McNemar tests",
    stem=downloads.file_stem(run, split, "mcnemar"),
    key="cmp_m",
)
st.caption(
    "McNemar's exact test looks only at the images the two models disagree on: b are right "
    "in A only, c in B only. If neither model were better, each disagreement would fall either "
    "way with probability ½; a p-value below 0.05 says the split b : c is unlikely by chance."
)

st.subheader("Where they disagree")
others = [rid for rid in ids if rid != base_id]
keep("cmp_flip_b", others[0], options=others)
if len(others) > 1:
    st.selectbox("Compare the baseline with", others, key="cmp_flip_b", format_func=label.get)
other = ids.index(st.session_state["cmp_flip_b"])
a_name, b_name = names[baseline], names[other]
right_a, right_b = compare.flips(aligned.y_true, aligned.y_pred[baseline], aligned.y_pred[other])
keep("cmp_flip_dir", "a", options=["a", "b"])
direction = st.segmented_control(
    "Images",
    ["a", "b"],
    format_func={
        "a": f"Right in {a_name}, wrong in {b_name} ({len(right_a):,})",
        "b": f"Wrong in {a_name}, right in {b_name} ({len(right_b):,})",
    }.get,
    key="cmp_flip_dir",
    required=True,
)
positions, wrong = (right_a, other) if direction == "a" else (right_b, baseline)
right_name, wrong_name = (a_name, b_name) if direction == "a" else (b_name, a_name)
st.markdown(f"**{len(positions):,}** images right in {right_name}, wrong in {wrong_name}")
if not len(positions):
    st.success(f"{wrong_name} gets every image right that {right_name} does.")
    st.stop()
st.caption(
    f"Each card: the true class, then {a_name}'s and {b_name}'s predictions with their "
    f"confidence (✓ right, ✗ wrong); most confident {wrong_name} mistakes first. Top 3: "
    f"{wrong_name}'s most likely classes."
)
wrong_run = chosen[wrong]
rows = gallery.sort_rows(wrong_run.predictions().loc[aligned.rows[wrong][positions]])
page, size = pager(len(rows), key="cmp_gallery", reset_on=(tuple(ids), split, other, direction))
shown = gallery.paginate(rows, page=page, page_size=size)
pos_of = {int(r): i for i, r in enumerate(aligned.rows[wrong])}  # its row -> aligned position
cards = compare.flip_labels(
    aligned,
    [pos_of[int(r)] for r in shown.index],
    confidence=[r.predictions()["confidence"].to_numpy() for r in chosen],
    names=names,
    models=[baseline, other],
    sep="  \n",  # one line each: true class, then each model
)
heads = {int(r): md_names(c, aligned.class_names) for r, c in zip(shown.index, cards, strict=True)}
thumbnail_grid(shown, wrong_run, key="cmp_gallery", headline=heads.__getitem__)
