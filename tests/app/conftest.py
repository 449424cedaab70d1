"""Fixtures for the dashboard tests: the bundled sample evaluated once into a private store."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest, app_test

from core.engine.sample import ensure_sample_runs
from core.runs import Run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sample_runs(tmp_path_factory: pytest.TempPathFactory, sample_store: Path) -> dict[str, Run]:
    """Return {"good" | "overfit" | "imbalanced": run} in a session-wide private run store:
    a copy of the session's evaluated sample store (tests here add runs to it).

    The store is exported through CLASSLENS_RUNS_DIR so the app under AppTest reads it too.
    """
    base = tmp_path_factory.mktemp("app-store")
    shutil.copytree(sample_store, base / "runs")
    os.environ["CLASSLENS_RUNS_DIR"] = str(base / "runs")
    os.environ["CLASSLENS_CACHE_DIR"] = str(base / "cache")
    return ensure_sample_runs(base / "runs")  # finds the copied runs: no inference


@pytest.fixture()
def no_settings_leak(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Clear the CLASSLENS_* settings (all but the run store and cache folders) before the
    test, and after it those app.py exported to os.environ from a hosted AppTest's secrets."""
    keep = ("CLASSLENS_RUNS_DIR", "CLASSLENS_CACHE_DIR")
    for name in [k for k in os.environ if k.startswith("CLASSLENS_") and k not in keep]:
        monkeypatch.delenv(name)
    yield
    for name in [k for k in os.environ if k.startswith("CLASSLENS_") and k not in keep]:
        os.environ.pop(name)


def open_page(page: str, run: Run, **query: str) -> AppTest:
    """Return an AppTest of ``pages/<page>.py`` inside app.py, with ``run`` chosen via the URL.

    The page is opened as a deep link (``/<page>?run=...``): app.py's first run routes to it,
    without running the Overview first. Before the first run AppTest names the page by its file
    name, which is the url_path ``st.navigation`` gives every page of app.py."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["run"] = run.run_id
    for k, v in query.items():
        at.query_params[k] = v
    if page != "overview":
        at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, at.exception
    _assert_opened(at, page)
    return at


def _assert_opened(at: AppTest, page: str) -> None:
    """Assert ``pages/<page>.py`` is the page that ran: a deep link ``st.navigation`` does not
    know opens the default page silently. (AppTest keeps the page that ran, and the pages app.py
    registered, under no public name.)"""
    ran = at._registered_pages.get(at._finished_page_script_hash, {}).get("script_path")
    assert ran and Path(str(ran)).resolve() == ROOT / "pages" / f"{page}.py", (page, ran)


class Visitor:
    """One AppTest session on ``run`` that opens pages in turn, as a user clicking through the
    views: the first by a deep link (``open_page``), the others by switching page in the same
    session (about half the CPU of a new session each). ``visit(page)`` returns the session."""

    def __init__(self, run: Run, **query: str) -> None:
        self.run, self.query = run, query
        self.at: AppTest | None = None

    def visit(self, page: str) -> AppTest:
        if self.at is None:
            self.at = open_page(page, self.run, **self.query)
            return self.at
        self.at.switch_page(f"pages/{page}.py").run()
        assert not self.at.exception, self.at.exception
        _assert_opened(self.at, page)
        return self.at


class RecordingStorage(MemoryMediaFileStorage):
    """AppTest's in-memory media storage, kept reachable after the run for the test to read."""

    instances: list[RecordingStorage] = []

    def __init__(self, media_endpoint: str) -> None:
        super().__init__(media_endpoint)
        RecordingStorage.instances.append(self)

    @classmethod
    def read(cls, url: str) -> bytes:
        name = url.rsplit("/", 1)[-1]
        for storage in reversed(cls.instances):
            try:
                return bytes(storage.get_file(name).content)
            except Exception:
                continue
        raise AssertionError(f"no media file behind {url}")


@pytest.fixture()
def media(monkeypatch: pytest.MonkeyPatch) -> type[RecordingStorage]:
    RecordingStorage.instances = []
    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", RecordingStorage)
    return RecordingStorage
