"""Suspicious labels: images whose given label the model disputes, to review."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.analysis import suspicious
from core.images import gallery
from ui.boot import ensure_app
from ui.gallery import pager, relabel_headline, thumbnail_grid
from ui.page_state import keep
from ui.state import current_run, split_picker

ensure_app()

st.title("Suspicious labels")
st.caption(
    "Images the model assigns to another class than their label (confident learning): a "
    "class counts for an image when its probability reaches that class's average "
    "self-confidence, which is low for a class the model is unsure of. A dispute is called "
    f"confident only when the suggested class gets at least {suspicious.CONFIDENT_PROB:.0%}. "
    "These are candidates for a relabel, not proven errors: the model has seen the training "
    "split, so judge the test split first."
)
run = current_run()

c_split, c_order = st.columns([2, 2], vertical_alignment="bottom")
with c_split:
    split = split_picker(run, key="sl_split")
keep("sl_order", next(iter(suspicious.ORDER_LABELS)), options=suspicious.ORDER_LABELS)
order = c_order.selectbox(
    "Sort",
    list(suspicious.ORDER_LABELS),
    format_func=suspicious.ORDER_LABELS.get,
    key="sl_order",
)

predictions = run.predictions()
table = suspicious.suspicious_labels(
    predictions, run.probs(), class_names=run.class_names, splits=[split], order=order
)
n_split = int((predictions["split"] == split).sum())
st.markdown(f"**{len(table):,}** suspicious labels among {n_split:,} {split} images")
if table.empty:
    st.success("No image in this split has a label the model disputes.")
    st.stop()
st.markdown(suspicious.dispute_sentence(table))
st.download_button(
    "Download the review list (CSV)",
    suspicious.to_csv(table),
    file_name=f"{Path(run.meta['checkpoint']['name']).stem}-{split}-suspicious-labels.csv",
    mime="text/csv",
    icon=":material/download:",
    on_click="ignore",
)

page, size = pager(len(table), key="sl_gallery", reset_on=(run.run_id, split, order))
visible = gallery.paginate(table, page=page, page_size=size)
heads = {
    int(r.row): relabel_headline(r.given, r.suggested, r.self_confidence, r.suggested_confidence)
    for r in visible.itertuples(index=False)
}
thumbnail_grid(predictions.loc[visible["row"]], run, key="sl_gallery", headline=heads.__getitem__)
st.caption(
    "Each card: the given label and its probability → the suggested label and its probability. "
    "Top 3 lists the model's most likely classes."
)
