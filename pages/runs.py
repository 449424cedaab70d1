"""All runs: every stored run with its verdict and headline metrics, one row per split; a
click on a row opens the run."""

from __future__ import annotations

import streamlit as st

from core.analysis.tables import runs_table
from ui import downloads
from ui import health as health_ui
from ui.boot import ensure_app
from ui.run_picker import open_run
from ui.state import list_runs, thresholds

ensure_app()

st.title("All runs")
runs = list_runs()
if not runs:
    st.info("No runs yet. Make one under **New run** in the sidebar, or with the CLI.")
    st.stop()
pct = {
    c: st.column_config.ProgressColumn(c, format="percent", min_value=0, max_value=1)
    for c in ("accuracy", "balanced accuracy", "macro F1", "worst class recall")
}
ORDER = ("checkpoint", "verdict", "split", "images", "accuracy", "balanced accuracy",
         "macro F1", "worst class recall", "skipped files", "dataset", "architecture", "run",
         "created")  # fmt: skip
t = thresholds()
summaries = {(r.run_id, s): health_ui.summary(r, s, t) for r in runs for s in r.splits}
table = runs_table(runs, {k: (v.level, v.headline) for k, v in summaries.items()})
picked = st.dataframe(
    table,
    hide_index=True,
    column_config={**pct, "verdict": st.column_config.TextColumn("verdict", width="large")},
    column_order=ORDER,
    on_select="rerun",
    selection_mode="single-row",
    key="runs_table",
)
if picked.selection.rows:
    open_run(table["run"].iloc[picked.selection.rows[0]])
downloads.offer(table, what="All runs", stem="classlens-runs", key="runs")
st.caption(
    "Click a row to open its run. The verdict is Overview's health summary of that split "
    "(hover for the whole sentence). Accuracy alone misleads: read it beside balanced accuracy "
    "and the worst class's recall. From the command line: `python -m core runs`."
)
