"""`make run`'s server: it starts and its health endpoint answers `ok`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def store_with_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLASSLENS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CLASSLENS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "runs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_make_run_serves_the_dashboard_and_answers_health(store_with_sample: Path) -> None:
    """`make run` as a user types it (on a free loopback port): sample runs, then the server."""
    port = _free_port()
    proc = subprocess.Popen(
        ["make", "-s", "run", f"PORT={port}", "ADDRESS=127.0.0.1"],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # make's children share its process group: stop them all
    )  # fmt: skip
    try:
        body = b""
        deadline = time.monotonic() + 240  # bounded: the sample is evaluated first
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/_stcore/health"
                with urllib.request.urlopen(url, timeout=2) as r:
                    body = r.read()
                break
            except OSError:
                time.sleep(0.5)
        assert body == b"ok"
        runs = [p for p in store_with_sample.iterdir() if not p.name.startswith(".")]
        assert len(runs) == 3, "make run evaluates the 3 samples"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
