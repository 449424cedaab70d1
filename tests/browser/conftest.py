"""A real ClassLens server on 127.0.0.1 and headless Debian Chromium driven by Playwright.

Under CI=true these tests must run: a missing browser is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_port, serving

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "tests" / "screenshots"
CHROMIUM = os.environ.get("CLASSLENS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


WAIT_MS = 90_000  # bound on any one wait (a busy CI box; the first Leakage visit hashes images)


def idle(page, timeout_ms: float = WAIT_MS) -> None:  # noqa: ANN001
    """Wait until the script run the last action started has finished (the app's own state,
    not a fixed pause)."""
    from playwright.sync_api import expect

    app = page.get_by_test_id("stApp")
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=timeout_ms)


def loaded(page, shown, timeout_ms: float = WAIT_MS) -> None:  # noqa: ANN001
    """Wait for ``shown`` (a locator the page or action must bring up; its first match), then
    for the script run to end: the app's own state, never a fixed pause. Waiting on the
    element first matters: right after a click the state still reads the previous run's
    ``notRunning`` until the server starts the new one."""
    from playwright.sync_api import expect

    expect(shown.first).to_be_visible(timeout=timeout_ms)
    idle(page, timeout_ms)


def pick(page, label: str, option: str, tries: int = 3) -> None:  # noqa: ANN001
    """Choose ``option`` in the selectbox or multiselect ``label``: typed, so the list shows
    it however little room it has; re-opened if a rerun closes it first (bounded)."""
    for attempt in range(tries):
        page.get_by_role("combobox", name=label).click()
        page.keyboard.type(option)
        item = page.get_by_role("option", name=option, exact=True)
        try:
            item.click(timeout=10_000)
        except Exception:
            if attempt == tries - 1:
                raise
            page.keyboard.press("Escape")
            idle(page)
            continue
        page.keyboard.press("Escape")  # a multiselect stays open
        idle(page)
        return


@dataclass(frozen=True)
class Server:
    """A running dashboard."""

    url: str  # http://127.0.0.1:<port>
    runs_dir: Path  # its private run store


def run_id(server: Server, checkpoint: str) -> str:
    """Return the id of the server's stored run of ``checkpoint`` (e.g. "good.safetensors"),
    read from its store's meta.json files (no page load; the All runs picker is e2e's)."""
    from core.runs import RunStore

    runs = RunStore(server.runs_dir).list()
    return next(r.run_id for r in runs if r.meta["checkpoint"]["name"] == checkpoint)


@contextmanager
def start_server(
    base: Path,
    *,
    env: dict[str, str] | None = None,
    args: Sequence[str] = (),
    runs: Path | None = None,
) -> Iterator[Server]:
    """Run `streamlit run app.py` on a free loopback port with a private run store in ``base``.

    ``env`` adds environment variables (e.g. CLASSLENS_HOSTED), ``args`` extra command-line
    options (e.g. ``--secrets.files <file>``). ``runs``: a store of evaluated sample runs to
    copy in (the session's ``sample_store``); without it the sample is evaluated first.
    """
    env = {
        **os.environ,
        "CLASSLENS_RUNS_DIR": str(base / "runs"),
        "CLASSLENS_CACHE_DIR": str(base / "cache"),
        **(env or {}),
    }
    # The sample is in the store before the server starts (as after `make run`), so page
    # loads measure the dashboard.
    if runs is not None:
        shutil.copytree(runs, base / "runs")
    else:
        cmd = [sys.executable, "-m", "core.engine.sample"]
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false",
           # As in production: a file edited while tests run must not rerun the sessions.
           "--server.fileWatcherType", "none", *args]  # fmt: skip
    with serving(cmd, port, cwd=ROOT, env=env, log=base / "server.log"):
        yield Server(f"http://127.0.0.1:{port}", base / "runs")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, sample_store: Path) -> Iterator[Server]:
    """Start `streamlit run app.py` on a free loopback port with a private copy of the
    session's sample store."""
    with start_server(tmp_path_factory.mktemp("browser-store"), runs=sample_store) as srv:
        yield srv


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Return a Playwright Chromium browser (Debian's binary; nothing is downloaded)."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: .ci/run must install Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser: object) -> Iterator[object]:
    """Return a fresh page at a desktop size."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    pg = context.new_page()
    yield pg
    context.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`-n 2 --dist loadgroup`) every browser test runs in one worker, so
    the session's server and browser start once while the other worker runs the rest."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.xdist_group("browser"))
