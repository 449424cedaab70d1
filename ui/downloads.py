"""Downloads of what a view shows: its table as CSV and JSON, metrics.json, the HTML report.

Pages call :func:`offer` with the DataFrame behind a table or chart. Every CSV goes through
``core.analysis.exports.csv_bytes`` (cells that start like a spreadsheet formula are neutralised).
The
files are built only when the user clicks (deferred ``data`` callables), so a large table or
the report costs nothing on reruns, and a click does not rerun the page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from core.analysis.diagnostics import Thresholds
from core.analysis.exports import csv_bytes
from core.runs import Run
from ui.gallery import md_escape

ICON = ":material/download:"


def file_stem(run: Run, *parts: str) -> str:
    """Return a safe file-name stem: the checkpoint's stem, then ``parts``, joined by '-'."""
    words = [Path(run.meta["checkpoint"]["name"]).stem, *parts]
    return "-".join(re.sub(r"[^A-Za-z0-9._]+", "_", w).strip("_") or "_" for w in words)


def table_json(df: pd.DataFrame) -> bytes:
    """Return ``df`` as a JSON list of row objects (NaN as null), UTF-8."""
    return df.to_json(orient="records", force_ascii=False, indent=1).encode()


def offer(
    table: pd.DataFrame | Callable[[], pd.DataFrame],
    *,
    what: str,
    stem: str,
    key: str,
) -> None:
    """Render "Download <what>" as CSV and JSON buttons for ``table`` (or a function that
    returns it, called only on a click); files are named ``<stem>.csv`` / ``<stem>.json``."""
    get = table if callable(table) else (lambda: table)
    with st.container(horizontal=True, key=f"dl_{key}"):
        st.download_button(
            f"{md_escape(what)} (CSV)",  # labels render markdown; ``what`` may hold a name
            lambda: csv_bytes(get()),
            file_name=f"{stem}.csv",
            mime="text/csv",
            icon=ICON,
            on_click="ignore",
            key=f"dl_{key}_csv",
        )
        st.download_button(
            f"{md_escape(what)} (JSON)",
            lambda: table_json(get()),
            file_name=f"{stem}.json",
            mime="application/json",
            icon=ICON,
            on_click="ignore",
            key=f"dl_{key}_json",
        )


def metrics_json(run: Run) -> None:
    """Render the download of the run's metrics.json (the contract scripts gate on)."""
    st.download_button(
        "metrics.json",
        lambda: json.dumps(run.metrics, indent=1).encode(),
        file_name=f"{file_stem(run, run.run_id[:6], 'metrics')}.json",
        mime="application/json",
        icon=ICON,
        on_click="ignore",
        key="dl_metrics_json",
    )


def report(run: Run, split: str, thresholds: Thresholds) -> None:
    """Render "Export report": one self-contained HTML file of ``run`` on ``split``."""
    from core.figures.report import build_report  # plotly.js is read only when someone exports

    def build() -> bytes:
        return build_report(run, split, thresholds=thresholds).encode()

    st.download_button(
        "Export report",
        build,
        file_name=f"{file_stem(run, split, 'report')}.html",
        mime="text/html",
        icon=":material/ios_share:",
        on_click="ignore",
        type="primary",
        key="dl_report",
        help="One HTML file with the verdict, metrics, interactive charts and the top mistakes; "
        "it opens offline, in any browser, without ClassLens.",
    )
