"""What every page needs: the chosen run, the split, the verdict thresholds.

The chosen run lives in ``st.session_state`` and in the URL (``?run=<id>``) so a copied link
opens the same view; pages call :func:`current_run` and never read the store themselves. The
state that matters on a page (the split, its main selection) is mirrored into the URL the
same way with :func:`seed_from_link` (before the widget, then ``ui.page_state.keep``) and
the writer it returns (after it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import streamlit as st

from core.analysis.diagnostics import Thresholds
from core.analysis.tables import headline_metric
from core.runs import Run, RunStore
from ui.page_state import keep

RUN_KEY = "run_id"
_LINKS_SEEN = "_links_seen"  # URL params already applied in this session (first view only)


@st.cache_resource(ttl=3)
def list_runs() -> list[Run]:
    """Return the stored runs, newest first (re-read every few seconds)."""
    return RunStore().list()


@st.cache_resource(max_entries=16)
def load_run(run_id: str) -> Run | None:
    """Return one run; runs are immutable, so its predictions are read once per server.

    ``<run id>~<where text>`` is that run under the slice filter (ui.slice_filter.cut);
    MissingColumns/ValueError when the filter does not apply to it.
    """
    base, sliced, text = run_id.partition("~")
    if sliced:
        from ui.slice_filter import cut  # ui.slice_filter imports this module

        run = load_run(base)
        return None if run is None else cut(run, text)
    return RunStore().get(run_id)


def current_run() -> Run:
    """Return the run chosen in the sidebar under the sidebar's slice filter (ui.slice_filter:
    a ``Run.subset``, with "n of N images" shown), or tell the user how to make one and stop.
    Call it right below the page's title and caption: the slice note goes where it is called,
    the same place on every page (tests/app/test_slice_filter.py checks the order)."""
    rid = st.session_state.get(RUN_KEY)
    run = load_run(rid) if rid else None
    if run is None:
        st.info("Choose a run in the sidebar, or make one under **New run**.")
        st.stop()
    from ui.slice_filter import narrowed  # ui.slice_filter imports this module

    return narrowed(run)


def split_picker(run: Run, *, key: str = "split", label: str = "Split") -> str:
    """Render a split selector (test first) and return the chosen split."""
    order = sorted(run.splits, key=lambda s: {"test": 0, "val": 1, "train": 2}.get(s, 3))
    # Kept across pages (ui.page_state): Streamlit drops the widget key of a page not shown.
    write = seed_from_link(key, "split", order)
    keep(key, order[0], options=order)
    split = (
        st.segmented_control(label, order, key=key, required=True) if len(order) > 1 else order[0]
    )
    split = split or order[0]  # required=True: never None; typed str | None by Streamlit
    write(split)
    return split


def seed_from_link(
    key: str,
    param: str,
    options: Sequence[Any],
    labels: Sequence[str] | None = None,
    *,
    many: bool = False,
) -> Callable[[Any], None]:
    """Before widget ``key`` is drawn, on the session's first look at ``?param=``: set the
    widget to the option(s) the URL names by label (a shared link); unknown labels are
    ignored. Later reruns leave the widget alone, so the user's own changes stick.

    Returns the writer to call with the widget's value after it is drawn: it puts the value
    (by label) in the URL as ``?param=``, so the address bar is a link to this view; an empty
    choice removes the parameter.
    """
    texts = list(labels or [str(o) for o in options])
    seen = st.session_state.setdefault(_LINKS_SEEN, set())
    if param not in seen:
        seen.add(param)
        by_label = dict(zip(texts, options, strict=True))
        wanted = [by_label[v] for v in st.query_params.get_all(param) if v in by_label]
        if wanted:
            st.session_state[key] = wanted if many else wanted[0]
    return partial(_write_link, param, dict(zip(options, texts, strict=True)), many)


def _write_link(param: str, label_of: dict[Any, str], many: bool, value: Any) -> None:
    texts = [label_of[v] for v in (value if many else [value]) if v in label_of]
    if not texts:
        if param in st.query_params:
            del st.query_params[param]
    elif st.query_params.get_all(param) != texts:
        st.query_params[param] = texts if many else texts[0]


def thresholds() -> Thresholds:
    """Return the verdict thresholds the user set on the Overview (defaults otherwise)."""
    values = st.session_state.get("thresholds", {})
    names = {f.name for f in dataclasses.fields(Thresholds)}
    return Thresholds(**{k: v for k, v in values.items() if k in names})


def run_label(run: Run) -> str:
    """Return a short human label for a run: checkpoint · headline metric · dataset · id."""
    data = run.meta["dataset"]["root"].rstrip("/").split("/")[-1]
    name, metric = run.meta["checkpoint"]["name"], headline_metric(run.metrics)
    return f"{name} · {metric} · {data} · {run.run_id[:6]}"
