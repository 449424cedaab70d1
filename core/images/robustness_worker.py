"""One derived run (core/images/robustness.py) in a child process, for the dashboard.

``corrupted_runs`` (many settings) and ``corrupted_run`` (one, the signature of
``robustness.corrupted_run``) give the same runs, but the model runs in ``python -m
core.images.robustness_worker '<json>'``: inference in a thread of the server would share its
GIL with every session's reruns (the reason evaluations run in core/engine/worker.py). The
child reports one JSON object per line on stdout: ``{"started": true}`` once imported (the
parent records the start-up, see ``startup_s``), ``{"progress": [done, total]}`` while it
runs, then ``{"runs": [ids]}`` or ``{"error": message}``. Its memory is capped at
``Settings.job_memory_mb`` (``core.hosting.child_memory``): stopped there, the caller gets a
ClassLensError with that module's one line.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from core import runs
from core.engine.inference import Progress
from core.errors import ClassLensError
from core.hosting import child_memory, settings
from core.images import robustness

# The child's start-up until it can work (Python, importing torch and core): ``python -c
# "import core.images.robustness_worker"`` took 8.3, 7.8 and 5.4 s wall here (2026-12-03,
# load average 2.7-3.5 on 2 cores; the analyst journey saw 8-14 s on a busier box). Used until
# a child has run on the store: then its own measured start-up (``STARTUP_FILE``) is used.
STARTUP_S = 8.0
STARTUP_FILE = ".robustness_startup.json"  # in the store's root; listings skip dot names
# The child process command (the JSON arguments follow); tests put a stand-in here.
WORKER = [sys.executable, "-m", "core.images.robustness_worker"]


def startup_s(store: runs.RunStore) -> float:
    """Return the seconds the last child on ``store`` took to start (Popen to its first
    line), else ``STARTUP_S``."""
    try:
        value = float(json.loads((store.root / STARTUP_FILE).read_text())["startup_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return STARTUP_S
    return value if math.isfinite(value) and value >= 0 else STARTUP_S


def _record_startup(store: runs.RunStore, seconds: float) -> None:
    """Store the child's measured start-up atomically; a read-only store is no error."""
    final = store.root / STARTUP_FILE
    tmp = final.with_name(f".{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(json.dumps({"startup_s": round(seconds, 2)}))
        os.replace(tmp, final)
    except OSError:
        tmp.unlink(missing_ok=True)


def estimate(
    store: runs.RunStore,
    run: runs.Run,
    split: str,
    sample: int | None,
    corruption_names: Iterable[str],
    severities: Iterable[int],
    *,
    seed: int = 0,
) -> tuple[int, float, float]:
    """Return (images to evaluate, seconds in all, seconds of those to start the child) for
    ``corrupted_runs`` of these settings: ``robustness.estimate``'s work plus one child's
    start-up (``startup_s``) when there is work; (0, 0.0, 0.0) when everything is stored."""
    n, work = robustness.estimate(
        run, split, sample, corruption_names, severities, seed=seed, store=store
    )
    start = startup_s(store) if n else 0.0
    return n, work + start, start


def corrupted_run(
    store: runs.RunStore,
    run: runs.Run,
    split: str,
    corruption: str,
    severity: int,
    *,
    sample: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> runs.Run:
    """Return ``robustness.corrupted_run(...)`` computed in a child process (see
    ``corrupted_runs``, which starts one child for many settings: prefer it)."""
    runs_ = corrupted_runs(
        store, run, split, [(corruption, severity)], sample=sample, seed=seed, progress=progress
    )
    return runs_[0]


def corrupted_runs(
    store: runs.RunStore,
    run: runs.Run,
    split: str,
    settings: Sequence[tuple[str, int]],
    *,
    sample: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[runs.Run]:
    """Return the derived runs of ``settings`` ((corruption, severity) pairs), in order, those
    not stored yet computed one after another in ONE child process (``python -m
    core.images.robustness_worker``; its start-up, importing torch, is seconds), as the dashboard
    runs evaluations: the server's threads keep its GIL for the sessions.

    progress(done, total) counts images over all the runs to compute. The child's
    ClassLensError is raised here with its message (runs it stored before stay stored).
    """
    ids = [
        robustness.derived_id(run, split, c, s, sample=sample, seed=seed) for c, s in settings
    ]  # checks every setting before anything starts
    todo = [pair for pair, rid in zip(settings, ids, strict=True) if store.get(rid) is None]
    if todo:
        _in_child(store, run, split, todo, sample, seed, progress)
    out = [store.get(rid) for rid in ids]
    if any(r is None for r in out):
        raise ClassLensError("the robustness process ended without storing every run; try again.")
    return [r for r in out if r is not None]


def _in_child(
    store: runs.RunStore,
    run: runs.Run,
    split: str,
    todo: Sequence[tuple[str, int]],
    sample: int | None,
    seed: int,
    progress: Progress | None,
) -> None:
    args = {
        "runs_dir": str(store.root),
        "run": run.run_id,
        "split": split,
        "settings": [[c, int(s)] for c, s in todo],
        "sample": sample,
        "seed": seed,
    }
    t0 = time.perf_counter()
    limit = settings.current().job_memory_mb
    with child_memory.watched(
        [*WORKER, json.dumps(args)],
        limit,
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as watch:
        proc = watch.proc
        errors: list[str] = []
        result: dict[str, Any] = {}
        for msg in child_memory.messages(proc, errors):
            if "started" in msg:
                _record_startup(store, time.perf_counter() - t0)
            elif "progress" in msg:
                if progress is not None:
                    progress(*msg["progress"])
            else:
                result = msg
    if watch.exceeded and limit is not None:
        kept = "the runs it finished before stay stored, none half-done"
        raise ClassLensError(child_memory.message("the robustness computation", limit, kept))
    if "error" in result:
        raise ClassLensError(str(result["error"]))
    if "runs" not in result:
        tail = "".join(errors[-3:]).strip() or f"exit status {proc.returncode}"
        raise ClassLensError(f"the robustness process stopped unexpectedly: {tail}")


def _say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def _report(done: int, _of: int, *, before: int, total: int) -> None:
    _say({"progress": [before + done, total]})


def main(argv: list[str]) -> int:
    """Child process: compute the derived runs of the JSON arguments in ``argv[0]``; report
    ``{"progress": [done, total]}`` lines (images over all runs), then ``{"runs": [ids]}`` or
    ``{"error": message}``."""
    args = json.loads(argv[0])
    _say({"started": True})  # the imports are done: the parent times the start-up to here
    try:
        store = runs.RunStore(args["runs_dir"])
        run = store.get(args["run"])
        if run is None:
            raise ClassLensError(f"no run {args['run']} in {store.root}; evaluate it first.")
        split, sample, seed = args["split"], args.get("sample"), int(args.get("seed", 0))
        n = len(robustness.sample_paths(run, split, sample, seed))
        total = n * len(args["settings"])
        done = []
        for i, (corruption, severity) in enumerate(args["settings"]):
            out = robustness.corrupted_run(
                store, run, split, corruption, int(severity), sample=sample, seed=seed,
                progress=functools.partial(_report, before=i * n, total=total),
            )  # fmt: skip
            done.append(out.run_id)
    except ClassLensError as exc:
        _say({"error": str(exc)})
    except Exception as exc:  # reported to the caller as a one-line error
        _say({"error": f"unexpected {type(exc).__name__}: {exc}"})
    else:
        _say({"runs": done})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
