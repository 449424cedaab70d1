"""All runs: every stored run with its headline metrics, one row per split."""

from __future__ import annotations

import streamlit as st

from core.tables import runs_table
from ui import downloads
from ui.boot import ensure_app
from ui.state import list_runs

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
ORDER = ("checkpoint", "dataset", "split", "images", "accuracy", "balanced accuracy", "macro F1",
         "worst class recall", "skipped files", "architecture", "run", "created")  # fmt: skip
table = runs_table(runs)
st.dataframe(table, hide_index=True, column_config=pct, column_order=ORDER)
downloads.offer(table, what="All runs", stem="classlens-runs", key="runs")
st.caption(
    "Accuracy alone misleads: read it beside balanced accuracy and the worst class's recall. "
    "From the command line: `python -m core runs`."
)
