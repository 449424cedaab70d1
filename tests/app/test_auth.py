"""Hosted mode under AppTest: the password gate, OIDC roles, and what a viewer may not see."""

from __future__ import annotations

import os

import pytest
from streamlit.testing.v1 import AppTest

from core.hosting.attempts import AttemptLimiter
from core.hosting.settings import Settings, current
from core.runs import Run
from tests.app.conftest import ROOT
from ui.auth import Role, check_password, oidc_role, verified_email

EDITOR_PW = "correct horse battery staple"
VIEWER_PW = "viewer-secret"
AUTH = {  # what st.login would need; AppTest seeds st.user instead of redirecting
    "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
    "cookie_secret": "x" * 32,
    "client_id": "classlens",
    "client_secret": "secret",
    "server_metadata_url": "http://127.0.0.1:1/.well-known/openid-configuration",
}


pytestmark = pytest.mark.usefixtures("no_settings_leak")  # hosted settings undone


def _app(run: Run, classlens: dict, **extra: dict) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["classlens"] = {"hosted": True, **classlens}
    for name, table in extra.items():
        at.secrets[name] = table
    at.query_params["run"] = run.run_id
    return at.run()


def _sidebar_labels(at: AppTest) -> list[str]:
    """Return the sidebar's pickers; the New run form shows as its checkpoint-source radio."""
    form = ["New run"] if any(r.key == "ck_src" for r in at.sidebar.radio) else []
    return [w.label for w in at.sidebar.selectbox] + form


def _only_login(at: AppTest) -> None:
    """Nothing of the dashboard: no run picker, no New run, no metrics, no verdict."""
    assert not at.exception, at.exception
    assert _sidebar_labels(at) == []
    assert len(at.metric) == 0
    assert not any("Stored runs" in str(w.label) for w in at.selectbox)


def test_password_comparison_roles() -> None:
    s = Settings(hosted=True, auth="password", editor_password="ed", viewer_password="vi")
    assert check_password("ed", s) is Role.EDITOR
    assert check_password("vi", s) is Role.VIEWER
    for wrong in ("", "e", "ed ", "ED", "vied", "x" * 1000):
        assert check_password(wrong, s) is None
    both = Settings(hosted=True, auth="password", editor_password="same", viewer_password="same")
    assert check_password("same", both) is Role.EDITOR
    only_editor = Settings(hosted=True, auth="password", editor_password="ed")
    assert check_password("", only_editor) is None  # an unset viewer password opens nothing


def test_oidc_roles_from_email_lists() -> None:
    s = Settings(hosted=True, auth="oidc", editors=("ed@example.org",))
    assert oidc_role("Ed@Example.org", s) is Role.EDITOR
    assert oidc_role("anyone@example.org", s) is Role.VIEWER
    assert oidc_role(None, s) is None
    listed = Settings(hosted=True, auth="oidc", editors=("ed@example.org",),
                      viewers=("vi@example.org",))  # fmt: skip
    assert oidc_role("vi@example.org", listed) is Role.VIEWER
    assert oidc_role("ed@example.org", listed) is Role.EDITOR
    assert oidc_role("stranger@example.org", listed) is None


def test_password_gate_wrong_viewer_editor(sample_runs: dict[str, Run]) -> None:
    conf = {"editor_password": EDITOR_PW, "viewer_password": VIEWER_PW, "max_image_pixels": 1234,
            "job_memory_mb": 2048}  # fmt: skip
    at = _app(sample_runs["good"], conf)
    _only_login(at)
    assert [t.label for t in at.text_input] == ["Password"]
    assert at.text_input[0].proto.type == at.text_input[0].proto.PASSWORD
    # Core code (core.hosting.settings.current() reads only the environment) enforces them too.
    assert current().hosted and current().max_image_pixels == 1234
    assert current().job_memory_mb == 2048  # the job children's memory cap (ui.jobs reads it)
    assert not any("PASSWORD" in k for k in os.environ)

    at.text_input[0].input(EDITOR_PW[:-1])
    at.button[0].click()
    at.run()
    _only_login(at)
    assert any("Wrong password" in e.value for e in at.error)

    at.text_input[0].input(VIEWER_PW)
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    assert "Stored runs" in _sidebar_labels(at)
    assert "New run" not in _sidebar_labels(at)  # a viewer cannot upload or evaluate
    assert any("viewer" in c.value for c in at.sidebar.caption)
    assert len(at.metric) > 0  # the Overview shows the run's metrics

    at.sidebar.button(key="_classlens_sign_out").click()
    at.run()
    _only_login(at)

    at.text_input[0].input(EDITOR_PW)
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    assert {"Stored runs", "New run"} <= set(_sidebar_labels(at))
    assert any("editor" in c.value for c in at.sidebar.caption)


def test_hosted_without_login_stays_closed(sample_runs: dict[str, Run]) -> None:
    at = _app(sample_runs["good"], {})
    _only_login(at)
    assert "no login is configured" in at.error[0].value
    assert len(at.button) == 0


def test_oidc_anonymous_viewer_editor_refused(sample_runs: dict[str, Run]) -> None:
    conf = {"auth": "oidc", "editors": ["editor@example.org"], "viewers": ["viewer@example.org"]}
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["classlens"] = {"hosted": True, **conf}
    at.secrets["auth"] = AUTH
    at.query_params["run"] = sample_runs["good"].run_id
    at.user = {"is_logged_in": False}
    at.run()
    _only_login(at)
    assert [b.label for b in at.button] == ["Log in"]

    for email, role in (("viewer@example.org", "viewer"), ("EDITOR@example.org", "editor")):
        at.user = {"is_logged_in": True, "email": email, "email_verified": True}
        at.run()
        assert not at.exception, at.exception
        assert any(email in c.value and role in c.value for c in at.sidebar.caption)
        assert ("New run" in _sidebar_labels(at)) is (role == "editor")
        assert len(at.metric) > 0

    at.user = {"is_logged_in": True, "email": "stranger@example.org", "email_verified": True}
    at.run()
    _only_login(at)
    assert "may not open this dashboard" in at.error[0].value

    # Issue 13: e-mail is the identity, so a listed address counts only when verified.
    for claims, why in (
        ({}, "did not say whether"),  # no email_verified claim at all
        ({"email_verified": False}, "has not verified"),
        ({"email_verified": "false"}, "has not verified"),
    ):
        at.user = {"is_logged_in": True, "email": "EDITOR@example.org", **claims}
        at.run()
        _only_login(at)
        assert why in at.error[0].value and "editor@example.org" in at.error[0].value
        assert [b.label for b in at.button] == ["Log out"]


def test_an_empty_hosted_variable_does_not_open_a_hosted_server(
    sample_runs: dict[str, Run], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    """Issue 13: `CLASSLENS_HOSTED=` (empty) beside `hosted = true` in secrets served the full
    local dashboard to anonymous visitors; core code must also see hosted mode."""
    monkeypatch.setenv("CLASSLENS_HOSTED", "")
    monkeypatch.setenv("CLASSLENS_VIEWER_PASSWORD", "")
    at = _app(sample_runs["good"], {"editor_password": EDITOR_PW, "viewer_password": VIEWER_PW})
    _only_login(at)
    assert [t.label for t in at.text_input] == ["Password"]
    assert current().hosted and not current().allow_code_checkpoints
    at.text_input[0].input(VIEWER_PW)  # the secrets' viewer password still opens the viewer role
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    assert any("viewer" in c.value for c in at.sidebar.caption)
    # The effective settings are announced on stderr, secrets as set/unset only.
    err = capfd.readouterr().err
    line = next(ln for ln in err.splitlines() if ln.startswith("classlens: settings (hosted)"))
    assert "auth=password" in line and "viewer_password=set" in line
    assert VIEWER_PW not in err and EDITOR_PW not in err


def test_a_too_short_password_keeps_the_server_closed(sample_runs: dict[str, Run]) -> None:
    at = _app(sample_runs["good"], {"editor_password": " "})
    _only_login(at)
    assert "stays closed" in at.error[0].value and "at least 12" in at.error[0].value
    assert len(at.text_input) == 0


def test_oidc_identity_is_the_verified_email() -> None:
    strict = Settings(hosted=True, auth="oidc", editors=("ed@example.org",))
    assert verified_email({"email": " Ed@Example.org ", "email_verified": True}, strict) == (
        "ed@example.org",
        "",
    )
    assert verified_email({"email": "ed@example.org", "email_verified": "TRUE"}, strict)[0]
    for claims in (
        {"email": "ed@example.org"},
        {"email": "ed@example.org", "email_verified": False},
        {"email": "ed@example.org", "email_verified": "no"},
        {"email": "ed@example.org", "email_verified": 1},  # not a boolean: not a yes
        {"email": "", "email_verified": True},
        {"email_verified": True},
    ):
        email, why = verified_email(claims, strict)
        assert email is None and why, claims
    lenient = Settings(hosted=True, auth="oidc", oidc_accept_unverified_claim=True)
    assert verified_email({"email": "a@b.org"}, lenient) == ("a@b.org", "")
    # The setting admits a missing claim only; an explicit false stays refused.
    assert verified_email({"email": "a@b.org", "email_verified": False}, lenient)[0] is None


def test_oidc_accepting_providers_without_the_claim_is_explicit(
    sample_runs: dict[str, Run],
) -> None:
    conf = {"auth": "oidc", "oidc_accept_unverified_claim": True}
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["classlens"] = {"hosted": True, **conf}
    at.secrets["auth"] = AUTH
    at.query_params["run"] = sample_runs["good"].run_id
    at.user = {"is_logged_in": True, "email": "someone@example.org"}
    at.run()
    assert not at.exception, at.exception
    assert any("someone@example.org" in c.value and "viewer" in c.value for c in at.sidebar.caption)


class _Clock:
    now = 5000.0

    def __call__(self) -> float:
        return self.now


def test_password_gate_limits_wrong_guesses_and_logs_them(
    sample_runs: dict[str, Run], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    """Issue 13: the right password still worked after 150 wrong ones."""
    import ui.auth

    clock = _Clock()
    monkeypatch.setattr(ui.auth, "_LIMITER", AttemptLimiter(5, 50, base_delay_s=2, clock=clock))
    conf = {"editor_password": EDITOR_PW, "login_attempts_per_session": 2}
    at = _app(sample_runs["good"], conf)

    def guess(pw: str) -> None:
        at.text_input[0].input(pw)
        at.button[0].click()
        at.run()

    for _ in range(2):
        guess("wrong-wrong-wrong")
        assert any("Wrong password" in e.value for e in at.error)
    guess(EDITOR_PW)  # the right password, but this session must wait first
    _only_login(at)
    assert any("Try again in 2 s" in e.value for e in at.error)
    clock.now += 2
    guess("wrong-wrong-wrong")  # compared again after the wait, and wrong: the wait doubles
    guess(EDITOR_PW)
    _only_login(at)
    assert any("Try again in 4 s" in e.value for e in at.error)
    clock.now += 4
    guess(EDITOR_PW)
    assert not at.exception, at.exception
    assert any("editor" in c.value for c in at.sidebar.caption)
    err = capfd.readouterr().err
    logged = [ln for ln in err.splitlines() if "classlens: wrong password from" in ln]
    assert len(logged) == 3 and "3 in this session, 3 on this server" in logged[-1]
    assert EDITOR_PW not in err and "wrong-wrong-wrong" not in err


def test_password_gate_server_limit_holds_across_sessions(
    sample_runs: dict[str, Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ui.auth

    clock = _Clock()
    monkeypatch.setattr(ui.auth, "_LIMITER", AttemptLimiter(5, 50, base_delay_s=2, clock=clock))
    conf = {"editor_password": EDITOR_PW, "login_attempts_per_server": 3}
    for _ in range(3):  # three visitors, one wrong guess each: no session limit is reached
        at = _app(sample_runs["good"], conf)
        at.text_input[0].input("wrong-wrong-wrong")
        at.button[0].click()
        at.run()
        assert any("Wrong password" in e.value for e in at.error)
    fresh = _app(sample_runs["good"], conf)  # a new session: the server limit still holds
    fresh.text_input[0].input(EDITOR_PW)
    fresh.button[0].click()
    fresh.run()
    _only_login(fresh)
    assert any("Try again in 2 s" in e.value for e in fresh.error)
