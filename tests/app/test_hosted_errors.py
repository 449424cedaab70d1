"""A hosted server shows visitors no traceback (production config or not) and no server path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.runs import Run
from tests.app.conftest import ROOT

OPTION = "client.showErrorDetails"


@pytest.fixture(autouse=True)
def _restore(no_settings_leak: None) -> Iterator[None]:
    before = st.get_option(OPTION)
    st.set_option(OPTION, "full")  # as `streamlit run app.py` without the production config
    yield
    st.set_option(OPTION, before)


def _app(run: Run, classlens: dict) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if classlens:
        at.secrets["classlens"] = classlens
    at.query_params["run"] = run.run_id
    return at.run()


def test_hosted_forces_error_details_off(sample_runs: dict[str, Run]) -> None:
    at = _app(sample_runs["good"], {"hosted": True, "editor_password": "long-enough-pw"})
    assert not at.exception, at.exception
    assert st.get_option(OPTION) == "none"


def test_local_keeps_full_error_details_and_paths(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["good"]
    at = _app(run, {})
    assert not at.exception, at.exception
    assert st.get_option(OPTION) == "full"
    root = run.meta["dataset"]["root"]
    assert f"root: `{root}`" in " ".join(m.value for m in at.markdown)  # locally: in full


def test_hosted_overview_shows_the_dataset_folder_not_its_server_path(
    sample_runs: dict[str, Run],
) -> None:
    run = sample_runs["good"]
    root = run.meta["dataset"]["root"]
    at = _app(run, {"hosted": True, "viewer_password": "long-enough-pw"})
    at.text_input[0].input("long-enough-pw")
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    shown = " ".join(m.value for m in at.markdown)
    assert f"root: `{Path(root).name}`" in shown
    assert root not in shown and str(Path(root).parent) not in shown
