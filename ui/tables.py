"""What several pages share about tables: per-run tables cached once per server, and the one
percentage format of their metric tiles."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

ClassTable = Callable[[np.ndarray, np.ndarray, Sequence[str]], pd.DataFrame]


def class_columns(fmt: str, **columns: tuple[str, str | None]) -> dict[str, Any]:
    """Return the column_config of a per-class table (core.analysis.*.class_table): class
    and support first, then one number column per ``name=(label, help)`` shown as ``fmt``."""
    return {
        "class": st.column_config.TextColumn("class"),
        "support": st.column_config.NumberColumn("support", help="Images of the class"),
        **{
            name: st.column_config.NumberColumn(label, format=fmt, help=help_text)
            for name, (label, help_text) in columns.items()
        },
    }


def pct(x: float) -> str:
    """Return ``x`` as a percentage with one decimal, or "—" when it is undefined (NaN)."""
    return "—" if math.isnan(x) else f"{x:.1%}"


@st.cache_data(max_entries=16, show_spinner=False)
def _class_table(
    table: str, run_id: str, split: str, _build: ClassTable, _y_true: np.ndarray,
    _probs: np.ndarray, _names: Sequence[str],
) -> pd.DataFrame:  # fmt: skip
    return _build(_y_true, _probs, _names)


def class_table(
    build: ClassTable,
    run_id: str,
    split: str,
    y_true: np.ndarray,
    probs: np.ndarray,
    names: Sequence[str],
    *,
    spinner: str,
) -> pd.DataFrame:
    """Return ``build(y_true, probs, names)`` (one row per class) of one run's split, computed
    once per server: runs never change, so ``build``, the run id and the split are the key,
    and at 1,000 classes it takes seconds (``spinner`` says what is computed meanwhile)."""
    with st.spinner(spinner):
        table = f"{build.__module__}.{build.__qualname__}"  # a function is not hashable
        return _class_table(table, run_id, split, build, y_true, probs, names)
