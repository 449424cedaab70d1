"""Map selections: a set of a run's images stored once in its folder under a short id.

The Embedding map's box / lasso selection becomes the slice-filter condition
``selection~selected~<id>`` (``core.analysis.where``); the images behind it are listed in
``<run>/selections/<id>.json`` (each image's split and path), so the ``?where=`` link stays
short and opens the same images. The id is ``<n>-<12 hex>``: the number of images and a hash
of their sorted keys, so the same images always get the same id (the file is written once)
and a file that does not match its name is refused when read.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ClassLensError
from core.runs import Run

FOLDER = "selections"
# Selections kept per run: beyond this the oldest files go (their links then say so), so
# viewers of a hosted dashboard cannot fill the disk one distinct selection at a time.
MAX_STORED = 256
AGAIN = "Select the images again on the Embedding map, or remove the condition."


class SelectionNotFound(ClassLensError):
    """A filter names a selection this run does not have (a link made on another run)."""


def _keys(run: Run) -> np.ndarray:
    """Return each prediction row's ``split/path`` key (unique within a run)."""
    p = run.predictions()
    return (p["split"].astype(str) + "/" + p["path"].astype(str)).to_numpy(dtype=object)


def selection_id(keys: Any) -> str:
    """Return the id of a set of ``split/path`` keys: ``<n>-<sha256 of the sorted keys>``."""
    ordered = sorted(set(map(str, keys)))
    digest = hashlib.sha256("\n".join(ordered).encode()).hexdigest()[:12]
    return f"{len(ordered)}-{digest}"


def _file(run: Run, sid: str) -> Path:
    base = run.parent if run.parent is not None else run
    return Path(base.path) / FOLDER / f"{sid}.json"


def save(run: Run, rows: Any) -> str:
    """Store the images at ``rows`` ((n,) bool or int positions over ``run.predictions()``)
    in the run folder (atomically, once per id) and return the selection's id.

    A slice of a run (``Run.subset``) stores in its parent's folder: the keys are the same.
    Raises ClassLensError when nothing is selected or the run folder cannot be written.
    """
    keys = _keys(run)[np.asarray(rows)]
    if not len(keys):
        raise ClassLensError("The selection holds no image; draw a box or lasso around some.")
    sid = selection_id(keys)
    final = _file(run, sid)
    if final.exists():
        return sid
    tmp = final.with_name(f".{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        final.parent.mkdir(exist_ok=True)
        tmp.write_text(json.dumps({"id": sid, "keys": sorted(set(map(str, keys)))}))
        os.replace(tmp, final)
        _prune(final.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ClassLensError(
            f"Could not store the selection in the run folder ({exc.strerror or exc}); the "
            "run store is read-only here, so a selection cannot become the filter."
        ) from None
    return sid


def _prune(folder: Path) -> None:
    """Remove the oldest selection files beyond MAX_STORED (by modification time)."""
    files = sorted(folder.glob("*.json"), key=lambda f: (f.stat().st_mtime_ns, f.name))
    for old in files[: max(0, len(files) - MAX_STORED)]:
        old.unlink(missing_ok=True)


def load(run: Run, sid: str) -> frozenset[str]:
    """Return the ``split/path`` keys of selection ``sid``, or raise SelectionNotFound saying
    why (missing, unreadable, or not matching its id) and what to do."""
    n = sid.split("-", 1)[0]
    what = f"The map selection {sid!r} ({n} images)"
    try:
        stored = json.loads(_file(run, sid).read_text())
    except FileNotFoundError:
        raise SelectionNotFound(
            f"{what} is not stored with this run: the link was made on another run, or the "
            f"run store was cleared. {AGAIN}"
        ) from None
    except (OSError, ValueError) as exc:
        raise SelectionNotFound(f"{what} could not be read ({exc}). {AGAIN}") from None
    keys = stored.get("keys") if isinstance(stored, dict) else None
    if not isinstance(keys, list) or selection_id(keys) != sid:
        raise SelectionNotFound(f"{what} is damaged: its images do not match its id. {AGAIN}")
    return frozenset(keys)


def rows(run: Run, sid: str) -> np.ndarray:
    """Return the (n,) bool rows of ``run.predictions()`` in selection ``sid`` (the rows of
    a slice that are in it, when ``run`` is a ``Run.subset``)."""
    keys = load(run, sid)
    return np.fromiter((k in keys for k in _keys(run)), dtype=bool, count=len(run.predictions()))
