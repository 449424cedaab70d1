"""One evaluation in a child process, for the dashboard: ``python -m core.worker '<json>'``.

The dashboard's server thread must stay free to serve sessions: inference in a thread of the
server shares its GIL with every session's reruns and crawls under load. The child takes the
keyword arguments of ``core.evaluate.evaluate`` as one JSON object and reports on stdout, one
JSON object per line: ``{"progress": [done, total]}`` while it runs, then
``{"run": run_id, "runs_dir": dir}`` or ``{"error": message}`` last. It exits 0 either way;
anything else on exit is a crash the parent reports.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from core.errors import ClassLensError


def _say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def main(argv: list[str]) -> int:
    """Run ``evaluate`` with the JSON keyword arguments in ``argv[0]``; report on stdout."""
    from core.evaluate import evaluate

    kwargs = json.loads(argv[0])
    try:
        run = evaluate(**kwargs, progress=lambda done, total: _say({"progress": [done, total]}))
    except ClassLensError as exc:
        _say({"error": str(exc)})
    except Exception as exc:  # reported in the UI as a one-line error
        _say({"error": f"unexpected {type(exc).__name__}: {exc}"})
    else:
        _say({"run": run.run_id, "runs_dir": str(run.path.parent)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
