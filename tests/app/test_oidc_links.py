"""A shared link survives the OIDC sign-in: the provider's redirect lands on the root, and the
view the link opened (page and query) is reopened for the same browser (issue 13)."""

from __future__ import annotations

import pytest
import streamlit
from streamlit.testing.v1 import AppTest

from core.runs import Run
from tests.app.conftest import ROOT
from tests.app.test_auth import AUTH
from ui import auth

pytestmark = pytest.mark.usefixtures("no_settings_leak")  # hosted settings undone


def _app(user: dict, **query: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["classlens"] = {"hosted": True, "auth": "oidc"}
    at.secrets["auth"] = AUTH
    for k, v in query.items():
        at.query_params[k] = v
    at.user = user
    return at


def test_a_link_opened_before_signing_in_reopens_after_the_redirect(
    sample_runs: dict[str, Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = sample_runs["good"]
    logins: list[bool] = []
    where = {"view": "thresholds"}  # the address (AppTest cannot open a path)
    monkeypatch.setattr(streamlit, "login", lambda *a, **k: logins.append(True))
    monkeypatch.setattr(auth, "_current_view", lambda: where["view"])
    monkeypatch.setattr(auth, "_browser", lambda: "browser-1")  # its XSRF cookie's token

    at = _app({"is_logged_in": False}, run=run.run_id, **{"class": "8"})
    at.run()
    assert [b.label for b in at.button] == ["Log in"]
    at.button[0].click().run()
    assert logins == [True]

    # The provider sends the browser back to the root: a new session, no page, no query.
    where["view"] = None
    signed_in = {"is_logged_in": True, "email": "a@example.org", "email_verified": True}
    back = _app(signed_in)
    back.run()
    assert not back.exception, back.exception
    assert [t.value for t in back.title] == ["Thresholds"]
    assert back.query_params["run"] in ([run.run_id], run.run_id)
    assert back.query_params["class"] in (["8"], "8")

    # Taken once: the next tab of the same browser opens the root as usual.
    again = _app(signed_in)
    again.run()
    assert not again.exception, again.exception
    assert [t.value for t in again.title] != ["Thresholds"]
