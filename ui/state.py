"""What every page needs: the chosen run, the split, the verdict thresholds.

The chosen run lives in ``st.session_state`` and in the URL (``?run=<id>``) so a copied link
opens the same view; pages call :func:`current_run` and never read the store themselves.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from core.diagnostics import Thresholds
from core.runs import Run, RunStore

RUN_KEY = "run_id"


@st.cache_resource(ttl=3)
def list_runs() -> list[Run]:
    """Return the stored runs, newest first (re-read every few seconds)."""
    return RunStore().list()


@st.cache_resource(max_entries=16)
def load_run(run_id: str) -> Run | None:
    """Return one run; runs are immutable, so its predictions are read once per server."""
    return RunStore().get(run_id)


def current_run() -> Run:
    """Return the run chosen in the sidebar, or tell the user how to make one and stop."""
    rid = st.session_state.get(RUN_KEY)
    run = load_run(rid) if rid else None
    if run is None:
        st.info("Choose a run in the sidebar, or make one under **New run**.")
        st.stop()
    return run


def split_picker(run: Run, *, key: str = "split", label: str = "Split") -> str:
    """Render a split selector (test first) and return the chosen split."""
    order = sorted(run.splits, key=lambda s: {"test": 0, "val": 1, "train": 2}.get(s, 3))
    # Re-assign every run: a widget key left by another page is otherwise dropped (the widget
    # there has another id) and the control here would come up empty, returning None.
    chosen = st.session_state.get(key)
    st.session_state[key] = chosen if chosen in order else order[0]
    return (
        st.segmented_control(label, order, key=key, required=True) if len(order) > 1 else order[0]
    )


def thresholds() -> Thresholds:
    """Return the verdict thresholds the user set on the Overview (defaults otherwise)."""
    values = st.session_state.get("thresholds", {})
    names = {f.name for f in dataclasses.fields(Thresholds)}
    return Thresholds(**{k: v for k, v in values.items() if k in names})


def run_label(run: Run) -> str:
    """Return a short human label for a run: checkpoint · dataset · id."""
    data = run.meta["dataset"]["root"].rstrip("/").split("/")[-1]
    return f"{run.meta['checkpoint']['name']} · {data} · {run.run_id[:6]}"
