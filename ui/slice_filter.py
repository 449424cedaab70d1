"""The slice filter in the sidebar: "Images: all / where <column> is/between …" on every page.

The filter is the ``?where=`` text of ``core.analysis.where`` kept in ``ui.page_state`` under
:data:`WHERE_KEY` (survives page changes) and in the URL (a copied link opens the same slice).
``ui.state.current_run`` calls :func:`narrowed`, so every page computes on
``Run.subset`` of the chosen run and shows "n of N images" (:func:`note`). A sliced run's id is
``<run id>~<where text>``, which ``ui.state.load_run`` resolves (:func:`cut`), so caches keyed
by run id keep slices apart. Other pages set the filter with :func:`apply`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import streamlit as st

from core import selections
from core.analysis.where import (
    SELECTED,
    SELECTION,
    Condition,
    MissingColumns,
    Where,
    describe,
    mask,
    parse,
    to_query,
)
from core.images import columns as slice_table
from core.images import properties
from core.runs import Run
from ui.page_state import keep, put
from ui.text import md_escape

WHERE_KEY = "slice_where"  # page state: the filter as ?where= text ("" = all images)
PARAM = "where"
SEP = "~"  # <run id>~<where text>: the id of a sliced run
_LINK_SEEN = "_slice_link_seen"
MAX_VALUES_SHOWN = 1000  # distinct values offered in the value picker


# --- the filter's state -------------------------------------------------------------------------


def current_text() -> str:
    """Return the filter's ``?where=`` text; a shared link wins on the session's first look."""
    if not st.session_state.get(_LINK_SEEN):
        st.session_state[_LINK_SEEN] = True
        linked = st.query_params.get(PARAM)
        if linked is not None:
            put(WHERE_KEY, linked)
    return str(keep(WHERE_KEY, ""))


def current_where() -> Where:
    """Return the filter; a text that does not read is dropped with a warning saying why."""
    text = current_text()
    try:
        return parse(text)
    except ValueError as exc:
        st.warning(f"{md_escape(str(exc))} Showing all images.", icon=":material/filter_alt_off:")
        apply(Where())
        return Where()


def apply(where: Where | str) -> None:
    """Set the filter (a :class:`Where` or its ``?where=`` text) and the URL; callable from a
    widget callback or a page (then ``st.rerun()``). Raises ValueError for unreadable text."""
    text = to_query(where) if isinstance(where, Where) else to_query(parse(where))
    st.session_state[_LINK_SEEN] = True  # from here on the session's own choice wins
    put(WHERE_KEY, text)
    _write_link(text)


def use_selection(run: Run, rows: Any) -> None:
    """Make the images at ``rows`` (over ``run.predictions()``) the filter's map selection:
    stored once in the run folder (core.selections), replacing an earlier map selection and
    ANDed with the other conditions. A widget callback; errors show as ``st.error``."""
    try:
        sid = selections.save(run, rows)
    except ValueError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    kept = [c for c in current_where().conditions if c.op != SELECTED]
    apply(Where((*kept, Condition(SELECTION, SELECTED, sid))))


def _write_link(text: str) -> None:
    if text:
        if st.query_params.get(PARAM) != text:
            st.query_params[PARAM] = text
    elif PARAM in st.query_params:
        del st.query_params[PARAM]


# --- sliced runs --------------------------------------------------------------------------------


def columns_for(run: Run, where: Where | None = None) -> pd.DataFrame:
    """Return ``run``'s slice table; image properties only when measured already or named by
    ``where`` (measuring reads every image once)."""
    wanted = where is not None and any(c in properties.COLUMNS for c in where.columns())
    measured = properties.cache_path(run.parent or run).exists()  # a stat, not a read
    return slice_table.slice_columns(run, with_properties=wanted or measured)


def cut(run: Run, text: str) -> Run:
    """Return ``run`` restricted to the images the ``?where=`` text selects (id
    ``<run id>~<text>``). Raises MissingColumns / ValueError when it does not apply."""
    where = parse(text)
    chosen = {sid: selections.rows(run, sid) for sid in where.selections()}
    rows = mask(where, columns_for(run, where), selections=chosen)
    return run.subset(rows, describe(where), key=to_query(where))


def restrict(run: Run) -> Run:
    """Return ``run`` under the current filter (the run itself when there is none, or when the
    filter names a column it lacks: then a warning says so)."""
    text = to_query(current_where())
    if not text:
        return run
    from ui.state import load_run  # ui.state imports this module

    try:
        sliced = load_run(f"{run.run_id}{SEP}{text}")
    except (MissingColumns, ValueError) as exc:
        st.warning(
            f"{md_escape(str(exc))} Showing all images of this run.",
            icon=":material/filter_alt_off:",
        )
        return run
    return sliced if sliced is not None else run


def narrowed(run: Run) -> Run:
    """Draw the filter in the sidebar for ``run``, return the run under it and say "n of N"
    above the page; stop with a message when no image matches."""
    sidebar(run)
    sliced = restrict(run)
    if sliced is not run and not len(sliced.predictions()):
        st.warning(
            f"No image of this run matches the filter ({md_escape(sliced.meta['slice']['label'])})."
            " Change it or pick **All images** under *Images* in the sidebar.",
            icon=":material/filter_alt_off:",
        )
        st.stop()
    note(sliced)
    return sliced


def note(run: Run) -> None:
    """Show "Images where …: n of N" (and per split) when ``run`` is a slice; else nothing."""
    info = run.meta.get("slice")
    if not info:
        return
    per_split = " · ".join(
        f"{s}: {info['n_by_split'].get(s, 0):,} of {n:,}" for s, n in info["of_by_split"].items()
    )
    with st.container(key="slice_note"):
        st.info(
            f"Images where **{md_escape(info['label'])}**: **{info['n']:,} of {info['of']:,} "
            "images** "
            f"({per_split}). Every number on this page is computed on them.",
            icon=":material/filter_alt:",
        )


# --- the sidebar --------------------------------------------------------------------------------


def _drop(i: int) -> None:
    where = current_where()
    apply(Where(tuple(c for j, c in enumerate(where.conditions) if j != i)))


def _add(conditions: list[Condition]) -> None:
    where = current_where()
    apply(Where(tuple(dict.fromkeys((*where.conditions, *conditions)))))


def _date(value: Any) -> str:
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else str(value)


def _new_conditions(column: str, kind: str, df: pd.DataFrame) -> list[Condition]:
    """Draw the value inputs for ``column`` and return the conditions they make (or [])."""
    series = df[column]
    if kind in ("categorical", "bool"):
        keep("slice_new_op_cat", "is", options=["is", "is not"])
        op = st.segmented_control(
            "Images whose value", ["is", "is not"], key="slice_new_op_cat", required=True
        )
        values = sorted(series.dropna().astype(str).unique().tolist())[:MAX_VALUES_SHOWN]
        chosen = st.multiselect("Values", values, key=f"slice_new_values-{column}")
        if not chosen:
            return []
        if op == "is":
            several = len(chosen) > 1
            return [
                Condition(
                    column, "in" if several else "is", tuple(chosen) if several else chosen[0]
                )
            ]
        return [Condition(column, "is not", v) for v in chosen]
    keep("slice_new_op_num", "between", options=["between", "<", ">="])
    op = st.segmented_control(
        "Images whose value is", ["between", "<", ">="], key="slice_new_op_num", required=True
    )
    if op is None:  # required=True: None only before the widget's first value
        return []
    present = series.dropna()
    if kind == "date":
        lo_d, hi_d = present.min().date(), present.max().date()
        if op == "between":
            picked = st.date_input("From – to", (lo_d, hi_d), key=f"slice_new_dates-{column}")
            if not isinstance(picked, tuple) or len(picked) != 2:
                return []
            return [Condition(column, "between", (_date(picked[0]), _date(picked[1])))]
        day = st.date_input("Date", lo_d, key=f"slice_new_date-{column}")
        return [Condition(column, op, _date(day))]
    lo, hi = float(present.min()), float(present.max())
    if op == "between":
        a, b = st.columns(2)
        low = a.number_input("From", value=lo, key=f"slice_new_lo-{column}", format="%g")
        high = b.number_input("To", value=hi, key=f"slice_new_hi-{column}", format="%g")
        if low > high:
            st.caption("From is above To: swap them.")
            return []
        return [Condition(column, "between", (low, high))]
    value = st.number_input("Value", value=(lo + hi) / 2, key=f"slice_new_x-{column}", format="%g")
    return [Condition(column, op, value)]


def sidebar(run: Run) -> None:
    """Render "Images: all / where …" in the sidebar: the conditions, each removable, and a
    form to add one (AND)."""
    where = current_where()
    with st.sidebar, st.container(key="slice_filter"):
        st.header("Images")
        if not where:
            st.caption("All images. Add a condition to compute every page on a slice.")
        for i, c in enumerate(where.conditions):
            text_col, drop_col = st.columns([5, 1], vertical_alignment="center")
            text_col.markdown(
                f"{'where' if i == 0 else 'and'} **{md_escape(describe(Where((c,))))}**"
            )
            drop_col.button(
                ":material/close:",
                key=f"slice_drop_{i}",
                on_click=_drop,
                args=(i,),
                help="Remove this condition",
            )
        if where:
            st.button("All images", key="slice_clear", on_click=apply, args=(Where(),))
        try:
            df = columns_for(run)
        except (OSError, ValueError) as exc:
            st.caption(f"No columns to filter on: {md_escape(str(exc))}")
            return
        kinds = slice_table.column_kinds(df)
        with st.expander("Add a condition", icon=":material/filter_alt:"):
            names = list(kinds)
            keep("slice_new_column", names[0] if names else None, options=names)
            column = st.selectbox("Column", names, key="slice_new_column")
            if column is None:
                return
            new = _new_conditions(column, kinds[column], df)
            st.button(
                "Add",
                key="slice_add",
                on_click=_add,
                args=(new,),
                disabled=not new,
                type="primary",
            )
    _write_link(to_query(where))


__all__ = ["apply", "current_where", "cut", "narrowed", "note", "restrict", "use_selection"]
