"""Per-class metrics: precision, recall, F1, specificity and support for every class, colored
by the verdict thresholds, with the averages, a bar chart and a CSV download. From
``PAGE_FROM`` classes on the table is searched, sorted and paged, so the page stays light."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.analysis import tables
from core.analysis.diagnostics import pct, pct_brief
from core.figures import charts
from core.images import gallery
from ui.alerts import all_classes_pass
from ui.boot import ensure_app
from ui.gallery import md_escape
from ui.page_state import keep, put
from ui.state import current_run, split_picker, thresholds

ensure_app()

FLAGGED_NAMED = 12  # worst classes named in the flag line; the table has them all
PAGE_FROM = 60  # from this many classes on: search, sort and pages (1,000 styled rows are slow)
PAGE_SIZES = (25, 50, 100)

st.title("Per-class metrics")
run = current_run()
split = split_picker(run)
t = thresholds()
m = run.metrics["splits"][split]
if m["n"] == 0:
    st.info(f"No images were evaluated in the {split} split.")
    st.stop()

with st.expander("Precision or recall: which one matters?", icon=":material/help:"):
    st.markdown(
        "- **Precision** answers *when the model says X, is it right?* Low precision: other "
        "images get called X (false alarms).\n"
        "- **Recall** answers *of all the X images, how many did it find?* Low recall: X "
        "images are missed.\n"
        "- **F1** balances the two; **specificity** is the share of non-X images correctly "
        "not called X; **support** is the number of X images.\n\n"
        "Which matters depends on the task: medical screening wants recall (do not miss a "
        "disease), photo sorting may prefer precision (do not file a wrong photo)."
    )

table = tables.per_class_table(m, t)
failing = tables.failing_classes(m, t)
if failing.empty:
    all_classes_pass(t.good_class)
else:
    names = ", ".join(
        f"'{md_escape(r['class'])}' ({r['weakest']} {pct(r['score'])})"
        for _, r in failing.head(FLAGGED_NAMED).iterrows()
    )
    if len(failing) > FLAGGED_NAMED:
        names += f" and {len(failing) - FLAGGED_NAMED} more (sort the table by status)"
    alert = st.error if (failing["status"] == "bad").any() else st.warning
    alert(
        f"**{len(failing)} of {len(table)} classes below {pct_brief(t.good_class)}:** {names}",
        icon=":material/flag:",
    )

rows = table
if len(table) >= PAGE_FROM:
    c_find, c_sort, c_size, c_page = st.columns([3, 2, 1, 1], vertical_alignment="bottom")
    keep("pc_find", "")
    keep("pc_sort", next(iter(tables.CLASS_SORTS)), options=tables.CLASS_SORTS)
    keep("pc_size", PAGE_SIZES[1], options=PAGE_SIZES)
    query = c_find.text_input("Find classes", key="pc_find", placeholder="Part of a class name")
    sort = c_sort.selectbox(
        "Sort by", list(tables.CLASS_SORTS), key="pc_sort",
        format_func=lambda k: tables.CLASS_SORTS[k][0],
    )  # fmt: skip
    size = c_size.selectbox("Rows per page", PAGE_SIZES, key="pc_size")
    view = tables.class_view(table, query=query, sort=sort)
    n_pages = gallery.page_count(len(view), size)
    signature = (run.run_id, split, query, sort, size)
    if st.session_state.get("pc_signature") != signature:  # new filter: back to page 1
        st.session_state["pc_signature"] = signature
        put("pc_page", 1)
    put("pc_page", min(max(1, keep("pc_page", 1)), n_pages))
    page = c_page.number_input("Page", min_value=1, max_value=n_pages, step=1, key="pc_page")
    rows = gallery.paginate(view, page=int(page), page_size=size)
    st.caption(
        f"Page {page} of {n_pages}: {len(rows)} of {len(view):,} classes"
        + (f" matching '{query}'" if query.strip() else "")
        + f" ({len(table):,} in all). The CSV below has every class."
    )
st.dataframe(
    tables.styled_per_class(rows, t),
    hide_index=True,
    height="content" if len(rows) <= charts.MANY_CLASSES else 600,
    column_config={"support": st.column_config.NumberColumn("support", help="Images of the class")},
    key="per_class_table",
)
st.caption(
    f"Cells: red below {pct_brief(t.bad_class)}, amber below {pct_brief(t.good_class)}, green "
    "otherwise (thresholds are set on the Overview). Click a header to sort."
)
st.dataframe(
    tables.averages_table(m).style.format("{:.1%}", subset=["precision", "recall", "f1"]),
    hide_index=True,
    key="averages_table",
)
st.caption(
    "Macro: the plain mean over classes, each class counts the same. Weighted: each class "
    "counts by its number of images, so large classes dominate (like accuracy)."
)
st.download_button(
    "Download the per-class table (CSV)",
    tables.per_class_csv(m, t),
    file_name=f"{Path(run.meta['checkpoint']['name']).stem}-{split}-per-class.csv",
    mime="text/csv",
    icon=":material/download:",
    on_click="ignore",
)
st.plotly_chart(charts.per_class_bars(rows, t), width="stretch", key="per_class_bars")
if rows is not table:
    st.caption("The bars show the classes of the page above.")
