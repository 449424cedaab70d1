"""core.hosting.child_memory: a job's child process stopped above its memory cap, with its
process group, never the server; workers forked by the child are charged what they add.

The children here are plain Python (no torch): each allocates resident memory in a bounded
loop and says how far it got; the watch must stop it long before the loop ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.hosting import child_memory

# Allocate `step` MB of resident memory (filled, not just reserved) up to `steps` times;
# `fork` first forks that many children that hold their parent's pages and sit (the pages are
# shared, not new); `grandchild` makes a forked child do the allocating instead.
HOG = """
import json, os, pathlib, sys, time
base, step, steps, fork, grandchild = pathlib.Path(sys.argv[1]), *map(int, sys.argv[2:6])
held = [b"x" * (40 << 20)] if fork else []  # 40 MB the forked children share
kids = []
for _ in range(fork):
    pid = os.fork()
    if pid == 0:
        os.close(1)  # the parent's reader waits for no one but the parent
        time.sleep(5)  # bounded: hold the shared pages, then go
        os._exit(0)
    kids.append(pid)
worker = os.getpid()
if grandchild:
    pid = os.fork()
    if pid:
        kids.append(pid)
        (base / "pids").write_text(json.dumps({"pgid": os.getpgid(0), "kids": kids, "me": worker}))
        time.sleep(10)  # bounded; the watch stops the group before
        sys.exit(0)
else:
    (base / "pids").write_text(json.dumps({"pgid": os.getpgid(0), "kids": kids, "me": worker}))
for i in range(steps):
    held.append(b"x" * (step << 20))
    time.sleep(0.02)
time.sleep(0.3)  # held a moment: the watch sees the total
print(json.dumps({"allocated_mb": (i + 1) * step}), flush=True)
"""


def _hog(tmp_path: Path, limit_mb: int | None, *, step: int = 8, steps: int = 40, fork: int = 0,
         grandchild: int = 0) -> tuple[child_memory.Watch, str]:  # fmt: skip
    script = tmp_path / "hog.py"
    script.write_text(HOG)
    cmd = [sys.executable, str(script), str(tmp_path), str(step), str(steps), str(fork)]
    with child_memory.watched([*cmd, str(grandchild)], limit_mb, stdout=subprocess.PIPE,
                              text=True) as watch:  # fmt: skip
        out, _ = watch.proc.communicate(timeout=60)
    return watch, out


def _gone(pid: int) -> bool:
    """Return whether ``pid`` ended (or is a zombie waiting for a parent that is not us)."""
    deadline = time.monotonic() + 10  # bounded: SIGKILL lands at once, the reaping may lag
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def test_a_child_allocating_past_the_cap_is_stopped_with_its_group(tmp_path: Path) -> None:
    watch, out = _hog(tmp_path, 64, steps=100)  # would reach 800 MB
    assert watch.exceeded and out == ""  # killed in its loop: it never said how far it got
    assert watch.proc.returncode == -9
    assert watch.peak_mb > 64
    pids = json.loads((tmp_path / "pids").read_text())
    assert pids["pgid"] == pids["me"] != os.getpgrp()  # its own group: the server is not in it


@pytest.mark.slow  # seconds of children held on purpose: not in test-fast
def test_under_the_cap_or_without_one_the_child_runs_to_its_end(tmp_path: Path) -> None:
    watch, out = _hog(tmp_path, 512, steps=10)  # 80 MB of 512
    assert not watch.exceeded and json.loads(out) == {"allocated_mb": 80}
    assert watch.proc.returncode == 0 and watch.polls >= 1
    assert 80 <= watch.peak_mb < 512  # what it allocated was seen
    watch, out = _hog(tmp_path, None, steps=10)  # no cap (the local default): nothing watches
    assert json.loads(out) == {"allocated_mb": 80} and watch.polls == 0 and watch.peak_mb == 0


@pytest.mark.slow  # seconds of children held on purpose: not in test-fast
def test_forked_workers_are_charged_what_they_add_not_the_pages_they_share(tmp_path) -> None:  # noqa: ANN001
    # 40 MB held, shared with 3 forked children: counted once (RssAnon would say 160 MB)
    watch, out = _hog(tmp_path, 100, steps=4, fork=3)
    assert not watch.exceeded and json.loads(out) == {"allocated_mb": 32}
    assert 40 + 32 <= watch.peak_mb < 100
    for kid in json.loads((tmp_path / "pids").read_text())["kids"]:
        os.kill(kid, 9)  # nothing else would end them before their sleep


@pytest.mark.slow  # seconds of children held on purpose: not in test-fast
def test_a_grandchild_allocating_past_the_cap_stops_the_whole_group(tmp_path: Path) -> None:
    watch, out = _hog(tmp_path, 64, steps=100, grandchild=1)
    assert watch.exceeded and out == ""
    pids = json.loads((tmp_path / "pids").read_text())
    assert pids["kids"] and all(_gone(kid) for kid in pids["kids"])  # the allocator too


def test_the_message_names_the_job_the_limit_and_the_setting() -> None:
    text = child_memory.message("the evaluation", 8192)
    assert text == (
        "the evaluation used more than 8,192 MB of memory, this server's limit for one job, so "
        "it was stopped (nothing half-done was stored); an administrator can raise "
        "CLASSLENS_JOB_MEMORY_MB."
    )
    assert "\n" not in text
