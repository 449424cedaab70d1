"""Pairs of images side by side (a held-out image and the train image it nearly copies), three
bordered cards to a row, each with both classes, a closeness line and both paths on hover."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from core.images import gallery
from core.runs import Run
from ui.gallery import md_escape, thumbnail_png

PAIR_PX = 96  # each thumbnail's width
PAIRS_PER_ROW = 3


def _thumb(run: Run, split: str, path: str) -> None:
    png = thumbnail_png(str(gallery.image_path(run, split, path)), PAIR_PX)  # decoded once
    if png is None:
        st.warning(f"Image not found: {md_escape(path)}", icon=":material/broken_image:")
        return
    st.image(png, width=PAIR_PX)


def pair_cards(
    pairs: pd.DataFrame, run: Run, split: str, closeness: Callable[[float, float], str]
) -> None:
    """Render one card per row of ``pairs`` (core.images.leakage.PAIR_COLUMNS): the ``split``
    image and its train image with their true classes, then ``closeness(distance,
    similarity)`` (markdown) and a flag when the two labels differ."""
    names = run.class_names
    for start in range(0, len(pairs), PAIRS_PER_ROW):
        rows = pairs.iloc[start : start + PAIRS_PER_ROW].itertuples()
        for cell, pair in zip(st.columns(PAIRS_PER_ROW), rows, strict=False):
            with cell.container(border=True):
                left, right = st.columns(2)
                with left:
                    _thumb(run, split, pair.path)
                    st.caption(f"{split}: **{md_escape(names[pair.y_true])}**")
                with right:
                    _thumb(run, "train", pair.train_path)
                    st.caption(f"train: **{md_escape(names[pair.train_y_true])}**")
                flag = " · :red[labels differ]" if pair.labels_differ else ""
                st.markdown(
                    f"{closeness(pair.distance, pair.similarity)}{flag}",
                    help=f"{split}/{pair.path} ↔ train/{pair.train_path}",
                )
