"""A verdict level shown the same way on every page: green, amber or red box with its icon."""

from __future__ import annotations

import streamlit as st

from core.analysis.diagnostics import pct_brief

_BOX = {"good": st.success, "needs attention": st.warning, "bad": st.error}
_ICON = {
    "good": ":material/check_circle:",
    "needs attention": ":material/warning:",
    "bad": ":material/dangerous:",
}


def verdict_box(level: str, body: str, *, key: str = "verdict") -> None:
    """Render ``body`` (markdown) in the box of ``level`` (good / needs attention / bad).

    Inside a container keyed ``key`` (a ``verdict...`` key unique on the page; the element
    gets class ``st-key-<key>``), so a red verdict is told apart from an error message (the
    browser tests count the latter)."""
    with st.container(key=key):
        _BOX[level](body, icon=_ICON[level])


def all_classes_pass(threshold: float) -> None:
    """Render the green box saying no class falls below ``threshold``."""
    st.success(
        f"Every class has precision and recall of at least {pct_brief(threshold)}.",
        icon=_ICON["good"],
    )
