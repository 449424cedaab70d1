"""One derived run (core/images/robustness.py) in a child process, for the dashboard.

``corrupted_run`` here has the signature of ``robustness.corrupted_run`` and the same result,
but the model runs in ``python -m core.images.robustness_worker '<json>'``: inference in a
thread of the server would share its GIL with every session's reruns (the reason evaluations
run in core/engine/worker.py). The child reports one JSON object per line on stdout:
``{"progress": [done, total]}`` while it runs, then ``{"run": id}`` or ``{"error": message}``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from core import runs
from core.engine.inference import Progress
from core.errors import ClassLensError
from core.images import robustness


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
    """Return ``robustness.corrupted_run(...)`` computed in a child process (``python -m
    core.images.robustness_worker``), as the dashboard runs evaluations: the server's threads
    keep its GIL for the sessions. A stored run is returned without starting one; the child's
    ClassLensError is raised here with its message."""
    rid = robustness.derived_id(
        run, split, corruption, severity, sample=sample, seed=seed
    )  # checks input
    hit = store.get(rid)
    if hit is not None:
        return hit
    args = {
        "runs_dir": str(store.root),
        "run": run.run_id,
        "split": split,
        "corruption": corruption,
        "severity": severity,
        "sample": sample,
        "seed": seed,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.images.robustness_worker", json.dumps(args)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None  # both piped above
    errors: list[str] = []
    stderr = proc.stderr
    drain = threading.Thread(target=lambda: errors.extend(stderr), daemon=True)
    drain.start()
    result: dict[str, Any] = {}
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except ValueError:
            continue  # a library printing to stdout
        if isinstance(msg, dict) and "progress" in msg:
            if progress is not None:
                progress(*msg["progress"])
        elif isinstance(msg, dict):
            result = msg
    proc.wait()
    drain.join(timeout=5)
    if "error" in result:
        raise ClassLensError(str(result["error"]))
    out = store.get(str(result.get("run", "")))
    if out is None:
        tail = "".join(errors[-3:]).strip() or f"exit status {proc.returncode}"
        raise ClassLensError(f"the robustness process stopped unexpectedly: {tail}")
    return out


def _say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def main(argv: list[str]) -> int:
    """Child process: compute one derived run from the JSON arguments in ``argv[0]``; report
    ``{"progress": [done, total]}`` lines, then ``{"run": id}`` or ``{"error": message}``."""
    args = json.loads(argv[0])
    try:
        store = runs.RunStore(args["runs_dir"])
        run = store.get(args["run"])
        if run is None:
            raise ClassLensError(f"no run {args['run']} in {store.root}; evaluate it first.")
        out = robustness.corrupted_run(
            store, run, args["split"], args["corruption"], int(args["severity"]),
            sample=args.get("sample"), seed=int(args.get("seed", 0)),
            progress=lambda done, total: _say({"progress": [done, total]}),
        )  # fmt: skip
    except ClassLensError as exc:
        _say({"error": str(exc)})
    except Exception as exc:  # reported to the caller as a one-line error
        _say({"error": f"unexpected {type(exc).__name__}: {exc}"})
    else:
        _say({"run": out.run_id})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
