"""Shared heavy work: one computation per key across every session of a server process.

A page that needs something slow (Grad-CAM overlays, a run's embeddings) calls
``submit(key, fn, *args)`` and gets a ``Task`` at once; the work runs on a small pool of
worker threads, never on the page's script thread, so a page never waits for another
viewer's work: it shows ``task.fraction`` and reruns until ``task.finished``. A second
``submit`` with the same key (another viewer, another rerun) joins the running or finished
task instead of computing again.

The registry is plain module state, not ``st.cache_*``: any visitor (the login screen
included) can send Streamlit's clear-cache message, which would drop a running task and let
the next click start a second computation. Finished results are kept in LRU order under a
bound on their count and their bytes (``configure``); a running task is never evicted.

``fn`` raising ``ClassLensError`` is an answer ("this model has no convolution"): the task
keeps the message in ``error`` like a result. Any other exception is logged and its task
forgotten when it finishes, so the next ``submit`` tries again.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import ClassLensError

log = logging.getLogger("classlens.tasks")

DEFAULT_WORKERS = 2  # heavy work at once per server; the rest queue (torch uses the cores)
DEFAULT_MAX_ENTRIES = 256  # finished results kept
DEFAULT_MAX_BYTES = 512 * 2**20  # their estimated size, all together


@dataclass
class Task:
    """One keyed computation's live state, shared by every session that asked for it."""

    key: Hashable
    label: str  # what it computes, for progress lines ("Grad-CAM of 24 images")
    submitted: float = field(default_factory=time.time)
    done: int = 0  # progress: units done of ``total`` (0 of 0 until fn reports)
    total: int = 0
    result: Any = None
    error: str | None = None  # the ClassLensError message or "unexpected ..." when it failed
    nbytes: int = 0  # estimated size of ``result`` once finished
    _exception: BaseException | None = field(default=None, repr=False)  # an unexpected one
    _finished: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished(self) -> bool:
        """True once ``result`` or ``error`` is set."""
        return self._finished.is_set()

    @property
    def fraction(self) -> float | None:
        """Return the share done in [0, 1], or None before ``fn`` reported a total."""
        return min(self.done / self.total, 1.0) if self.total else None

    def report(self, done: int, total: int) -> None:
        """Record progress (the ``progress`` callback handed to ``fn``)."""
        self.done, self.total = int(done), int(total)

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to ``timeout`` seconds for the task; return whether it finished."""
        return self._finished.wait(timeout)


def size_of(value: Any) -> int:
    """Return an estimate of the bytes ``value`` holds (arrays, bytes, containers of them)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, bytes | bytearray | str):
        return len(value)
    if isinstance(value, dict):
        return sum(size_of(v) for v in value.values()) + 64 * len(value)
    if isinstance(value, list | tuple | set | frozenset):
        return sum(size_of(v) for v in value) + 8 * len(value)
    nbytes = getattr(value, "nbytes", None)  # pandas objects, torch tensors
    if isinstance(nbytes, int):
        return nbytes
    parameters = getattr(value, "parameters", None)  # a torch module: its weights
    if callable(parameters):
        return sum(int(p.nbytes) for p in parameters())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a Checkpoint
        return sum(size_of(getattr(value, f.name)) for f in dataclasses.fields(value))
    return sys.getsizeof(value)


_LOCK = threading.Lock()
_RUNNING: dict[Hashable, Task] = {}
_DONE: OrderedDict[Hashable, Task] = OrderedDict()
_LIMITS = {"workers": DEFAULT_WORKERS, "entries": DEFAULT_MAX_ENTRIES, "bytes": DEFAULT_MAX_BYTES}
_POOL: ThreadPoolExecutor | None = None


def configure(
    *,
    workers: int = DEFAULT_WORKERS,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> None:
    """Set the pool size and the bounds on kept results (takes effect for new work)."""
    global _POOL
    if workers < 1 or max_entries < 0 or max_bytes < 0:
        raise ValueError(
            f"workers must be >= 1 and bounds >= 0, got {workers}, {max_entries}, {max_bytes}."
        )
    with _LOCK:
        _LIMITS.update(workers=workers, entries=max_entries, bytes=max_bytes)
        old, _POOL = _POOL, None
        _evict()
    if old is not None:
        old.shutdown(wait=False)  # queued work still runs; new work goes to the new pool


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(_LIMITS["workers"], thread_name_prefix="classlens-task")
    return _POOL


def _evict() -> None:
    """Drop the least recently used finished tasks beyond the bounds (hold _LOCK)."""
    total = sum(t.nbytes for t in _DONE.values())
    while _DONE and (len(_DONE) > _LIMITS["entries"] or total > _LIMITS["bytes"]):
        _, old = _DONE.popitem(last=False)
        total -= old.nbytes


def get(key: Hashable) -> Task | None:
    """Return the running or kept task for ``key``, if any (marks a kept one as recently used)."""
    with _LOCK:
        if key in _RUNNING:
            return _RUNNING[key]
        task = _DONE.get(key)
        if task is not None:
            _DONE.move_to_end(key)
        return task


def submit(
    key: Hashable,
    fn: Callable[..., Any],
    *args: Any,
    label: str = "",
    progress: bool = False,
) -> Task:
    """Return the task computing ``fn(*args)`` for ``key``, starting it unless one exists.

    key: everything the result depends on (run id, checkpoint sha256, the request's shape);
    hashable. progress: pass ``progress=task.report`` to ``fn`` (a ``(done, total)`` callback).
    """
    with _LOCK:
        task = _RUNNING.get(key) or _DONE.get(key)
        if task is not None:
            if key in _DONE:
                _DONE.move_to_end(key)
            return task
        task = _RUNNING[key] = Task(key, label or str(key))
        _pool().submit(_run, task, fn, args, progress)
    # One line per computation started (the load test counts them in the server log).
    print(f"classlens: task started: {task.label}", file=sys.stderr, flush=True)
    return task


def _run(task: Task, fn: Callable[..., Any], args: tuple[Any, ...], progress: bool) -> None:
    keep = True
    try:
        kwargs = {"progress": task.report} if progress else {}
        task.result = fn(*args, **kwargs)
        task.nbytes = size_of(task.result)
    except ClassLensError as exc:  # an answer, kept like a result
        task.error = str(exc)
        task.nbytes = len(task.error)
    except BaseException as exc:  # the server keeps serving; the next submit retries
        log.exception("task %s failed", task.label)
        task.error = f"unexpected {type(exc).__name__}: {exc}"
        task._exception = exc
        keep = False
    with _LOCK:
        _RUNNING.pop(task.key, None)
        if keep and task.nbytes <= _LIMITS["bytes"]:  # one over the bound alone: not kept
            _DONE[task.key] = task
            _evict()
    task._finished.set()


def compute(key: Hashable, fn: Callable[..., Any], *args: Any, label: str = "") -> Any:
    """Return ``fn(*args)`` for ``key``, computed once: here when no task has the key, else by
    waiting for the one that has. For use inside a task (a model load its work needs) without
    queueing behind the pool. Raises ClassLensError when the computation said so."""
    with _LOCK:
        task = _RUNNING.get(key) or _DONE.get(key)
        mine = task is None
        if mine:
            task = _RUNNING[key] = Task(key, label or str(key))
        elif key in _DONE:
            _DONE.move_to_end(key)
    assert task is not None
    if mine:
        _run(task, fn, args, False)
    task.wait()
    if task._exception is not None:
        raise task._exception
    if task.error is not None:
        raise ClassLensError(task.error)
    return task.result


def forget(key: Hashable) -> None:
    """Drop the finished task for ``key`` (a running one finishes and is kept)."""
    with _LOCK:
        _DONE.pop(key, None)


def kept_bytes() -> int:
    """Return the estimated bytes of every kept result."""
    with _LOCK:
        return sum(t.nbytes for t in _DONE.values())


def clear() -> None:
    """Forget every finished task (tests; running ones finish and are kept)."""
    with _LOCK:
        _DONE.clear()
