"""`make run`'s server: it starts and its health endpoint answers `ok`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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
def test_server_starts_and_answers_health(store_with_sample: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        body = b""
        for _ in range(60):  # bounded: 60 x 0.5 s
            try:
                url = f"http://127.0.0.1:{port}/_stcore/health"
                with urllib.request.urlopen(url, timeout=2) as r:
                    body = r.read()
                break
            except OSError:
                time.sleep(0.5)
        assert body == b"ok"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
