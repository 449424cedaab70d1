"""The dashboard's evaluation job: a child process (core.engine.worker) watched by ui.jobs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from core.engine.worker import PHASES
from core.hosting import child_memory
from core.hosting.settings import HOSTED_JOB_MEMORY_MB
from core.runs import RunStore
from ui import jobs

pytestmark = pytest.mark.slow


def _wait(job: jobs.Job, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout  # bounded
    while not job.finished and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.finished, f"job still running after {timeout}s"


class _Recorded:
    """Stands in for core.hosting.child_memory's ``json`` (where a job parses its child's
    lines): keeps every object the job parsed from the child."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    def loads(self, line: str) -> object:
        msg = json.loads(line)
        if isinstance(msg, dict):  # what the job reads as a message
            self.messages.append(msg)
        return msg

    dumps = staticmethod(json.dumps)


def test_a_job_evaluates_in_a_child_process_and_reads_the_stored_run(
    checkpoint: Path, dataset: Path, runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # under a hosted server's default memory cap, watched: unaffected
    monkeypatch.setenv("CLASSLENS_JOB_MEMORY_MB", str(HOSTED_JOB_MEMORY_MB))
    said = _Recorded()  # every line the real child printed, as the job read it, in order
    monkeypatch.setattr(child_memory, "json", said)
    kwargs = {"checkpoint": str(checkpoint), "dataset": str(dataset), "num_workers": 0}
    job = jobs.start("k-ok", "m on d", kwargs)
    _wait(job)
    assert job.error is None
    assert job.memory is not None and not job.memory.exceeded and job.memory.polls > 0
    assert 0 < job.memory.peak_mb < HOSTED_JOB_MEMORY_MB  # the child was measured
    stored = RunStore(runs_dir).list()
    assert [r.run_id for r in stored] == [job.run.run_id]
    assert job.done == job.total == len(job.run.predictions())
    assert json.loads((job.run.path / "meta.json").read_text())["checkpoint"]["name"] == (
        checkpoint.name
    )

    # The child's messages (issue 10: progress where the analyst looks, from the first
    # second): loading, scanning, preparing (with the image count), then progress, then the run.
    msgs = said.messages
    phases = [m["phase"] for m in msgs if "phase" in m]
    assert phases == list(PHASES)
    assert msgs[-1] == {"run": job.run.run_id, "runs_dir": str(runs_dir)}
    n = len(RunStore(runs_dir).get(msgs[-1]["run"]).predictions())
    assert next(m for m in msgs if m.get("phase") == PHASES[-1])["total"] == n
    kinds = [next(iter(m)) for m in msgs]
    first_progress = kinds.index("progress")
    assert kinds.index("phase") < first_progress and kinds[-1] == "run"
    assert any(m.get("log", "").startswith("evaluating ") for m in msgs[:first_progress])
    assert [m["progress"] for m in msgs if "progress" in m][-1] == [n, n]


def test_a_bad_input_becomes_the_jobs_one_line_error(dataset: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    job = jobs.start("k-bad", "bad", {"checkpoint": str(missing), "dataset": str(dataset)})
    _wait(job)
    assert job.run is None
    assert job.error.startswith(f"checkpoint not found: {missing}")


def test_an_unexpected_failure_in_the_child_is_reported_not_hung() -> None:
    # an argument evaluate() does not take: the child reports it as an unexpected error
    job = jobs.start("k-crash", "crash", {"checkpoint": "x", "dataset": "y", "nonsense": 1})
    _wait(job)
    assert job.run is None and "unexpected TypeError" in job.error
