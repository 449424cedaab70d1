"""One way to start a dashboard process in tests: a free loopback port, a health poll, a stop.

Used by the three places that start a server: `make run` (tests/test_app.py), the container's
entrypoint (tests/test_deploy.py) and `streamlit run app.py` (tests/browser/conftest.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, seconds: float = 180) -> None:
    """Return once ``/_stcore/health`` on ``port`` answers ``ok``; raise if ``proc`` exits or
    ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # bounded
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            url = f"http://127.0.0.1:{port}/_stcore/health"
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("server did not answer /_stcore/health in time")


@contextmanager
def serving(
    cmd: Sequence[str],
    port: int,
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    seconds: float = 180,
) -> Iterator[subprocess.Popen]:
    """Start ``cmd`` (which serves on ``port``) with its output in ``log``, yield the process
    once healthy, and stop it and every child it started afterwards.

    A server that does not come up raises with the last lines of its log.
    """
    with open(log, "w") as out:
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: `make` and its children stop too
        )  # fmt: skip
        try:
            try:
                wait_healthy(port, proc, seconds)
            except RuntimeError as exc:
                out.flush()
                raise RuntimeError(f"{exc}\n{log.read_text()[-3000:]}") from None
            yield proc
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
