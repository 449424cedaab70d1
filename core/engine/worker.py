"""One evaluation in a child process, for the dashboard: ``python -m core.engine.worker '<json>'``.

The dashboard's server thread must stay free to serve sessions: inference in a thread of the
server shares its GIL with every session's reruns and crawls under load. The child takes the
keyword arguments of ``core.engine.evaluate.evaluate`` as one JSON object and reports on stdout, one
JSON object per line:

- ``{"phase": name}`` as it reaches each phase (``PHASES``), with ``"total"`` (the images
  found) once the dataset is scanned;
- ``{"log": line}`` for each line ``evaluate`` logs (cached run, waiting for another
  evaluation, the probe's choice, "evaluating N images ...");
- ``{"progress": [done, total]}`` while inference runs;
- ``{"run": run_id, "runs_dir": dir}`` or ``{"error": message}`` last.

A ``"metadata"`` key (a CSV/Parquet file, the form's metadata field) is not passed to
``evaluate``: the file is attached to the run afterwards, as the CLI's ``--metadata`` does.

It exits 0 either way; anything else on exit is a crash the parent reports.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.errors import ClassLensError

LOADING, SCANNING, PREPARING = "loading the model", "scanning the dataset", "preparing"
PHASES = (LOADING, SCANNING, PREPARING)  # then evaluating (progress), then writing the run


def _say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


@contextmanager
def _phases() -> Iterator[None]:
    """Report loading and scanning as ``evaluate`` reaches them.

    ``evaluate`` takes no phase callback, so the two module functions it calls first are
    wrapped; this process exists for this one evaluation, so nothing else sees the wrappers.
    tests/test_worker.py checks the real sequence, so a refactor that bypasses them fails there.
    """
    from core.engine import data, models

    load, scan = models.load_checkpoint, data.scan

    def loading(*args: Any, **kwargs: Any) -> Any:
        _say({"phase": LOADING})
        return load(*args, **kwargs)

    def scanning(*args: Any, **kwargs: Any) -> Any:
        _say({"phase": SCANNING})
        ds = scan(*args, **kwargs)
        _say({"phase": PREPARING, "total": len(ds.items)})
        return ds

    models.load_checkpoint, data.scan = loading, scanning
    try:
        yield
    finally:
        models.load_checkpoint, data.scan = load, scan


def main(argv: list[str]) -> int:
    """Run ``evaluate`` with the JSON keyword arguments in ``argv[0]``; report on stdout."""
    from core.engine.evaluate import evaluate

    kwargs = json.loads(argv[0])
    metadata_file = kwargs.pop("metadata", None)  # attached after, like the CLI's --metadata
    try:
        with _phases():
            run = evaluate(
                **kwargs,
                progress=lambda done, total: _say({"progress": [done, total]}),
                log=lambda line: _say({"log": line}),
            )
        if metadata_file:
            _attach(run, metadata_file)
    except ClassLensError as exc:
        _say({"error": str(exc)})
    except Exception as exc:  # reported in the UI as a one-line error
        _say({"error": f"unexpected {type(exc).__name__}: {exc}"})
    else:
        _say({"run": run.run_id, "runs_dir": str(run.path.parent)})
    return 0


def _attach(run: Any, file: str) -> None:
    """Attach the metadata file to the run (``core.engine.metadata``), logging what matched."""
    from core.engine import metadata
    from core.images.columns import root_paths

    info = metadata.attach(run, file, root_paths(run))
    m = info["match"]
    matched = f"{m['matched']:,} of {m['images']:,} images matched"
    _say({"log": f"metadata: {len(info['columns'])} columns, {matched}"})
    for warning in info["warnings"]:
        _say({"log": f"warning: {warning}"})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
