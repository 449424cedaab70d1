"""`make run`'s server: it starts and its health endpoint answers `ok`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.servers import free_port, serving

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def store_with_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_store: Path
) -> tuple[Path, str]:
    """Return (a run store holding two of the three sample runs, the id of the missing one):
    `make run` must evaluate that one and find the other two."""
    runs = tmp_path / "runs"
    shutil.copytree(sample_store, runs)
    missing = sorted(p for p in runs.iterdir() if not p.name.startswith("."))[0]
    shutil.rmtree(missing)
    monkeypatch.setenv("CLASSLENS_RUNS_DIR", str(runs))
    monkeypatch.setenv("CLASSLENS_CACHE_DIR", str(tmp_path / "cache"))
    return runs, missing.name


@pytest.mark.slow
def test_make_run_serves_the_dashboard_and_answers_health(
    store_with_sample: tuple[Path, str], tmp_path: Path
) -> None:
    """`make run` as a user types it (on a free loopback port): sample runs, then the server."""
    runs, missing = store_with_sample
    port = free_port()
    cmd = ["make", "-s", "run", f"PORT={port}", "ADDRESS=127.0.0.1"]
    # serving() waits for /_stcore/health to answer `ok` (bounded: a sample is evaluated first)
    with serving(cmd, port, cwd=ROOT, env=os.environ, log=tmp_path / "make.log", seconds=240):
        made = sorted(p.name for p in runs.iterdir() if not p.name.startswith("."))
        assert len(made) == 3, "make run evaluates the 3 samples"
        assert missing in made, "the sample missing from the store was evaluated again"
