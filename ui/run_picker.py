"""The sidebar's run picker on every page: the session's run, kept across a changing store.

The choice lives in ``st.session_state[RUN_KEY]`` (a key this module owns) and in ``?run=``.
The selectbox that shows it is keyed by the list it shows (:func:`widget_key`) and re-seeded
from RUN_KEY on every rerun: a selectbox comes back from the browser as an index, so with one
widget key across lists a run stored by anyone (newest first) shifted every open session's
choice to its neighbour. :func:`chosen_run` is the pure rule, tested directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import streamlit as st

from core.engine.sample import CHECKPOINTS
from core.runs import Run
from ui import new_run
from ui.state import RUN_KEY, list_runs, run_label

PENDING_KEY = "_pending_run_id"


def chosen_run(
    ids: Sequence[str],
    *,
    current: str | None,
    pending: str | None = None,
    linked: str | None = None,
    default: str | None = None,
) -> str | None:
    """Return the session's run among stored ``ids``: a run just made (``pending``) wins, then
    the run the session already has while it is stored (wherever the list put it), then the
    URL's ``linked`` run, then ``default``."""
    if pending in ids:
        return pending
    if current in ids:
        return current
    return linked if linked in ids else default


def widget_key(ids: Sequence[str]) -> str:
    """Return the selectbox key for this list of runs: a new list is a new widget, so an index
    the browser sent for the old list is never read against the new one."""
    return "_run_pick_" + hashlib.sha256("|".join(ids).encode()).hexdigest()[:12]


def sidebar(*, can_edit: bool = True) -> None:
    """Render the run picker; keeps ``st.session_state[RUN_KEY]`` and ``?run=`` in step.

    ``can_edit`` False (a hosted viewer): no New run form, so no upload and no evaluation.
    """
    runs = list_runs()
    ids = [r.run_id for r in runs]
    labels = {r.run_id: run_label(r) for r in runs}
    pending = st.session_state.get(PENDING_KEY)
    if pending in ids:
        del st.session_state[PENDING_KEY]
    st.session_state[RUN_KEY] = chosen_run(
        ids,
        current=st.session_state.get(RUN_KEY),
        pending=pending,
        linked=st.query_params.get("run"),
        default=_default(runs),
    )
    widget = widget_key(ids)
    st.session_state[widget] = st.session_state[RUN_KEY]
    with st.sidebar:
        st.header("Run")
        if ids:
            st.selectbox(
                "Stored runs",
                ids,
                key=widget,
                on_change=_picked,
                args=(widget,),
                format_func=lambda rid: labels.get(rid, rid),
                help="A run is one checkpoint evaluated on one dataset; it is stored once.",
            )
        else:
            st.caption("No stored runs yet.")
        if can_edit:
            with st.expander("New run", expanded=not ids):
                new_run.form()
    if st.session_state.get(RUN_KEY):
        st.query_params["run"] = st.session_state[RUN_KEY]


def _picked(widget: str) -> None:
    """The analyst chose a run in the sidebar: it becomes the session's run."""
    st.session_state[RUN_KEY] = st.session_state[widget]


def _default(runs: list[Run]) -> str | None:
    """Return the good sample run when present (a populated first view), else the newest."""
    for r in runs:
        if r.meta["checkpoint"]["name"] == CHECKPOINTS["good"].name:
            return r.run_id
    return runs[0].run_id if runs else None


def open_run(run_id: str) -> None:
    """Open ``run_id`` on Overview: the sidebar's picker takes it before drawing its widget."""
    st.session_state[PENDING_KEY] = run_id
    st.query_params["run"] = run_id
    st.switch_page("pages/overview.py")
