"""Page state that survives navigation: every page's selections, kept in keys it owns.

Streamlit forgets a widget's key at the end of any run that does not draw the widget, so
leaving a page drops its selections (and code that reads such a key raises ``KeyError`` on
the way back). Each page therefore keeps its selections in an owned store,
``st.session_state[STORE]`` (widget key -> value), that Streamlit never cleans:

- :func:`keep` before a widget is drawn: the widget's live value (the user's last change, a
  callback's or :func:`seed_from_link`'s write) goes into the store; a widget dropped while
  the page was away is re-seeded from the store; a first visit gets the default. The widget
  is then drawn with ``key=`` and no ``default``/``value``/``index`` of its own.
- :func:`put` when the page itself changes a selection (a new run opens on its most
  confused cell, new filters go back to page 1): the widget and the store together.
- :func:`forget` to go back to the defaults (Overview's "Reset" of the thresholds).

A shared link still wins on the session's first view: call ``seed_from_link`` before
``keep``; its value is live, so ``keep`` takes it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import streamlit as st

STORE = "_page_state"  # widget key -> the value its page last had


def _store() -> dict[str, Any]:
    return st.session_state.setdefault(STORE, {})


def keep(
    key: str,
    default: Any = None,
    *,
    options: Collection[Any] | None = None,
    many: bool = False,
) -> Any:
    """Before widget ``key`` is drawn: give it the value its page had and return that value.

    default: the first visit's value, or a function returning it (computed only then).
    options: the values allowed now; a kept value outside them (another run's class, a split
    this run lacks) falls back to ``default``. many: the value is a list (a multiselect);
    only its entries outside ``options`` are dropped.
    """
    store = _store()
    if key in st.session_state:  # drawn on the last run, or set by a callback or a link
        value = st.session_state[key]
    elif key in store:  # the page was left: Streamlit dropped the widget, the store did not
        value = store[key]
    else:
        value = default() if callable(default) else default
    if options is not None:
        if many:
            value = [v for v in value if v in options]
        elif value not in options:
            value = default() if callable(default) else default
    return put(key, value)


def put(key: str, value: Any) -> Any:
    """Set page state ``key`` (widget and store) to ``value`` before its widget is drawn."""
    st.session_state[key] = _store()[key] = value
    return value


def forget(*keys: str) -> None:
    """Drop ``keys`` from the widgets and the store: their next :func:`keep` takes the default."""
    store = _store()
    for key in keys:
        st.session_state.pop(key, None)
        store.pop(key, None)
