"""Slices: accuracy by metadata, sub-folder and image property, and the weak segments found
for you with a corrected significance test; one click applies a slice as the sidebar filter.
"""

from __future__ import annotations

import streamlit as st

from core.analysis import slices
from core.engine import metadata
from core.figures.slices import slice_figure
from core.images import columns, properties
from ui import downloads, slice_filter
from ui.boot import ensure_app
from ui.gallery import md_escape
from ui.page_state import keep
from ui.state import current_run, load_run, split_picker
from ui.tables import pct

ensure_app()

COLUMN_KEY = "sl_column"
AUTO_MEASURE = 20_000  # images measured on open; larger runs wait for the button


@st.cache_data(max_entries=32, show_spinner="Reading the slice table…")
def _table(run_id: str):  # noqa: ANN202 - a DataFrame
    run = load_run(run_id)
    assert run is not None, f"run {run_id} disappeared"
    return columns.slice_columns(run, with_properties=properties.has_cached_properties(run))


@st.cache_data(max_entries=32, show_spinner="Searching for weak segments…")
def _search(run_id: str, split: str, measured: bool) -> slices.Search:
    df = _table(run_id)
    return slices.weak_segments(df, columns.column_kinds(df), split=split)


def _apply(conditions: tuple[slices.Condition, ...]) -> None:
    slice_filter.apply(slices.to_where(conditions))


st.title("Slices")
st.caption(
    "Which images does the model fail on? Accuracy per value of each metadata column, "
    "sub-folder and image property (quantile bins set on train, never on the judged split), "
    "with 95% bootstrap intervals, and the segments significantly worse than the rest."
)
run = current_run()
c_info, c_split = st.columns([3, 1])
with c_split:
    split = split_picker(run)
if (why := metadata.problem(run)) is not None:
    st.warning(
        f"The dataset's metadata file was not used: {md_escape(why)}", icon=":material/table:"
    )
measured = properties.has_cached_properties(run)
if not measured:
    n = len(run.predictions())
    if n <= AUTO_MEASURE or st.button("Measure image properties", icon=":material/tune:"):
        with st.spinner(f"Measuring brightness, contrast, sharpness… of {n:,} images"):
            properties.run_properties(run)
        _table.clear()
        measured = True
    else:
        st.info(f"Image properties are not measured yet ({n:,} images, read once).")
df = _table(run.run_id)
for note in (metadata.info(run) or {}).get("warnings", []):
    st.caption(f":material/info: {md_escape(note)}")
rows = df[df["split"] == split]
if rows.empty:
    st.info(f"No images were evaluated in the {split} split.")
    st.stop()

kinds = columns.column_kinds(df)
choices = [c for c in kinds if c not in ("split", "correct")]
default = next((c for c in choices if c not in columns.BASE_COLUMNS), "true class")
keep(COLUMN_KEY, default, options=choices)
column = st.selectbox("Column", choices, key=COLUMN_KEY)
if refused := columns.refused_columns(df):
    st.caption(
        "Not sliced: " + "; ".join(f"{md_escape(c)} ({md_escape(w)})" for c, w in refused.items())
    )
table = slices.per_value(df, column, kinds[column], split=split)
overall = float(rows["correct"].mean())
c_info.metric(f"Accuracy on {split}", pct(overall), help=f"{len(rows):,} images")
st.plotly_chart(slice_figure(table, column=column, overall=overall), key="sl_chart")
shown = table.drop(columns="condition")
shares = ["share", "accuracy", "ci low", "ci high", "rest accuracy"]
st.dataframe(  # one decimal everywhere, as the chart and sentences ("97.66%" beside "97.6%")
    shown.style.format("{:.1%}", subset=shares, na_rep="–").format(
        "{:+.1f}", subset=["gap (points)"], na_rep="–"
    ),
    hide_index=True,
)
downloads.offer(
    shown,
    what="Slices",
    stem=downloads.file_stem(run, split, "slices", column),
    key="sl_table",
)
with st.container(horizontal=True, key="sl_values"):
    for i, cond in enumerate(table["condition"]):
        st.button(
            cond.text(),
            key=f"sl_value_{i}",
            icon=":material/filter_alt:",
            help="Apply this slice as the filter of every page",
            on_click=_apply,
            args=((cond,),),
        )

st.subheader("Weak segments")
search = _search(run.run_id, split, measured)
st.caption(
    f"{search.tried:,} slices of {split} tried (single conditions and pairs over "
    f"{len(search.columns)} columns, at least {slices.MIN_SUPPORT} images each); Fisher's "
    f"exact test, Benjamini-Hochberg at a {pct(slices.ALPHA)} false discovery rate."
)
if not search.segments:
    st.success(f"No slice of {split} is significantly worse than the rest.")
for i, seg in enumerate(search.segments[:10]):
    with st.container(key=f"sl_segment_{i}", horizontal=True, vertical_alignment="center"):
        st.markdown(md_escape(seg.sentence()))
        st.button(
            "Apply as filter",
            key=f"sl_apply_{i}",
            icon=":material/filter_alt:",
            on_click=_apply,
            args=(seg.conditions,),
        )
