"""Evaluation progress in the main area, above the page, where the analyst looks.

The New run form (ui.new_run) records which jobs this session follows under
``jobs.FOLLOW_KEY``; app.py calls :func:`evaluation_progress` after the sidebar, so every page
shows, from the first second, each job's phase (starting, loading the model, scanning the
dataset, preparing, evaluating n/N at img/s with the time left, writing the run) and opens the
new run when all are done.
"""

from __future__ import annotations

import streamlit as st

from ui import jobs
from ui.form_errors import for_form
from ui.run_picker import PENDING_KEY
from ui.state import RUN_KEY, list_runs
from ui.text import md_escape

OPENED_KEY = "_opened_job"  # the followed keys whose run was opened already (open once)


def evaluation_progress() -> None:
    """Render the followed jobs' progress in the main area (nothing when none); refreshed every
    second only while one of them runs."""
    keys = st.session_state.get(jobs.FOLLOW_KEY)
    if not keys:
        return
    if waiting(tuple(keys)):
        _followed_live(tuple(keys))
    else:  # nothing to wait for: no timer, so no rerun closes a list the analyst just opened
        _followed(tuple(keys))


def waiting(keys: tuple[str, ...]) -> bool:
    """Return whether a followed job is still running (what the page refreshes for)."""
    return any(j is not None and not j.finished for j in map(jobs.get, keys))


@st.fragment(run_every=1.0)
def _followed_live(keys: tuple[str, ...]) -> None:
    _followed(keys)
    if not waiting(keys):  # the last one ended: one app rerun draws them without the timer
        st.rerun(scope="app")


def _followed(keys: tuple[str, ...]) -> None:
    followed = [j for j in map(jobs.get, keys) if j is not None]
    for job in followed:
        if job.error:
            st.error(f"{md_escape(job.label)}: {for_form(job.error)}")
        elif not job.finished:
            frac, text = jobs.status(job)
            if frac is None:
                st.info(text, icon=":material/hourglass_top:")
            else:
                st.progress(frac, text=text)
            if job.detail:
                st.caption(job.detail)
    done = [j for j in followed if j.finished and j.run is not None]
    stored = [j.run for j in done if j.run is not None]  # the same jobs, their runs
    if not done or any(not j.finished for j in followed):
        return
    if st.session_state.get(OPENED_KEY) != keys:
        st.session_state[OPENED_KEY] = keys
        list_runs.clear()
        # The run selectbox already exists in this run: hand the id over via a pending key
        # that the sidebar applies before it draws the widget.
        st.session_state[PENDING_KEY] = stored[-1].run_id
        st.rerun(scope="app")
    if st.session_state.get(RUN_KEY) != stored[-1].run_id:
        return  # the analyst has moved on to another run: no stale banner above every page
    names = ", ".join(r.run_id[:6] for r in stored)
    st.success(f"Done: run {names} {'is' if len(done) == 1 else 'are'} stored; the last is open.")
