"""A memory cap on the dashboard's job processes, watched from the server (the parent).

An evaluation (``core.engine.worker``) or a robustness computation
(``core.images.robustness_worker``) runs in a child process. A checkpoint that loads fine can
still have a forward pass, or a dataset batch, that allocates tens of GB; with no bound that
takes the whole host down, the dashboard with it. ``Settings.job_memory_mb``
(``CLASSLENS_JOB_MEMORY_MB``; hosted default ``HOSTED_JOB_MEMORY_MB``) bounds it. Locally
(``make run``) there is no cap by default and no watch thread at all: the analyst evaluates
their own checkpoints on their own machine, where a cap could only stop a genuinely large
model; setting the variable caps local jobs too.

Why a watchdog in the parent rather than ``RLIMIT_AS`` in the child (what
``core.engine.vetting`` uses to read a checkpoint, which never touches a GPU):

- CUDA reserves address space far beyond any RAM at initialisation, so an address-space limit
  breaks evaluations on the GPU; a limit applied on CPU only would make the same setting mean
  different things on different servers.
- An address-space limit counts what is reserved, not what is used: glibc's per-thread arenas,
  torch's thread pools and a memory-mapped checkpoint reserve gigabytes that never become
  resident, so a limit in MB of address space is not the MB an administrator means.
- It is per process: DataLoader workers (the robustness child uses them) would each get the
  whole limit. The watchdog adds up the process tree.
- It cannot be undone by the child, and the parent knows the job ended for memory, so the one
  message below replaces whatever allocation error the child would have printed.

What is counted, every ``POLL_S``: the child's ``RssAnon + RssShmem`` (``/proc/<pid>/status``:
memory the kernel cannot drop; the resident pages of files, torch's shared libraries and a
memory-mapped checkpoint, are page cache shared with other processes and reclaimable) plus,
for each process the child started (``/proc/<pid>/task/<tid>/children``, recursively), what
it added since first seen: a forked DataLoader worker starts out sharing its parent's pages,
which ``RssAnon`` would count again in every worker. ``smaps_rollup``'s PSS would split shared
pages exactly but costs ~20 ms of CPU per read of a torch process, against ~20 us here.

The cost: a poll reads a few small /proc files. Measured on the sample evaluation (1,803
images, ``Watch.cpu_s``/``polls``, 2026-12-03, 2 cores at load average ~12): 220-350 polls
took 58-102 ms of the watch thread's CPU (~0.3 ms a poll, ~0.3% of one core), against
7.0-8.8 s of the child's CPU with or without the watch; wall times (23-42 s) varied with the
load, not with the watch. Linux only (``/proc``); elsewhere nothing is counted.

The limits: an allocation can overshoot by what the child allocates in one ``POLL_S`` (page
faults run at a few GB/s: under ~1 GB), which the cap's headroom absorbs; memory on the GPU
is not counted (it is not the host's; CUDA's own out-of-memory errors reach the job as
before). Above the cap the child's process group is killed (the child leads one of its own,
so its workers go with it and the server never does); the run store commits whole runs only
(a hidden temporary folder renamed into place; a killed writer's is never listed and is
removed by the store's next write), so nothing half-done is visible.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

POLL_S = 0.1  # seconds between two looks at the child's memory
ENV = "CLASSLENS_JOB_MEMORY_MB"
_LIVE: set[subprocess.Popen[Any]] = set()  # children still running, stopped at server exit
_LIVE_LOCK = threading.Lock()


def message(what: str, limit_mb: int, kept: str = "nothing half-done was stored") -> str:
    """Return the one line a job stopped for memory ends with (``what``: 'the evaluation')."""
    return (
        f"{what} used more than {limit_mb:,} MB of memory, this server's limit for one job, "
        f"so it was stopped ({kept}); an administrator can raise {ENV}."
    )


def _resident_kb(pid: int) -> int | None:
    """Return ``RssAnon + RssShmem`` of ``pid`` in kB, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read()
    except OSError:
        return None
    total = 0
    for line in text.splitlines():
        if line.startswith((b"RssAnon:", b"RssShmem:")):
            total += int(line.split()[1])
    return total


def _children(pid: int) -> list[int]:
    """Return the processes ``pid`` started (any of its threads), [] when unknown."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(c) for c in f.read().split())
        except OSError:
            continue  # a thread that ended, or a kernel without CONFIG_PROC_CHILDREN
    return out


class Watch:
    """The memory watch of one child process; ``exceeded`` once it stopped it for memory."""

    def __init__(self, proc: subprocess.Popen[Any], limit_mb: int | None) -> None:
        self.proc, self.limit_mb = proc, limit_mb
        self.exceeded = False
        self.peak_mb = 0.0  # the most the watch saw counted at once
        self.polls = 0
        self.cpu_s = 0.0  # CPU time the watch's thread spent
        self._base: dict[int, int] = {}  # descendant pid -> its resident kB when first seen
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def used_kb(self) -> int:
        """Return what counts against the cap now (see the module docstring)."""
        own = _resident_kb(self.proc.pid) or 0
        seen: set[int] = set()
        todo = _children(self.proc.pid)
        added = 0
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            kb = _resident_kb(pid)
            if kb is None:
                continue
            added += max(0, kb - self._base.setdefault(pid, kb))
            todo.extend(_children(pid))
        for gone in self._base.keys() - seen:
            del self._base[gone]
        return own + added

    def _run(self) -> None:
        assert self.limit_mb is not None
        t0 = time.thread_time()
        limit_kb = self.limit_mb * 1024
        while self.proc.poll() is None:
            used = self.used_kb()
            self.polls += 1
            self.peak_mb = max(self.peak_mb, used / 1024)
            if used > limit_kb:
                self.exceeded = True
                stop(self.proc)
                break
            if self._stop.wait(POLL_S):
                break
        self.cpu_s = time.thread_time() - t0

    def start(self) -> None:
        """Start watching on a daemon thread (nothing to watch without a cap)."""
        if self.limit_mb is not None:
            self._thread = threading.Thread(
                target=self._run, name=f"classlens-memory-{self.proc.pid}", daemon=True
            )
            self._thread.start()

    def finish(self) -> None:
        """Stop watching (the child has ended or is being abandoned) and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def stop(proc: subprocess.Popen[Any]) -> None:
    """Kill ``proc``'s process group (it leads one: see ``watched``), else ``proc`` alone."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


@contextmanager
def watched(cmd: list[str], limit_mb: int | None, **popen: Any) -> Iterator[Watch]:
    """Start ``cmd`` (``subprocess.Popen(cmd, **popen)``) as the leader of a new process group
    and watch its memory against ``limit_mb`` (None: no cap) until the block ends; the child
    is ``watch.proc``. A child still running when the server exits is killed with its group."""
    proc = subprocess.Popen(cmd, process_group=0, **popen)
    with _LIVE_LOCK:
        _LIVE.add(proc)
    watch = Watch(proc, limit_mb)
    watch.start()
    try:
        yield watch
    finally:
        watch.finish()
        if proc.poll() is not None:
            with _LIVE_LOCK:
                _LIVE.discard(proc)


def messages(proc: subprocess.Popen[str], errors: list[str]) -> Iterator[dict[str, Any]]:
    """Yield each JSON object a job child prints on stdout, one per line (anything else a
    library prints is skipped), while a thread collects its stderr lines into ``errors``;
    return once its stdout closed and it ended (both pipes text, as ``watched`` starts jobs)."""
    assert proc.stdout is not None and proc.stderr is not None  # both piped by the caller
    stderr = proc.stderr
    drain = threading.Thread(target=lambda: errors.extend(stderr), daemon=True)
    drain.start()
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except ValueError:
            continue  # a library printing to stdout
        if isinstance(msg, dict):
            yield msg
    proc.wait()
    drain.join(timeout=5)


@atexit.register
def _stop_all() -> None:
    """Server exit: its job children lead their own process groups, so the terminal's Ctrl-C
    no longer reaches them; stop them here as it did."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        stop(proc)
