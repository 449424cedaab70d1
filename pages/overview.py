"""Overview: is this model good enough? The verdict and its health checklist (every finding,
each linked to its page), headline metrics per split, the classes that fail, recall per
class, and the facts of the run."""

from __future__ import annotations

import dataclasses

import streamlit as st

from core.analysis import diagnostics, tables
from core.analysis.diagnostics import pct
from core.figures import charts
from core.hosting import settings
from ui import downloads, health
from ui import tasks as ui_tasks
from ui.alerts import all_classes_pass
from ui.boot import ensure_app
from ui.gallery import md_code, md_escape
from ui.page_state import forget, keep
from ui.state import current_run, split_picker, thresholds

ensure_app()

FRACTION = {"min_value": 0.0, "max_value": 1.0, "step": 0.01, "format": "%.2f"}
RATIO = {"min_value": 1.0, "max_value": 1000.0, "step": 0.5, "format": "%.1f"}
THRESHOLD_INPUTS = {  # Thresholds field -> (label, help, number_input options)
    "good_accuracy": ("Good: accuracy above", "The article's bar: above 90%.", FRACTION),
    "good_class": (
        "Good: every class's precision and recall at least",
        "85% by default.",
        FRACTION,
    ),
    "bad_accuracy": (
        "Bad: accuracy at or below",
        "Around 50% is no better than a coin toss between two classes.",
        FRACTION,
    ),
    "bad_class": ("Bad: any class's precision or recall below", "60% by default.", FRACTION),
    "imbalance_ratio": (
        "Warn of imbalance from a largest / smallest class ratio of",
        "Image counts of the biggest and the smallest class.",
        RATIO,
    ),
    "overfit_gap": (
        "Overfitting: flag a train − test gap above",
        "Of accuracy or of a class's recall (Overfitting page).",
        FRACTION,
    ),
}
METRIC_LABEL = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "macro_f1": "Macro F1",
}
METRIC_HELP = {
    "accuracy": "Share of all images classified correctly. Misleads when classes are unbalanced.",
    "balanced_accuracy": "Mean of the per-class recalls: every class counts the same, "
    "however many images it has.",
    "macro_f1": "Mean F1 over the classes; F1 balances precision and recall.",
}


def _reset_thresholds() -> None:
    st.session_state["thresholds"] = {}
    forget(*(f"thr_{name}" for name in THRESHOLD_INPUTS))


st.title("Overview")
facts_line = st.empty()  # the run's caption, filled once the run is known: above the slice note
run = current_run()
m_all = run.metrics
facts_line.caption(
    f"{md_code(run.meta['checkpoint']['name'])} · {md_escape(run.meta['architecture'])} · "
    f"{len(run.class_names)} classes · run `{run.run_id[:6]}`"
)

left, right = st.columns([3, 2], vertical_alignment="bottom")
with left:
    split = split_picker(run)
with right, st.expander("Verdict thresholds", icon=":material/tune:"):
    current = thresholds()
    values = {}
    for name, (label, help_text, opts) in THRESHOLD_INPUTS.items():
        keep(f"thr_{name}", float(getattr(current, name)))
        values[name] = st.number_input(label, help=help_text, key=f"thr_{name}", **opts)
    st.caption("Fractions: 0.90 means 90%. These also color the Per-class metrics page.")
    st.button("Reset to the article's defaults", on_click=_reset_thresholds)
try:
    t = diagnostics.Thresholds(**values)
except ValueError as exc:
    st.error(f"Thresholds not applied: {exc}")
    st.stop()
st.session_state["thresholds"] = dataclasses.asdict(t)
with st.container(horizontal=True, key="share_row"):
    downloads.report(run, split, t)
    downloads.metrics_json(run)

m = m_all["splits"][split]
summary = health.summary(run, split, t)
sliced = [run.meta["slice"]["label"]] if run.meta.get("slice") else []  # quoted by core too
health.verdict(summary, [*run.class_names, *sliced])
with st.container(border=True, key="health_checklist"):
    health.checklist(summary, run)

st.subheader("Headline metrics")
for row in tables.headline_table(m_all).itertuples():
    cols = st.columns(4)
    for col, key in zip(cols, METRIC_LABEL, strict=False):
        col.metric(
            f"{METRIC_LABEL[key]} ({row.split})",
            pct(getattr(row, key)),
            help=METRIC_HELP[key],
            border=True,
        )
    cols[3].metric(
        f"Images ({row.split})",
        f"{row.n:,}",
        help="Images evaluated in this split (skipped files not counted).",
        border=True,
    )
    note = tables.count_note(run.meta, m_all, row.split)
    if note:
        st.caption(note)

st.subheader(f"Classes on the {split} split")
table = tables.per_class_table(m, t)
chart_col, list_col = st.columns([3, 2])
chart_col.plotly_chart(
    charts.recall_bars(table, t, accuracy=m["accuracy"]), width="stretch", key="recall_bars"
)
with list_col:
    failing = tables.failing_classes(m, t)
    if failing.empty:
        all_classes_pass(t.good_class)
    else:
        st.markdown(f"**{len(failing)} of {len(table)} classes below the thresholds**")
        st.dataframe(
            tables.styled_failing(failing[["class", "status", "weakest", "score", "support"]]),
            hide_index=True,
            column_config={
                "weakest": st.column_config.TextColumn("metric", help="The weakest one"),
                "support": st.column_config.NumberColumn("images"),
            },
            key="failing_table",
        )
        st.caption(
            "Recall: of all images of the class, the share found. Precision: when the model "
            "names the class, the share that is right. Details on **Per-class metrics**."
        )

st.subheader("Run")
facts = tables.run_facts(run.meta, m_all, server_paths=not settings.current().hosted)
for col, (section, items) in zip(st.columns(len(facts)), facts.items(), strict=True):
    with col.container(border=True):
        st.markdown(f"**{section}**")
        st.markdown("  \n".join(f"{label}: {md_code(text)}" for label, text in items))
skipped = tables.skipped_table(run.meta)
with st.expander(f"Skipped files ({len(skipped)})", icon=":material/block:"):
    if skipped.empty:
        st.caption("Every file in the dataset was read and evaluated.")
    else:
        st.dataframe(skipped, hide_index=True)

ui_tasks.rerun_if_pending()  # "Compute now" hashes or embeddings still running: show them when done
