"""Hosted mode in headless Chromium against a real OIDC provider started on 127.0.0.1.

The provider is ``oidc_provider_mock`` (a real Authlib/Flask OpenID provider whose authorize
page lets the tester pick the user). The dashboard gets a secrets.toml through
``--secrets.files``: hosted, OIDC login, one editor. An anonymous visitor must see only the
login; a viewer the views and no uploader; an editor uploads a checkpoint and evaluates it.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import werkzeug.serving
from oidc_provider_mock import User
from oidc_provider_mock import app as oidc_app
from playwright.sync_api import expect
from safetensors import safe_open
from safetensors.torch import load_file

from core.engine.sample import CHECKPOINTS
from tests.browser.conftest import ROOT, Server, idle, start_server
from tests.browser.test_e2e import error_count, shoot
from tests.servers import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]
EDITOR = "editor@example.org"
VIEWER = "viewer@example.org"
DASHBOARD = '[data-testid="stSidebar"], [data-testid="stMetric"], [data-testid="stSidebarNav"]'
VERDICT = '[data-testid="stAlertContentSuccess"]'
UPLOADER = '[data-testid="stFileUploader"]'


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """Return the issuer URL of a local OIDC provider that knows the two test users."""
    users = [User(sub=e, claims={"email": e, "email_verified": True}) for e in (VIEWER, EDITOR)]
    server = werkzeug.serving.make_server(
        "127.0.0.1", free_port(), oidc_app(user_claims=users), threaded=True
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


@pytest.fixture(scope="module")
def hosted(
    tmp_path_factory: pytest.TempPathFactory, provider: str, sample_store: Path
) -> Iterator[Server]:
    """Start the dashboard in hosted OIDC mode with its secrets in a private file."""
    base = tmp_path_factory.mktemp("hosted")
    secrets = base / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        # {port}: Streamlit fills in the port it serves on (chosen by start_server).
        'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{"c" * 48}"\n'
        'client_id = "classlens-test"\n'
        'client_secret = "classlens-test-secret"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n'
        "\n[classlens]\n"
        "hosted = true\n"
        'auth = "oidc"\n'
        f'editors = ["{EDITOR}"]\n'
    )
    with start_server(base, args=["--secrets.files", str(secrets)], runs=sample_store) as srv:
        yield srv


def _shown(page, locator, timeout_ms: float = 30_000) -> None:  # noqa: ANN001
    """Wait for ``locator`` (what the page must show), then for the script run to end (the
    app's data-test-script-state): the page's state, never a fixed pause."""
    locator.first.wait_for(timeout=timeout_ms)
    idle(page)


def _log_in(page, url: str, email: str) -> None:
    # Widgets load their code lazily; on a loaded 2-core CI box that can take a minute.
    page.set_default_timeout(120_000)
    page.goto(url)
    _shown(page, page.get_by_role("button", name="Log in"), 120_000)
    page.get_by_role("button", name="Log in").click()
    # The provider's authorize page: one button per predefined user.
    page.get_by_role("button", name=email, exact=True).click()
    page.wait_for_url(f"{url}/**", timeout=60_000)
    _shown(page, page.get_by_text(f"Signed in as {email}"), 60_000)


def test_anonymous_visitor_sees_only_the_login(hosted: Server, page) -> None:
    page.goto(hosted.url)
    _shown(page, page.get_by_role("button", name="Log in"))
    assert page.get_by_role("heading", name="ClassLens").count() == 1
    assert page.locator(DASHBOARD).count() == 0, "no sidebar, page list or metrics"
    assert page.get_by_role("combobox", name="Stored runs").count() == 0
    assert error_count(page) == 0
    shot = shoot(page, "login")
    if shot is not None:  # `make screenshots`: the README's login picture
        shutil.copyfile(shot, ROOT / "docs" / "screenshots" / "login.png")
        assert shot.stat().st_size > 0
    # A deep link to a view is no way around the login either.
    run_id = next(p.name for p in hosted.runs_dir.iterdir() if (p / "meta.json").is_file())
    page.goto(f"{hosted.url}/confusion?run={run_id}")
    _shown(page, page.get_by_role("button", name="Log in"))
    assert page.locator(DASHBOARD).count() == 0
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 0


def test_viewer_sees_the_views_but_no_uploader_then_logs_out(hosted: Server, page) -> None:
    _log_in(page, hosted.url, VIEWER)
    assert page.get_by_text(f"Signed in as {VIEWER} · viewer").count() == 1
    page.get_by_role("heading", name="Overview").first.wait_for(timeout=30_000)
    page.locator(VERDICT).first.wait_for(timeout=30_000)  # the good sample's verdict
    _shown(page, page.locator('[data-testid="stMetric"]'), 180_000)
    shoot(page, "hosted-viewer-overview")
    page.get_by_role("combobox", name="Stored runs").wait_for()
    assert page.get_by_text("New run").count() == 0
    assert page.locator(UPLOADER).count() == 0
    assert page.get_by_role("button", name="Evaluate").count() == 0
    # Every other view opens too.
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Confusion matrix").click()
    _shown(page, page.get_by_role("heading", name="Confusion matrix"))
    assert error_count(page) == 0
    shoot(page, "hosted-viewer")

    page.get_by_role("button", name="Log out").click()
    # The provider's end-session page, then back to the dashboard's login.
    page.get_by_role("button", name="End session").click()
    page.wait_for_url(f"{hosted.url}/**", timeout=60_000)
    _shown(page, page.get_by_role("button", name="Log in"))
    assert page.locator(DASHBOARD).count() == 0


def test_editor_uploads_and_evaluates_a_checkpoint(hosted: Server, page, tmp_path: Path) -> None:
    # A checkpoint this store has not seen: the good sample's weights saved with torch.save.
    ckpt = tmp_path / "editor_digits.pt"
    with safe_open(str(CHECKPOINTS["good"]), framework="pt") as f:
        meta = json.loads(f.metadata()["classlens"])
    torch.save({"state_dict": load_file(str(CHECKPOINTS["good"])), **meta}, ckpt)

    _log_in(page, hosted.url, EDITOR)
    assert page.get_by_text(f"Signed in as {EDITOR} · editor").count() == 1
    page.get_by_text("New run").click()
    page.get_by_role("radiogroup", name="Checkpoint").get_by_text("Upload", exact=True).click()
    _shown(page, page.locator(UPLOADER))
    page.locator('input[type="file"]').set_input_files(str(ckpt))
    # The button shows once the file is stored and read (in the vetting server's fork).
    _shown(page, page.get_by_role("button", name="Evaluate"), 120_000)
    page.get_by_role("button", name="Evaluate").click()
    chosen = page.get_by_role("combobox", name="Stored runs")
    # bounded: 1,797 images in a child process on a busy CPU
    expect(chosen).to_have_value(re.compile(r"editor_digits\.pt"), timeout=180_000)
    assert "editor_digits.pt" in chosen.input_value(), "the evaluated upload must open"
    _shown(page, page.locator('[data-testid="stMetric"]'), 180_000)
    assert error_count(page) == 0
    assert any(
        json.loads((p / "meta.json").read_text())["checkpoint"]["name"] == "editor_digits.pt"
        for p in hosted.runs_dir.iterdir()
        if (p / "meta.json").is_file()
    )
    shoot(page, "hosted-editor")
