"""ui.jobs: the evaluation registry lives outside Streamlit's caches (issue 13, item 3).

Any visitor, even on the login screen, can send Streamlit's clear-cache message; it must not
lose an editor's running evaluation nor let a second click start a second worker. The worker
here is a stand-in child that reports progress and waits for the test to release it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import streamlit as st
from streamlit.runtime.app_session import AppSession

from ui import jobs

STAND_IN = """
import json, pathlib, sys, time
base = pathlib.Path(sys.argv[1])
with open(base / "launches", "a") as f:
    f.write("1\\n")
print(json.dumps({"progress": [3, 10]}), flush=True)
deadline = time.monotonic() + 60
while not (base / "release").exists() and time.monotonic() < deadline:
    time.sleep(0.02)
print(json.dumps({"error": "released by the test"}), flush=True)
"""


def _until(condition, timeout: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout  # bounded
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert condition(), f"not true after {timeout}s"


@pytest.fixture()
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "worker.py"
    script.write_text(STAND_IN)
    # The job's JSON kwargs come last on the command line; the stand-in ignores them.
    monkeypatch.setattr(jobs, "WORKER", [sys.executable, str(script), str(tmp_path)])
    return tmp_path


def _launches(base: Path) -> int:
    f = base / "launches"
    return len(f.read_text().split()) if f.exists() else 0


def _clear_like_a_visitor() -> None:
    """What Streamlit does on a clear-cache message from any browser session."""
    st.cache_resource.clear()
    st.cache_data.clear()
    AppSession._handle_clear_cache_request(SimpleNamespace(_session_state={}))


def test_clearing_the_caches_keeps_a_running_job_and_starts_no_second_worker(stand_in: Path):
    key = f"k-clear-{time.time_ns()}"
    job = jobs.start(key, "m on d", {"checkpoint": "c", "dataset": "d"})
    _until(lambda: job.done == 3)
    assert _launches(stand_in) == 1

    _clear_like_a_visitor()

    assert jobs.get(key) is job  # still visible, with its progress
    assert (job.done, job.total, job.finished) == (3, 10, False)
    again = jobs.start(key, "m on d", {"checkpoint": "c", "dataset": "d"})  # a second click
    assert again is job
    time.sleep(0.3)  # a second worker, had one started, would have written its launch by now
    assert _launches(stand_in) == 1

    (stand_in / "release").touch()
    _until(lambda: job.finished)
    assert job.error == "released by the test"
    # A failed job may be retried: that one does start a new worker.
    retry = jobs.start(key, "m on d", {"checkpoint": "c", "dataset": "d"})
    assert retry is not job
    _until(lambda: retry.finished)
    assert _launches(stand_in) == 2


def test_clearing_the_caches_keeps_each_models_lock():
    lock = jobs.model_lock("gradcam:abc")
    with lock:
        _clear_like_a_visitor()
        again = jobs.model_lock("gradcam:abc")
        assert again is lock and not again.acquire(blocking=False)  # still held: one user
    assert jobs.model_lock("gradcam:other") is not lock


def test_the_job_command_passes_the_kwargs_as_one_json_argument(stand_in: Path, monkeypatch):
    seen: list[list[str]] = []
    real = jobs.subprocess.Popen

    def spy(cmd, **kw):  # noqa: ANN001, ANN003
        seen.append(cmd)
        return real(cmd, **kw)

    monkeypatch.setattr(jobs.subprocess, "Popen", spy)
    (stand_in / "release").touch()
    job = jobs.start(f"k-cmd-{time.time_ns()}", "x", {"checkpoint": "c", "num_workers": 0})
    _until(lambda: job.finished)
    assert seen[0][: len(jobs.WORKER)] == jobs.WORKER
    assert json.loads(seen[0][-1]) == {"checkpoint": "c", "num_workers": 0}


def test_a_hosted_server_ignores_the_clear_cache_message(monkeypatch: pytest.MonkeyPatch):
    import ui.auth  # noqa: F401 - installs the guard

    calls: list[int] = []

    @st.cache_data
    def cached(x: int) -> int:
        calls.append(x)
        return x

    cached(1)
    monkeypatch.setenv("CLASSLENS_HOSTED", "1")
    AppSession._handle_clear_cache_request(SimpleNamespace(_session_state={}))
    cached(1)
    assert calls == [1]  # still cached: the message was ignored
    monkeypatch.setenv("CLASSLENS_HOSTED", "0")  # locally the developer's menu entry works
    AppSession._handle_clear_cache_request(SimpleNamespace(_session_state={}))
    cached(1)
    assert calls == [1, 1]


# --- issue 10, item 3: the phase of an evaluation, from the first second ----------------------

PHASED = """
import json, pathlib, sys, time
base = pathlib.Path(sys.argv[1])
def say(obj):
    print(json.dumps(obj), flush=True)
def hold(name):
    deadline = time.monotonic() + 60
    while not (base / name).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
hold("go-load")
say({"phase": "loading the model"})
hold("go-scan")
say({"phase": "scanning the dataset"})
say({"phase": "preparing", "total": 40})
say({"log": "preprocessing: 32 px (declared)"})
hold("go-eval")
say({"log": "evaluating 40 images (digits_cnn, 32px, fp32) on cpu"})
say({"progress": [10, 40]})
hold("go-write")
say({"progress": [40, 40]})
hold("go-end")
say({"error": "stopped by the test"})
"""


def test_a_job_reports_its_phase_from_the_first_second(tmp_path: Path, monkeypatch) -> None:
    script = tmp_path / "phased.py"
    script.write_text(PHASED)
    monkeypatch.setattr(jobs, "WORKER", [sys.executable, str(script), str(tmp_path)])
    job = jobs.start(f"k-phase-{time.time_ns()}", "m on d", {"checkpoint": "c"})

    def step(release: str, phase: str) -> tuple[float | None, str]:
        if release:
            (tmp_path / release).touch()
        _until(lambda: job.phase == phase)
        return jobs.status(job)

    frac, text = step("", jobs.STARTING)  # before the child has said anything
    assert frac is None and text.startswith("m on d: starting the evaluation process…")
    frac, text = step("go-load", "loading the model")
    assert frac is None and "loading the model…" in text
    frac, text = step("go-scan", "preparing")
    _until(lambda: job.detail.startswith("preprocessing"))
    assert frac is None and "preparing… · 40 images found" in text
    assert job.rate == 0 and job.seconds_left != job.seconds_left  # no rate before inference
    frac, text = step("go-eval", jobs.EVALUATING)
    _until(lambda: job.done == 10)
    frac, text = jobs.status(job)
    assert frac == 0.25 and "evaluating 10/40 images ·" in text and " img/s · " in text
    assert text.endswith(" left") and job.rate > 0
    frac, text = step("go-write", jobs.WRITING)
    assert frac == 1.0 and text == "m on d: writing the run (40 images evaluated)"
    (tmp_path / "go-end").touch()
    _until(lambda: job.finished)
    assert job.error == "stopped by the test"


@pytest.mark.parametrize(
    ("line", "phase"),
    [
        ("cached run abc: no inference needed", "opening the stored run"),
        ("waiting for another evaluation of run abc", "waiting for another evaluation of the "
         "same inputs"),
        ("probe: 64 px chosen", "preparing"),  # other lines are detail only
    ],
)  # fmt: skip
def test_logged_lines_that_mark_a_phase(line: str, phase: str) -> None:
    job = jobs.Job("k", "x", phase="preparing")
    job.update({"log": line})
    assert job.phase == phase and job.detail == line


# --- a job stopped at the server's memory cap (core.hosting.child_memory) ---------------------

HOG = """
import json, time
print(json.dumps({"phase": "loading the model"}), flush=True)
held = []
for _ in range(100):  # bounded: 800 MB at most; the cap stops it long before
    held.append(b"x" * (8 << 20))
    time.sleep(0.02)
print(json.dumps({"error": "not stopped"}), flush=True)
"""


def test_a_job_past_the_memory_cap_ends_with_one_clear_line(tmp_path: Path, monkeypatch) -> None:
    from core.hosting import child_memory
    from ui.form_errors import for_form

    script = tmp_path / "hog.py"
    script.write_text(HOG)
    monkeypatch.setattr(jobs, "WORKER", [sys.executable, str(script)])
    monkeypatch.setenv("CLASSLENS_JOB_MEMORY_MB", "64")
    job = jobs.start(f"k-hog-{time.time_ns()}", "m on d", {"checkpoint": "c"})
    _until(lambda: job.finished)
    assert job.run is None and job.phase == "loading the model"
    assert job.error == child_memory.message("the evaluation", 64)
    assert job.error.startswith("the evaluation used more than 64 MB of memory")
    assert job.error.endswith("an administrator can raise CLASSLENS_JOB_MEMORY_MB.")
    assert job.memory is not None and job.memory.exceeded and job.memory.peak_mb > 64
    assert for_form(job.error) == job.error  # shown in the job status as written
    again = jobs.start(job.key, "m on d", {"checkpoint": "c"})  # the server keeps serving
    assert again is not job  # a failed job may be retried
    _until(lambda: again.finished)
