"""A deep link opened on a hosted server survives the login: the login shows at the link's
page (no "Page not found"), and signing in lands on that page with the link's query state."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.runs import Run
from tests.app.conftest import ROOT
from tests.app.test_sharing import param

PW = "deep-link-viewer-pw"


pytestmark = pytest.mark.usefixtures("no_settings_leak")  # hosted settings undone


def test_thresholds_link_survives_the_password_login(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["good"]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["classlens"] = {"hosted": True, "viewer_password": PW}
    at.query_params["run"] = run.run_id
    at.query_params["class"] = "8"
    at.switch_page("pages/thresholds.py")  # as a browser opening /thresholds?run=…&class=8
    at.run()
    assert not at.exception, at.exception
    assert [t.label for t in at.text_input] == ["Password"]  # only the login, at that page
    assert not at.title or at.title[0].value == "ClassLens"
    at.text_input[0].input(PW)
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title][:1] == ["Thresholds"]
    assert at.session_state["th_class"] == run.class_names.index("8")
    assert param(at, "class") == ["8"] and param(at, "run") == [run.run_id]
