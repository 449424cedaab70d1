"""Make every page run inside app.py, even on a deep link to a fresh server.

Because the views live in ``pages/``, Streamlit's legacy multipage mode runs a page file on
its own when the first request after a server start is a deep link (``/confusion?run=...``):
no sidebar, no navigation. A page calls :func:`ensure_app` first; outside app.py it runs
app.py instead, whose ``st.navigation`` then routes back to the same page properly.
"""

from __future__ import annotations

import runpy
import threading
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

APP = Path(__file__).resolve().parents[1] / "app.py"
_state = threading.local()  # one script run per thread: a per-run flag


@contextmanager
def inside_app():
    """Mark the current script run as routed by app.py (used by app.py around page.run())."""
    _state.in_app = True
    try:
        yield
    finally:
        _state.in_app = False


def ensure_app() -> None:
    """Run app.py (and stop this page) unless this page is being run by app.py."""
    if getattr(_state, "in_app", False):
        return
    runpy.run_path(str(APP), run_name="__main__")
    st.stop()
