"""Evaluations off the script thread: one job per input key, shared by every session.

A widget click reruns the page script; the job keeps running in its own thread, and a second
request for the same inputs joins the running job instead of starting another. Across server
processes the run-id lock in core.runs does the same. Each job writes one line to stderr when
its inference starts (``classlens: inference started: <label>``), which the load test counts.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import streamlit as st

from core.errors import ClassLensError
from core.inference import Progress
from core.runs import Run


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


@st.cache_resource
def _registry() -> tuple[dict[str, Job], threading.Lock]:
    return {}, threading.Lock()


def get(key: str) -> Job | None:
    """Return the job for ``key``, if one was started in this server process."""
    jobs, lock = _registry()
    with lock:
        return jobs.get(key)


def start(key: str, label: str, work: Callable[[Progress], Run]) -> Job:
    """Start ``work`` in a thread unless a job for ``key`` is running or succeeded; return it."""
    jobs, lock = _registry()
    with lock:
        job = jobs.get(key)
        if job is not None and (not job.finished or job.error is None):
            return job
        job = jobs[key] = Job(key, label)

    said: list[bool] = []

    def progress(done: int, total: int) -> None:
        if not said:  # the first progress call: inference really runs (not a stored run)
            said.append(True)
            print(f"classlens: inference started: {label}", file=sys.stderr, flush=True)
        job.done, job.total = done, total

    def target() -> None:
        try:
            job.run = work(progress)
        except ClassLensError as exc:
            job.error = str(exc)
        except Exception as exc:  # shown in the UI; the server keeps serving
            job.error = f"unexpected {type(exc).__name__}: {exc}"
        finally:
            job.finished = True

    threading.Thread(target=target, name=f"classlens-eval-{key[:8]}", daemon=True).start()
    return job


@st.cache_resource
def _model_locks() -> tuple[dict[str, threading.Lock], threading.Lock]:
    return {}, threading.Lock()


def model_lock(key: str) -> threading.Lock:
    """Return the lock that guards the model ``key`` shared through ``st.cache_resource``.

    A shared torch module is not safe to run from two sessions at once when a call changes
    it (Grad-CAM registers hooks and runs backward; ``.to(device)``/``.eval()`` mutate it),
    so every use of such a model holds its lock.
    """
    locks, guard = _model_locks()
    with guard:
        return locks.setdefault(key, threading.Lock())
