"""The images two compared runs disagree on: the other run and the direction picked, then
cards with the true class and both runs' predictions, most confident mistakes first."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from core.analysis import compare, compare_view
from core.images import gallery
from core.runs import Run
from ui.gallery import md_escape, md_names, pager, thumbnail_grid
from ui.page_state import keep


def disagreements(
    result: compare_view.Comparison,
    runs: Sequence[Run],
    *,
    ids: Sequence[str],
    baseline: int,
    split: str,
) -> None:
    """Render the baseline's disagreements with one other of the compared ``runs`` (in
    ``result``'s order; ``ids`` their stored run ids, the picker's options): a picker when
    there are several, the direction, then the cards."""
    aligned = result.aligned
    ids, names = list(ids), compare.model_names(runs)
    md = [md_escape(n) for n in names]
    others = [rid for i, rid in enumerate(ids) if i != baseline]
    keep("cmp_flip_b", others[0], options=others)
    if len(others) > 1:
        label = dict(zip(ids, names, strict=True))
        st.selectbox(
            "Compare the baseline with", others, key="cmp_flip_b", format_func=label.__getitem__
        )
    other = ids.index(st.session_state["cmp_flip_b"])
    a, b = md[baseline], md[other]
    keep("cmp_flip_dir", "a", options=["a", "b"])
    direction = st.session_state["cmp_flip_dir"]
    flip = compare_view.flips(result, baseline=baseline, other=other, direction=direction)
    choices = {
        "a": f"Right in {a}, wrong in {b} ({flip.n_a_only:,})",
        "b": f"Wrong in {a}, right in {b} ({flip.n_b_only:,})",
    }
    st.segmented_control(
        "Images",
        list(choices),
        format_func=choices.__getitem__,
        key="cmp_flip_dir",
        required=True,
    )
    right, wrong = md[flip.right], md[flip.wrong]
    st.markdown(f"**{len(flip.positions):,}** images right in {right}, wrong in {wrong}")
    if not len(flip.positions):
        st.success(f"{wrong} gets every image right that {right} does.")
        return
    st.caption(
        f"Each card: the true class, then {a}'s and {b}'s predictions with their confidence "
        f"(✓ right, ✗ wrong); most confident {wrong} mistakes first. Top 3: {wrong}'s most "
        "likely classes."
    )
    wrong_run = runs[flip.wrong]
    rows = gallery.sort_rows(wrong_run.predictions().loc[aligned.rows[flip.wrong][flip.positions]])
    reset = (tuple(ids), split, other, direction)
    page, size = pager(len(rows), key="cmp_gallery", reset_on=reset)
    shown = gallery.paginate(rows, page=page, page_size=size)
    cards = compare.flip_labels(
        aligned,
        compare_view.aligned_positions(aligned, flip.wrong, shown.index),
        confidence=[r.predictions()["confidence"].to_numpy() for r in runs],
        names=md,
        models=[baseline, other],
        sep="  \n",  # one line each: true class, then each model
    )
    heads = {
        int(r): md_names(c, aligned.class_names) for r, c in zip(shown.index, cards, strict=True)
    }
    thumbnail_grid(shown, wrong_run, key="cmp_gallery", headline=heads.__getitem__)
