"""ClassLens dashboard: ``streamlit run app.py``.

Page config, the login gate (hosted mode only, see ui/auth.py), the bundled sample made
ready, the sidebar run picker, then ``st.navigation`` over the views in pages/. Pages are
thin: they read the chosen run and call core/.
"""

from __future__ import annotations

import streamlit as st

from core.engine.sample import ensure_sample_runs
from core.errors import ClassLensError
from ui.auth import CAN_EDIT_KEY, gate, load_settings, restore_destination
from ui.boot import inside_app
from ui.progress import evaluation_progress
from ui.run_picker import sidebar
from ui.state import list_runs

st.set_page_config(page_title="ClassLens", page_icon="🔍", layout="wide")


@st.cache_resource(show_spinner="Evaluating the bundled sample checkpoints (first start only)…")
def _sample_ready() -> bool:
    """Make sure the bundled sample runs exist; cached runs make this instant."""
    ensure_sample_runs()
    list_runs.clear()
    return True


PAGES = [
    st.Page(
        "pages/overview.py", title="Overview", icon=":material/health_and_safety:", default=True
    ),
    st.Page("pages/confusion.py", title="Confusion matrix", icon=":material/grid_on:"),
    st.Page("pages/per_class.py", title="Per-class metrics", icon=":material/table_chart:"),
    st.Page("pages/mistakes.py", title="Mistakes", icon=":material/image_search:"),
    st.Page("pages/overfitting.py", title="Overfitting", icon=":material/compare_arrows:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/difference:"),
    st.Page("pages/thresholds.py", title="Thresholds", icon=":material/tune:"),
    st.Page("pages/calibration.py", title="Calibration", icon=":material/speed:"),
    st.Page("pages/leakage.py", title="Leakage", icon=":material/content_copy:"),
    st.Page("pages/suspicious.py", title="Suspicious labels", icon=":material/flag:"),
    st.Page("pages/slices.py", title="Slices", icon=":material/filter_alt:"),
    st.Page("pages/embedding_map.py", title="Embedding map", icon=":material/scatter_plot:"),
    st.Page("pages/failure_clusters.py", title="Failure clusters", icon=":material/bubble_chart:"),
    st.Page("pages/robustness.py", title="Robustness", icon=":material/blur_on:"),
    st.Page("pages/runs.py", title="All runs", icon=":material/list:"),
]

# Before anything else is drawn: an anonymous visitor of a hosted server sees only the login.
role = gate(load_settings())
st.session_state[CAN_EDIT_KEY] = role.can_edit  # pages ask ui.auth.can_edit()

try:
    _sample_ready()
except ClassLensError as exc:
    st.error(f"Could not evaluate the bundled sample: {exc}")

page = st.navigation(PAGES, expanded=True)  # 15 views: none hidden behind "View more"
restore_destination()  # OIDC: the view a shared link opened before signing in
sidebar(can_edit=role.can_edit)
evaluation_progress()  # a New run's progress, above whichever page is open
with inside_app():
    page.run()
