"""Evaluations off the script thread: one job per input key, shared by every session.

A widget click reruns the page script; the job keeps running in a child process
(``core.engine.worker``; a thread of the server would share its GIL with every session's reruns and
crawl under load), watched by a thread that mirrors its progress. A second request for the
same inputs joins the running job instead of starting another. Across server
processes the run-id lock in core.runs does the same. Each job writes one line to stderr when
its inference starts (``classlens: inference started: <label>``), which the load test counts.
The child's memory is capped at ``Settings.job_memory_mb`` (``core.hosting.child_memory``): a
job stopped there ends with that module's one line as its error, and the server keeps serving.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.hosting import child_memory, settings
from core.runs import Run, RunStore

REPO = Path(__file__).resolve().parents[1]


FOLLOW_KEY = "_followed_jobs"  # session_state: the job keys this session shows (ui.progress)
STARTING = "starting the evaluation process"
EVALUATING, WRITING = "evaluating", "writing the run"
# What a line evaluate() logs says about the phase (the rest only become the job's detail).
LOG_PHASES = (
    ("cached run", "opening the stored run"),
    ("waiting for another evaluation", "waiting for another evaluation of the same inputs"),
    ("evaluating ", EVALUATING),
)


@dataclass
class Job:
    """One evaluation's live state (mutated only by its own thread)."""

    key: str
    label: str
    started: float = field(default_factory=time.time)
    done: int = 0
    total: int = 0
    run: Run | None = None
    error: str | None = None
    finished: bool = False
    # Where the evaluation is: STARTING, core.engine.worker.PHASES, EVALUATING, WRITING, or
    # LOG_PHASES.
    phase: str = STARTING
    detail: str = ""  # the last line evaluate() logged (the probe's choice, the device...)
    evaluating_since: float | None = None  # when the first batch was reported
    # The child's memory watch once it ended (peak, polls, its CPU; core.hosting.child_memory).
    memory: child_memory.Watch | None = None

    @property
    def rate(self) -> float:
        """Images per second since inference started (0 before)."""
        if self.evaluating_since is None:
            return 0.0
        return self.done / max(time.time() - self.evaluating_since, 1e-9)

    @property
    def seconds_left(self) -> float:
        """Estimated seconds to finish, from the rate so far (NaN before any image)."""
        return (self.total - self.done) / self.rate if self.rate > 0 else float("nan")

    def update(self, msg: dict[str, Any]) -> None:
        """Apply one message of core.engine.worker's protocol (phase, log or progress)."""
        if "phase" in msg:
            self.phase = str(msg["phase"])
            self.total = int(msg.get("total", self.total))
        elif "log" in msg:
            self.detail = str(msg["log"])
            for start, phase in LOG_PHASES:
                if self.detail.startswith(start):
                    self.phase = phase
        elif "progress" in msg:
            if self.evaluating_since is None:
                self.evaluating_since = time.time()
            self.done, self.total = msg["progress"]
            self.phase = WRITING if self.total and self.done >= self.total else EVALUATING


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def status(job: Job) -> tuple[float | None, str]:
    """Return (fraction done or None before inference, one line) for a running job."""
    elapsed = _clock(time.time() - job.started)
    if job.phase == EVALUATING:
        left = job.seconds_left
        eta = f"{_clock(left)} left" if left == left else "timing the first batch"
        frac = job.done / job.total if job.total else 0.0
        return frac, (
            f"{job.label}: evaluating {job.done:,}/{job.total:,} images · "
            f"{job.rate:,.0f} img/s · {eta}"
        )
    if job.phase == WRITING:
        return 1.0, f"{job.label}: writing the run ({job.total:,} images evaluated)"
    found = f" · {job.total:,} images found" if job.total else ""
    return None, f"{job.label}: {job.phase}…{found} ({elapsed})"


# Shared by every session of this server process. Plain module state, not st.cache_resource:
# any visitor (the login screen included) can send Streamlit's clear-cache message, which
# empties every st.cache_* and would lose a running job's progress and let a second click
# start a second worker.
_JOBS: dict[str, Job] = {}
_JOBS_LOCK = threading.Lock()
_MODEL_LOCKS: dict[str, threading.Lock] = {}
_MODEL_LOCKS_GUARD = threading.Lock()
# The child process command; tests put a stand-in here.
WORKER = [sys.executable, "-m", "core.engine.worker"]


def get(key: str) -> Job | None:
    """Return the job for ``key``, if one was started in this server process."""
    with _JOBS_LOCK:
        return _JOBS.get(key)


def start(key: str, label: str, kwargs: dict[str, Any]) -> Job:
    """Start ``core.engine.evaluate.evaluate(**kwargs)`` in a child process unless a job for ``key``
    is running or succeeded; return it. ``kwargs`` must be JSON-serialisable."""
    with _JOBS_LOCK:
        job = _JOBS.get(key)
        if job is not None and (not job.finished or job.error is None):
            return job
        job = _JOBS[key] = Job(key, label)
    threading.Thread(
        target=_watch, args=(job, json.dumps(kwargs)), name=f"classlens-eval-{key[:8]}",
        daemon=True,
    ).start()  # fmt: skip
    return job


def _watch(job: Job, kwargs: str) -> None:
    """Run the worker process for ``job`` and mirror its progress and result into ``job``."""
    said = False
    result: dict[str, Any] = {}
    try:
        limit = settings.current().job_memory_mb
        with child_memory.watched(
            [*WORKER, kwargs],
            limit,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as watch:
            proc = watch.proc
            errors: list[str] = []
            for msg in child_memory.messages(proc, errors):
                if "progress" in msg and not said:  # the first progress report: inference runs
                    said = True
                    print(f"classlens: inference started: {job.label}", file=sys.stderr, flush=True)
                if {"phase", "log", "progress"} & msg.keys():
                    job.update(msg)
                else:
                    result = msg
        job.memory = watch
        if watch.exceeded and limit is not None:  # stopped by the watch: its line, not a crash
            job.error = child_memory.message("the evaluation", limit)
        elif "error" in result:
            job.error = result["error"]
        elif "run" in result:
            job.run = RunStore(result["runs_dir"]).get(result["run"])
            if job.run is None:
                job.error = f"run {result['run']} was written but cannot be read back."
        else:
            tail = "".join(errors[-3:]).strip() or f"exit status {proc.returncode}"
            job.error = f"the evaluation process stopped unexpectedly: {tail}"
    except Exception as exc:  # shown in the UI; the server keeps serving
        job.error = f"unexpected {type(exc).__name__}: {exc}"
    finally:
        job.finished = True


def model_lock(key: str) -> threading.Lock:
    """Return the lock that guards the model ``key`` shared through ``st.cache_resource``.

    A shared torch module is not safe to run from two sessions at once when a call changes
    it (Grad-CAM registers hooks and runs backward; ``.to(device)``/``.eval()`` mutate it),
    so every use of such a model holds its lock.
    """
    with _MODEL_LOCKS_GUARD:
        return _MODEL_LOCKS.setdefault(key, threading.Lock())
