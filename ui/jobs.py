"""Evaluations off the script thread: one job per input key, shared by every session.

A widget click reruns the page script; the job keeps running in a child process
(``core.worker``; a thread of the server would share its GIL with every session's reruns and
crawl under load), watched by a thread that mirrors its progress. A second request for the
same inputs joins the running job instead of starting another. Across server
processes the run-id lock in core.runs does the same. Each job writes one line to stderr when
its inference starts (``classlens: inference started: <label>``), which the load test counts.
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

from core.runs import Run, RunStore

REPO = Path(__file__).resolve().parents[1]


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

    @property
    def rate(self) -> float:
        """Images per second so far."""
        return self.done / max(time.time() - self.started, 1e-9)

    @property
    def seconds_left(self) -> float:
        """Estimated seconds to finish, from the rate so far."""
        return (self.total - self.done) / self.rate if self.rate > 0 else float("nan")


# Shared by every session of this server process. Plain module state, not st.cache_resource:
# any visitor (the login screen included) can send Streamlit's clear-cache message, which
# empties every st.cache_* and would lose a running job's progress and let a second click
# start a second worker.
_JOBS: dict[str, Job] = {}
_JOBS_LOCK = threading.Lock()
_MODEL_LOCKS: dict[str, threading.Lock] = {}
_MODEL_LOCKS_GUARD = threading.Lock()
# The child process command; tests put a stand-in here.
WORKER = [sys.executable, "-m", "core.worker"]


def get(key: str) -> Job | None:
    """Return the job for ``key``, if one was started in this server process."""
    with _JOBS_LOCK:
        return _JOBS.get(key)


def start(key: str, label: str, kwargs: dict[str, Any]) -> Job:
    """Start ``core.evaluate.evaluate(**kwargs)`` in a child process unless a job for ``key``
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
        proc = subprocess.Popen(
            [*WORKER, kwargs],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        errors: list[str] = []
        drain = threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)
        drain.start()
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # a library printing to stdout
            if "progress" in msg:
                if not said:  # the first progress report: inference really runs
                    said = True
                    print(f"classlens: inference started: {job.label}", file=sys.stderr, flush=True)
                job.done, job.total = msg["progress"]
            else:
                result = msg
        proc.wait()
        drain.join(timeout=5)
        if "error" in result:
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
