"""Who may use this server: local (everyone is an editor) or hosted (login, then a role).

app.py calls :func:`load_settings` then :func:`gate` before anything else is drawn. Hosted
mode signs people in with Streamlit's native OIDC (``st.login`` / ``st.user``, configured in
the ``[auth]`` table of secrets) or with the passwords in ``[classlens]``; anyone not signed
in sees only the login screen. Editors may upload and evaluate; viewers open runs and views.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import sys
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlparse

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.errors import ClassLensError
from core.hosting import destinations
from core.hosting import settings as core_settings
from core.hosting.attempts import AttemptLimiter
from core.hosting.settings import Settings
from ui.text import md_code

ROLE_KEY = "_classlens_role"  # password mode: the role, kept for the browser session
CAN_EDIT_KEY = "_classlens_can_edit"  # app.py: this rerun's gate said editor (pages read it)
USER_KEY = "_classlens_user"  # who is signed in, as shown in the sidebar
TITLE = "ClassLens"
# Settings core code needs (through core.hosting.settings.current()); never the passwords.
EXPORTED = ("hosted", "allowed_roots", "max_upload_mb", "max_zip_total_mb", "max_zip_files",
            "max_image_pixels", "inspect_memory_mb", "job_memory_mb")  # fmt: skip


class Role(StrEnum):
    """What a signed-in person may do."""

    VIEWER = "viewer"  # open runs and every view
    EDITOR = "editor"  # also upload checkpoints and evaluate

    @property
    def can_edit(self) -> bool:
        """Return whether this role may upload, evaluate and change the run store."""
        return self is Role.EDITOR


def can_edit() -> bool:
    """Return whether this session may start computations (set by app.py after ``gate``;
    outside app.py: only when the server is not hosted)."""
    if CAN_EDIT_KEY in st.session_state:
        return bool(st.session_state[CAN_EDIT_KEY])
    return not core_settings.current().hosted


def _secrets_table(name: str) -> dict[str, Any]:
    """Return one table of st.secrets as a dict; no secrets file at all is an empty table."""
    try:
        table = st.secrets.get(name)
    except FileNotFoundError as exc:  # StreamlitSecretNotFoundError subclasses it
        files = st.get_option("secrets.files") or []
        if any(Path(f).exists() for f in files):
            # A hosted server whose secrets file is broken must not fall back to local mode.
            raise ClassLensError(f"could not read the secrets file: {exc}") from None
        return {}
    return dict(table) if table else {}


def load_settings() -> Settings:
    """Return the settings from env over secrets' [classlens]; hosted mode is exported to env.

    Settings that cannot be read show an error screen and stop: a server with a broken
    configuration stays closed rather than falling back to local mode.

    Exporting ``CLASSLENS_HOSTED=1`` makes ``core.hosting.settings.current()`` (which reads only the
    environment) enforce hosted rules in core code too, e.g. refusing code-bearing checkpoints.
    """
    try:
        table = _secrets_table("classlens")
        settings = core_settings.load(table)
    except ClassLensError as exc:
        closed(f"ClassLens is misconfigured, so it stays closed: {exc}")
    for name in EXPORTED:
        env_name = core_settings.ENV_PREFIX + name.upper()
        # The environment keeps precedence, but an empty variable is unset: export over it.
        if name in table and not os.environ.get(env_name, "").strip():
            os.environ[env_name] = _env_text(table[name])
    if settings.hosted:
        _hide_error_details()
    _announce(settings)
    return settings


def _hide_error_details() -> None:
    """Show visitors of a hosted server no traceback (file paths, code, values), even when it
    was started without deploy/streamlit-config.toml: errors still reach the server log."""
    if st.get_option("client.showErrorDetails") not in ("none", False, "False", "false"):
        st.set_option("client.showErrorDetails", "none")
        print("classlens: hosted mode: client.showErrorDetails forced to none", file=sys.stderr)


_announced: list[str] = []  # the settings line last written by this server process


def _announce(settings: Settings) -> None:
    """Write the effective security settings (never a secret's value) to stderr once per
    server process, and again whenever they change (a secrets file edited while it runs)."""
    line = core_settings.describe(settings)
    if _announced[-1:] != [line]:
        _announced.append(line)
        print(line, file=sys.stderr, flush=True)


def _guard_clear_cache() -> None:
    """Ignore Streamlit's clear-cache message on a hosted server.

    Any visitor's browser, the login screen's included, can send it, and it empties every
    st.cache_* for all sessions: models, embeddings and tables then cost their full price
    again for everyone. The toolbar hides the menu entry when hosted; this refuses the message
    itself. Shared state that must survive it (jobs, model locks) lives in ui.jobs anyway.
    """
    from streamlit.runtime.app_session import AppSession

    original = AppSession._handle_clear_cache_request
    if getattr(original, "_classlens_guard", False):
        return

    def guarded(self: AppSession) -> None:
        try:
            hosted = core_settings.current().hosted
        except ClassLensError:
            hosted = True  # unreadable settings: fail closed
        if hosted:
            print("classlens: clear-cache request ignored (hosted mode)", file=sys.stderr)
            return
        original(self)

    guarded._classlens_guard = True  # type: ignore[attr-defined]
    AppSession._handle_clear_cache_request = guarded  # type: ignore[method-assign]


_guard_clear_cache()


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def check_password(given: str, settings: Settings) -> Role | None:
    """Return the role the password opens (editor first), or None when it opens nothing.

    Both configured passwords are always compared, and on SHA-256 digests, so neither the
    time taken nor the length of the secrets tells anything about them.
    """
    given_digest = _digest(given)
    found: Role | None = None
    for role, secret in ((Role.VIEWER, settings.viewer_password),
                         (Role.EDITOR, settings.editor_password)):  # fmt: skip
        if secret and hmac.compare_digest(given_digest, _digest(secret)):
            found = role  # editor last, so a password set for both opens the editor role
    return found


def oidc_role(email: str | None, settings: Settings) -> Role | None:
    """Return the role of a signed-in e-mail address, or None when it may not sign in."""
    if not email:
        return None
    email = email.strip().lower()
    if email in settings.editors:
        return Role.EDITOR
    if settings.viewers and email not in settings.viewers:
        return None
    return Role.VIEWER


def verified_email(claims: Mapping[str, Any], settings: Settings) -> tuple[str | None, str]:
    """Return (the e-mail to match, "") when the provider vouches for it, else (None, why).

    E-mail is the only identity, so it counts only with ``email_verified`` true; a token
    without that claim counts only when ``oidc_accept_unverified_claim`` says the provider
    verifies every address itself.
    """
    email = str(claims.get("email") or "").strip().lower()
    if not email:
        return None, "This account has no e-mail address"
    claim = claims.get("email_verified")
    if isinstance(claim, str):  # some providers send "true"/"false" as text
        claim = {"true": True, "false": False}.get(claim.strip().lower(), claim)
    if claim is True:
        return email, ""
    if claim is None and settings.oidc_accept_unverified_claim:
        return email, ""
    if claim is None:
        return None, (
            f"The identity provider did not say whether **{email}** is verified "
            "(no email_verified claim); the dashboard's owner can set "
            "`oidc_accept_unverified_claim = true` if the provider verifies every address"
        )
    return None, f"The provider has not verified **{email}**"


# The url paths of the views (st.Page names a file page by its stem).
VIEW_PATHS = tuple(
    sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "pages").glob("*.py"))
)


# OIDC: the view a link opened before signing in, kept across the provider's redirect.
_DESTINATIONS = destinations.Destinations(VIEW_PATHS)
XSRF_COOKIE = "_streamlit_xsrf"  # Streamlit's own; its token stays while the browser keeps it
DESTINATION_KEY = "_classlens_destination"  # session: the view to open on this run
RESTORED_KEY = "_classlens_restored"  # session: the kept view was looked up once


def view_of(url: str | None) -> str | None:
    """Return the view ``url`` names (a page file's stem, after any base path), None else."""
    last = urlparse(url or "").path.rstrip("/").rsplit("/", 1)[-1]
    return last if last in VIEW_PATHS else None


def _current_view() -> str | None:
    return view_of(st.context.url)


def _browser() -> str | None:
    return destinations.browser_key(st.context.cookies.get(XSRF_COOKIE))


def _log_in() -> None:
    """Keep this link's view (page and query) for after the provider's redirect; sign in."""
    _DESTINATIONS.remember(_browser(), _current_view(), st.query_params.to_dict())
    st.login()


def _take_destination_once() -> None:
    """On a session's first signed-in run at the bare root, note the view kept for this
    browser before it left to sign in (``restore_destination`` opens it)."""
    if st.session_state.get(RESTORED_KEY):
        return
    st.session_state[RESTORED_KEY] = True
    target = _DESTINATIONS.take(_browser())
    if target is not None and _current_view() is None and not st.query_params:
        st.session_state[DESTINATION_KEY] = target


def restore_destination() -> None:
    """Open the view an OIDC sign-in took this visitor away from (app.py, after
    st.navigation): only one of the app's pages, with the link's parsed query."""
    target = st.session_state.pop(DESTINATION_KEY, None)
    if target is None:
        return
    view, query = target
    if view is None:
        st.query_params.from_dict(query)
    else:
        st.switch_page(f"pages/{view}.py", query_params=query)


def _only(render) -> NoReturn:  # noqa: ANN001
    """Show one screen and nothing else: no run picker, no page list, no views.

    The screen answers at every view's address too: a deep link (``/thresholds?run=…``)
    opened before signing in shows this screen rather than "Page not found", and keeps its
    path and query, so the rerun after signing in opens that view with the link's state.
    """
    # A hidden navigation: without any st.navigation call Streamlit would list the files in
    # pages/ in the sidebar.
    here = [st.Page(render, title=TITLE, url_path=path) for path in VIEW_PATHS]
    st.navigation([st.Page(render, title=TITLE, default=True), *here], position="hidden").run()
    st.stop()


def closed(message: str) -> None:
    """Show only an error screen (the server stays closed) and stop the script."""

    def screen() -> None:
        st.title(TITLE)
        st.error(message)

    _only(screen)


def gate(settings: Settings) -> Role:
    """Return the visitor's role; for anyone not (yet) allowed in, draw the login and stop."""
    if not settings.hosted:
        return Role.EDITOR
    if settings.auth == "password":
        return _password_gate(settings)
    if settings.auth == "oidc":
        return _oidc_gate(settings)
    closed(
        "This ClassLens server is in hosted mode but no login is configured, so it stays "
        'closed. Set `auth = "oidc"` (with an `[auth]` table: redirect_uri, cookie_secret, '
        'client_id, client_secret, server_metadata_url) or `auth = "password"` (with '
        "`editor_password` and/or `viewer_password`) in the `[classlens]` table of "
        "`.streamlit/secrets.toml`, or the matching `CLASSLENS_AUTH` environment variables."
    )
    raise AssertionError("unreachable")  # closed() stops the script


def _account(who: str, role: Role, label: str, on_click) -> None:  # noqa: ANN001
    """Show who is signed in (``who`` is markdown: names in it already escaped), their role,
    and the sign-out button, in the sidebar."""
    with st.sidebar:
        st.caption(f"{who} · {role.value}")
        st.button(label, on_click=on_click, key="_classlens_sign_out")


def _password_gate(settings: Settings) -> Role:
    if not (settings.editor_password or settings.viewer_password):
        closed(
            "Password login is on but no password is set: add `editor_password` and/or "
            "`viewer_password` to the `[classlens]` table of `.streamlit/secrets.toml` (or "
            "`CLASSLENS_EDITOR_PASSWORD` / `CLASSLENS_VIEWER_PASSWORD`)."
        )
    role = st.session_state.get(ROLE_KEY)
    if role in (Role.VIEWER, Role.EDITOR):
        role = Role(role)
        _account(f"Signed in with the {role.value} password", role, "Sign out", _sign_out)
        return role

    def screen() -> None:
        st.title(TITLE)
        st.write("This dashboard is private. Enter the password you were given to open it.")
        with st.form("classlens_sign_in"):
            password = st.text_input("Password", type="password")
            submitted = st.form_submit_button("Sign in", type="primary")
        if submitted:
            found = _limited_check(password, settings)
            if found is not None:
                st.session_state[ROLE_KEY] = found.value
                st.rerun()

    _only(screen)
    raise AssertionError("unreachable")


# Wrong guesses of this server process, shared by every session (plain module state, like
# ui.jobs: a visitor must not be able to reset it by clearing Streamlit's caches).
_LIMITER = AttemptLimiter(5, 50)


def _limiter(settings: Settings) -> AttemptLimiter:
    """Return the server's limiter, with the limits the settings give now."""
    _LIMITER.per_session = settings.login_attempts_per_session
    _LIMITER.per_server = settings.login_attempts_per_server
    return _LIMITER


def _session_id() -> str:
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"


def _limited_check(password: str, settings: Settings) -> Role | None:
    """Return the role ``password`` opens, unless this session or the server has guessed
    wrong too often lately (then say how long to wait, compare nothing); log wrong guesses."""
    limiter, session = _limiter(settings), _session_id()
    wait = limiter.wait_s(session)
    if wait > 0:
        st.error(
            f"Too many wrong passwords. Try again in {math.ceil(wait)} s; the wait doubles "
            "with each further wrong password."
        )
        return None
    found = check_password(password, settings)
    if found is None:
        mine, server = limiter.failed(session)
        ip = getattr(st.context, "ip_address", None) or "unknown address"
        print(
            f"classlens: wrong password from {ip} (session {session[:8]}): {mine} in this "
            f"session, {server} on this server in {limiter.window_s / 60:.0f} min",
            file=sys.stderr,
            flush=True,
        )
        st.error("Wrong password. Check it with whoever gave you access and try again.")
    else:
        limiter.succeeded(session)
    return found


def _sign_out() -> None:
    st.session_state.pop(ROLE_KEY, None)


def _oidc_gate(settings: Settings) -> Role:
    if not _secrets_table("auth"):
        closed(
            "OIDC login is on but `.streamlit/secrets.toml` has no `[auth]` table. Add "
            "redirect_uri (this server's URL + /oauth2callback), cookie_secret, client_id, "
            "client_secret and server_metadata_url from your identity provider."
        )
    if not st.user.is_logged_in:

        def screen() -> None:
            st.title(TITLE)
            st.write("This dashboard is private. Log in with your organisation's account.")
            st.button("Log in", type="primary", on_click=_log_in)

        _only(screen)
    email, why = verified_email(st.user.to_dict(), settings)
    role = oidc_role(email, settings) if email else None
    if role is None:

        def refused() -> None:
            st.title(TITLE)
            why_not = f"{md_code(email)} may not open this dashboard" if email else why
            st.error(f"{why_not}. Ask its owner to add you as a viewer.")
            st.button("Log out", on_click=st.logout)

        _only(refused)
    _take_destination_once()
    _account(f"Signed in as {md_code(str(st.user.get('email')))}", role, "Log out", st.logout)
    return role
