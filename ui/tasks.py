"""Showing shared heavy work (core.hosting.tasks) on a page without waiting for it.

``ready(task, text)`` returns True once the task finished (after a short wait, so quick work
shows in the same rerun); otherwise it draws a progress bar and marks the page, and the
page's last line, ``rerun_if_pending()``, reruns it a moment later. ``ready`` always draws
exactly one element (the bar while the task runs, an empty ``st.empty`` once it finished), so
what the page draws after it keeps its place in both cases (a caller that calls it only
sometimes draws an ``st.empty`` in its place otherwise): a bar inserted only while running
pushed every later element down one place, and since each such rerun ends in ``st.rerun``
(never a finished script) the browser kept the previous run's elements on screen beside the
new ones for as long as the task ran. The script thread only
ever waits on its own session's short sleeps, never on another viewer's computation.
``result(task, text)`` is the whole block a page needs: progress and rerun while the task
runs, its ClassLensError as an info box (and stop) when it failed, else its result.
"""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from core.hosting.tasks import Task

PENDING_KEY = "_tasks_pending"  # session_state: labels of the tasks this rerun is waiting on
FIRST_WAIT_S = 0.3  # wait this long in the script before drawing progress (quick work)
POLL_S = 0.5  # then rerun the page this often until the task finishes


def ready(task: Task, text: str, *, wait: float = FIRST_WAIT_S) -> bool:
    """Return True when ``task`` finished; else draw its progress under ``text`` and mark the
    page to rerun (``rerun_if_pending``). Draws one element either way, after the wait (an
    ``st.empty`` once finished, else the bar), so the previous rerun's bar stays on screen
    while this one waits."""
    if task.wait(wait):
        st.empty()
        return True
    frac = task.fraction
    done = f": {task.done:,} of {task.total:,}" if frac is not None else ""
    elapsed = time.time() - task.submitted
    st.progress(frac or 0.0, text=f"{text}{done}… ({elapsed:.0f} s)")
    st.session_state.setdefault(PENDING_KEY, []).append(task.label)
    return False


def rerun_if_pending(poll: float = POLL_S) -> None:
    """Rerun the page after ``poll`` seconds when a ``ready`` call of this rerun said no."""
    if st.session_state.pop(PENDING_KEY, None):
        time.sleep(poll)
        st.rerun()


def result(task: Task, text: str) -> Any:
    """Return ``task``'s result; while it runs, draw its progress under ``text`` and rerun the
    page; when it ended with a ClassLensError, show that message and stop the page."""
    if not ready(task, text):
        rerun_if_pending()
    if task.error is not None:
        st.info(task.error, icon=":material/info:")
        st.stop()
    return task.result
