"""Robustness: the run's checkpoint on corrupted copies of a split's images (blur, noise, ...)."""

from __future__ import annotations

import streamlit as st

from core.analysis import robustness as rb
from core.engine import corruptions
from core.figures.robustness import severity_figure
from core.runs import RunStore
from ui import tasks as ui_tasks
from ui.boot import ensure_app
from ui.gallery import md_escape
from ui.page_state import keep
from ui.robustness import first_flips, stored_runs
from ui.state import current_run, split_picker
from ui.tables import class_columns

ensure_app()
SEED = 0  # the stratified sample's seed: the same images for every corruption and visit
DEFAULT_SAMPLE = 500  # images corrupted by default (all of a smaller split)
LEVELS = [1, 2, 3, 4, 5]
SCORE_HELP = (
    "Relative corruption error (RCE) of a corruption: the mean, over the severities chosen, of "
    "its error rate minus the clean error rate on the same images, in points. mRCE: the mean "
    "RCE over the corruptions. ImageNet-C's relative mCE without its reference-model divisor "
    "(your task has no AlexNet). 0 = no loss; +10 = ten points more errors."
)

st.title("Robustness")
st.caption(
    "The run's checkpoint re-evaluated on corrupted copies of a split's images (the same "
    "engine and preprocessing; the corruption is applied to the image before it): how much "
    "accuracy ordinary blur, noise, lighting, compression and geometry cost. Each corruption "
    "and severity is stored once as a derived run, shared by every viewer."
)
run = current_run()
base = run.parent if run.parent is not None else run  # the slice filter applies below
store = RunStore(base.path.parent)
c_split, c_n = st.columns([2, 1], vertical_alignment="bottom")
with c_split:
    split = split_picker(base, key="rb_split")
n_split = int((base.predictions()["split"] == split).sum())
keep("rb_sample", min(DEFAULT_SAMPLE, n_split))
n = int(c_n.number_input(
    "Images", min_value=1, max_value=max(n_split, 1), step=50, key="rb_sample",
    help=f"A sample stratified by true class (seed {SEED}), the same images for every "
    f"corruption; {n_split:,} = the whole split.",
))  # fmt: skip
sample = None if n >= n_split else n
names = list(corruptions.CORRUPTIONS)
keep("rb_corruptions", names, options=names, many=True)
chosen = st.multiselect(
    "Corruptions", names, format_func=corruptions.corruption_label, key="rb_corruptions"
)
keep("rb_severities", [1, 3, 5], options=LEVELS, many=True)
levels = st.segmented_control(
    "Severities", LEVELS, selection_mode="multi", key="rb_severities",
    help="1 = mild, 5 = severe; a horizontal flip has only level 1.",
)  # fmt: skip
pairs = [(c, s) for c in chosen for s in sorted(levels) if s <= corruptions.CORRUPTIONS[c]]
if not pairs:
    st.info("Choose at least one corruption and severity.", icon=":material/info:")
    st.stop()

stored = stored_runs(base, store, split, pairs, sample=sample, seed=SEED)
if not stored:
    ui_tasks.rerun_if_pending()
    st.stop()

frame = rb.from_runs(base, list(stored.values()))
if run.parent is not None:
    in_slice = run.predictions().loc[lambda d: d["split"] == split, "path"]
    frame = rb.within(frame, in_slice)
    st.caption(f"Slice filter on: the numbers cover the {frame['path'].nunique():,} sampled "
               f"images inside it ({md_escape(run.meta['slice']['label'])}).")  # fmt: skip
if frame.empty:
    st.info("No sampled image of this split is inside the slice filter.", icon=":material/info:")
    ui_tasks.rerun_if_pending()
    st.stop()
table = rb.severity_table(frame)
rce = rb.relative_corruption_error(frame)
clean = rb.clean_accuracy(frame)
label = corruptions.corruption_label
c1, c2, c3 = st.columns(3)
c1.metric("Clean accuracy", f"{clean:.1%}", help=f"On the same {frame['path'].nunique():,} images")
c2.metric("mRCE", f"{100 * rb.mean_relative_corruption_error(frame):+.1f} points", help=SCORE_HELP)
if len(rce):
    w = rce.iloc[0]
    c3.metric("Hardest corruption", label(w["corruption"]),
              f"{100 * w['rce']:+.1f} points", delta_color="inverse", help=SCORE_HELP)  # fmt: skip
labels = {c: label(c) for c in table["corruption"].unique()}
st.plotly_chart(severity_figure(table, clean_accuracy=clean, labels=labels), key="rb_chart")
st.dataframe(
    rce.assign(corruption=rce["corruption"].map(label), rce=100 * rce["rce"]),
    hide_index=True,
    column_config={
        "rce": st.column_config.NumberColumn("RCE (points)", format="%+.1f", help=SCORE_HELP),
        "worst": st.column_config.NumberColumn("worst severity"),
        "worst_accuracy": st.column_config.NumberColumn("accuracy there", format="percent"),
    },
    key="rb_rce",
)

st.subheader("Classes that degrade most")
drops = rb.class_drops(frame, base.class_names)
st.dataframe(
    drops.assign(worst_corruption=drops["worst_corruption"].map(label)),
    hide_index=True,
    column_config={
        **class_columns(
            "percent",
            clean_recall=("clean recall", None),
            corrupted_recall=("corrupted recall", "Mean over the corruptions and severities"),
            drop=("drop", "Clean recall minus corrupted recall, in points"),
            worst_recall=("worst recall", "At the worst corruption and severity"),
        ),
        "worst_corruption": st.column_config.TextColumn("worst corruption"),
        "worst_severity": st.column_config.NumberColumn("at severity"),
    },
    key="rb_classes",
)

st.subheader("Images whose prediction flips first")
done = sorted({c for c, _ in stored})
keep("rb_flip", done[0], options=done)
which = st.selectbox("Corruption", done, format_func=label, key="rb_flip")
flips = rb.first_flips(frame, which)
st.markdown(f"**{len(flips):,} of {frame['path'].nunique():,} images** change their prediction "
            f"under {md_escape(label(which))} at a severity shown; lowest severity first, right "
            "answers lost before wrong ones changed.")  # fmt: skip
first_flips(flips, stored, base, split=split, corruption=which, key="rb_gallery",
            reset_on=(base.run_id, split, which, n))  # fmt: skip
ui_tasks.rerun_if_pending()  # while derived runs compute: show them as they land
