"""A verdict level shown the same way on every page: green, amber or red box with its icon."""

from __future__ import annotations

import streamlit as st

_BOX = {"good": st.success, "needs attention": st.warning, "bad": st.error}
_ICON = {
    "good": ":material/check_circle:",
    "needs attention": ":material/warning:",
    "bad": ":material/dangerous:",
}


def verdict_box(level: str, body: str) -> None:
    """Render ``body`` (markdown) in the box of ``level`` (good / needs attention / bad)."""
    _BOX[level](body, icon=_ICON[level])
