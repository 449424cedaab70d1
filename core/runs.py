"""The run store: immutable runs on disk, identified by their inputs, written atomically.

A run is a folder ``<runs_dir>/<run_id>/`` with ``predictions.parquet``, ``meta.json`` and
``metrics.json``. It is written under a hidden temporary name and renamed into place, so a
crash never leaves a half run visible; a damaged run is detected and dropped, never shown.

Probabilities are stored as float16 (format 2). At ImageNet size (50,000 images x 1,000
classes) float32 vectors are 200 MB on disk and in memory; float16 halves that, and its
relative error (< 0.05%, about 3 significant digits; values below 6e-8 round to 0) is below
what the views show: every metric comes from ``y_true``/``y_pred`` (stored as integers),
``confidence`` and ``loss`` stay float32 (computed from the model's full precision output),
and only probability-based views (thresholds, calibration, suspicious labels, top-3 in the
gallery) read ``probs``; there ROC AUC moves by < 1e-4 and average precision by < 0.005
(ties among scores below 6e-5; tests/test_scale.py checks both against scikit-learn).
Top-k storage was considered and not needed: with float16 the 50,000 x 1,000 run opens in
well under 1.5 GB (BENCHMARKS.md), and full vectors keep every class's PR curve.
``Run.probs()`` returns float32 whatever the stored width, so callers never see the storage
type; runs written as format 1 (float32 probabilities) are still read.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core import paths
from core.contracts import MetaJson, MetricsJson

FORMAT_VERSION = 2  # bump when predictions.parquet or metrics.json change shape
READ_VERSIONS = (1, 2)  # 1: float32 probs; 2: float16 probs (same columns otherwise)
PROBS_DTYPE = np.float16  # storage type of the probability vectors (see the docstring)
FILES = ("predictions.parquet", "meta.json", "metrics.json")
STALE_TMP_SECONDS = 6 * 3600


def run_id(
    *,
    checkpoint_sha256: str,
    dataset_fingerprint: str,
    preprocessing: dict[str, Any],
    class_names: tuple[str, ...] | list[str],
) -> str:
    """Return the content hash that names a run (16 hex characters)."""
    key = json.dumps(
        {
            "checkpoint": checkpoint_sha256,
            "dataset": dataset_fingerprint,
            "preprocessing": preprocessing,
            "class_names": list(class_names),
            "format": FORMAT_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def predictions_table(
    *,
    split: list[str],
    path: list[str],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    confidence: np.ndarray,
    loss: np.ndarray,
    probs: np.ndarray,
) -> pa.Table:
    """Return the predictions as an Arrow table; ``probs`` (n, n_classes) is stored float16."""
    n, k = probs.shape if probs.ndim == 2 else (0, 0)
    flat = pa.array(np.ascontiguousarray(probs, dtype=PROBS_DTYPE).reshape(-1))
    return pa.table(
        {
            "split": pa.array(split, pa.string()).dictionary_encode(),
            "path": pa.array(path, pa.string()),
            "y_true": pa.array(np.asarray(y_true, np.int32)),
            "y_pred": pa.array(np.asarray(y_pred, np.int32)),
            "confidence": pa.array(np.asarray(confidence, np.float32)),
            "loss": pa.array(np.asarray(loss, np.float32)),
            "probs": pa.FixedSizeListArray.from_arrays(flat, max(k, 1))
            if n
            else pa.array([], pa.list_(pa.float16(), max(k, 1))),
        }
    )


@dataclass(frozen=True)
class Run:
    """One stored run: predictions of one checkpoint on one dataset under one preprocessing."""

    run_id: str
    path: Path  # the run's folder
    meta: MetaJson  # meta.json
    metrics: MetricsJson  # metrics.json (the contract in DESIGN.md)
    _cache: dict[Hashable, Any] = field(default_factory=dict, repr=False, compare=False)
    # A subset (Run.subset): the full run it was cut from and its row positions there. The
    # subset's path is the parent's folder, so files beside it stay reachable; derived caches
    # (phash, embeddings) are read from the parent and cut with ``rows``, never rewritten.
    parent: Run | None = field(default=None, repr=False, compare=False)
    rows: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def class_names(self) -> list[str]:
        """Return the class names, in label order."""
        return list(self.metrics["classes"])

    @property
    def splits(self) -> list[str]:
        """Return the splits present, in train/val/test order."""
        return list(self.metrics["splits"])

    def predictions(self) -> pd.DataFrame:
        """Return one row per image (split, path, y_true, y_pred, confidence, loss), no probs."""
        if "df" not in self._cache:
            table = pq.read_table(self.path / "predictions.parquet", columns=list(_COLUMNS))
            df = table.to_pandas()
            df["split"] = df["split"].astype(str)
            self._cache["df"] = df
        return self._cache["df"]

    def probs(self) -> np.ndarray:
        """Return the (n, n_classes) float32 probabilities, rows as in ``predictions()``
        (stored as float16 from format 2 on: exact to ~3 significant digits)."""
        if "probs" not in self._cache:
            col = pq.read_table(self.path / "predictions.parquet", columns=["probs"])["probs"]
            flat = col.combine_chunks().flatten().to_numpy(zero_copy_only=False)
            # One column per class; an explicit width so a run with no predictions gives (0, k).
            width = len(self.class_names)
            self._cache["probs"] = flat.reshape(len(col), width).astype(np.float32, copy=False)
        return self._cache["probs"]

    def remember(self, key: Hashable, value: Any) -> None:
        """Keep ``value`` under ``key`` on this Run object, not on disk: what another module
        derived from the run's files (a table, why its metadata file was refused), for as long
        as the object lives. Read back with ``remembered``."""
        self._cache[("remembered", key)] = value

    def remembered(self, key: Hashable, default: Any = None) -> Any:
        """Return what ``remember`` kept under ``key``, else ``default``."""
        return self._cache.get(("remembered", key), default)

    def subset(self, mask: Any, label: str, *, key: str | None = None) -> Run:
        """Return this run restricted to the rows in ``mask``, as if evaluated on them alone.

        mask: (n,) bool over ``predictions()`` rows. label: the slice in words (meta "slice").
        key: names the subset in its run id, ``<run id>~<key>`` (default: a hash of the rows).
        Predictions and probs are the kept rows (index 0..m-1); metrics.json is recomputed with
        core.analysis.metrics.split_report, as the engine does, for each split that keeps a
        row (skipped files are not images of the slice: none listed; classes with no image
        in the slice are "absent", as the engine marks classes the dataset has no folder for).
        meta keeps the parent's fields and adds "slice": {label, n, of, n_by_split,
        of_by_split, parent}.
        """
        from core.analysis import metrics as metrics_mod  # pure numpy; imported when used

        base = self.parent if self.parent is not None else self
        full = self.predictions()
        keep = np.asarray(mask)
        if keep.dtype != bool or keep.shape != (len(full),):
            raise ValueError(
                f"mask must be a bool array with one entry per prediction ({len(full)}), got "
                f"dtype {keep.dtype} and shape {keep.shape}. "
                "Build it with core.analysis.where.mask."
            )
        rows = np.flatnonzero(keep)
        df = full.iloc[rows].reset_index(drop=True)
        probs = self.probs()[rows]
        names = self.class_names
        # As the engine marks classes without a folder in the dataset: a class with no image
        # in the slice (any split) is absent, left out of macro averages.
        present = set(np.unique(df["y_true"].to_numpy()).tolist())
        gone = {names.index(a) for a in self.meta.get("absent_classes", []) if a in names}
        absent = sorted(gone | {i for i in range(len(names)) if i not in present})
        split_of = df["split"].to_numpy()
        report: dict[str, Any] = {}
        for split in self.splits:
            in_split = split_of == split
            if in_split.any():
                report[split] = metrics_mod.split_report(
                    df["y_true"].to_numpy()[in_split],
                    df["y_pred"].to_numpy()[in_split],
                    class_names=names,
                    probs=probs[in_split],
                    absent=absent,
                )
        base_split = base.predictions()["split"].to_numpy()
        of_by_split = {s: int((base_split == s).sum()) for s in base.splits}
        parent_rows = self.rows[rows] if self.rows is not None else rows
        if key is None:
            key = hashlib.sha256(np.asarray(parent_rows, np.int64).tobytes()).hexdigest()[:12]
        meta: MetaJson = {
            **self.meta,
            "n_predictions": len(df),
            "skipped": [],
            "absent_classes": [names[i] for i in absent],
            "slice": {
                "label": label,
                "n": len(df),
                "of": len(base.predictions()),
                "n_by_split": {s: int(r["n"]) for s, r in report.items()},
                "of_by_split": of_by_split,
                "parent": base.run_id,
            },
        }
        sub = Run(
            f"{base.run_id}~{key}",
            self.path,
            meta,
            {**self.metrics, "splits": report},
            parent=base,
            rows=np.asarray(parent_rows, np.int64),
        )
        sub._cache["df"], sub._cache["probs"] = df, probs
        return sub


_COLUMNS = ("split", "path", "y_true", "y_pred", "confidence", "loss")
# A derived run's id is ``<run id>.<what>`` (core.images.robustness): the dot tells listings
# to skip it by name, without reading tens of them (a 1,000-class metrics.json takes 0.7 s).
DERIVED_SEP = "."


def is_derived(rid: str) -> bool:
    """Return True for the id of a derived run (kept out of ``RunStore.list``)."""
    return DERIVED_SEP in rid


class RunStore:
    """A directory of runs."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else paths.default_runs_dir()

    def path_for(self, rid: str) -> Path:
        """Return where run ``rid`` lives (whether or not it exists)."""
        return self.root / rid

    @contextlib.contextmanager
    def lock(self, rid: str, *, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the exclusive lock of run ``rid`` (``<root>/.locks/<rid>.lock``) while inside.

        An ``fcntl.flock`` on a file of its own, so threads (each opens the file anew) and
        processes on this machine exclude each other alike, and the kernel releases it when
        the holder dies. ``on_wait`` is called once when another holder makes us wait.
        """
        folder = self.root / ".locks"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{rid}.lock", "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def get(self, rid: str) -> Run | None:
        """Return run ``rid`` if it is complete and intact; a damaged one is removed."""
        path = self.path_for(rid)
        if not path.exists():
            return None
        run = _read(path)
        if run is None:
            self._discard(path)
        return run

    def list(self, *, derived: bool = False) -> list[Run]:
        """Return every intact run, newest first (damaged ones are skipped, not removed).

        Derived runs (``is_derived``: a run evaluated on corrupted copies, see
        core.images.robustness) are left out unless ``derived``; ``get`` reads them by id.
        """
        if not self.root.is_dir():
            return []
        runs = [
            r
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (derived or not is_derived(p.name))
            for r in [_read(p)]
            if r is not None
        ]
        return sorted(runs, key=lambda r: r.meta.get("created", ""), reverse=True)

    def write(
        self, rid: str, table: pa.Table, meta: dict[str, Any], metrics: dict[str, Any]
    ) -> Run:
        """Write a run atomically and return it; if another writer won the race, return theirs."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._clean_stale()
        tmp = self.root / f".tmp-{rid}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            # No dictionary for the probabilities: it never pays off for floats and halves
            # read and write speed at 50,000 x 1,000.
            pq.write_table(table, tmp / "predictions.parquet", use_dictionary=["split"])
            meta = {
                **meta,
                "run_id": rid,
                "format_version": FORMAT_VERSION,
                "n_predictions": table.num_rows,
                "predictions_bytes": (tmp / "predictions.parquet").stat().st_size,
            }
            _write_json(tmp / "meta.json", meta)
            _write_json(tmp / "metrics.json", metrics)
            _fsync_dir(tmp)
            final = self.path_for(rid)
            if final.exists() and _read(final) is None:
                self._discard(final)
            try:
                os.rename(tmp, final)
            except OSError:  # a complete run appeared meanwhile: it is identical by id
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        run = _read(final)
        assert run is not None, f"run {rid} was written but does not read back"
        return run

    def _discard(self, path: Path) -> None:
        trash = self.root / f".trash-{path.name}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, trash)
        except OSError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def _clean_stale(self) -> None:
        """Remove temporary folders left by writers that died (killed midway)."""
        now = time.time()
        for p in self.root.glob(".tmp-*"):
            pid = p.name.split("-")[2] if p.name.count("-") >= 3 else ""
            dead = pid.isdigit() and not _alive(int(pid))
            if dead or now - p.stat().st_mtime > STALE_TMP_SECONDS:
                shutil.rmtree(p, ignore_errors=True)
        for p in self.root.glob(".trash-*"):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    for name in FILES:
        with open(path / name, "rb") as f:
            os.fsync(f.fileno())


# Runs already read, by folder: (the files' sizes and mtimes, the Run). A 1,000-class run's
# metrics.json holds two million-cell matrices (0.7 s to parse) and the dashboard lists the
# store every few seconds; runs are immutable, so an unchanged stat means an unchanged run.
_READ_CACHE: dict[Path, tuple[tuple[int, ...], Run]] = {}


def _stat_key(path: Path) -> tuple[int, ...] | None:
    try:
        stats = [(path / name).stat() for name in FILES]
    except OSError:
        return None
    return tuple(v for st in stats for v in (st.st_size, st.st_mtime_ns, st.st_ino))


def _read(path: Path) -> Run | None:
    """Return the run in ``path`` if every file is present and consistent, else None."""
    key = _stat_key(path)
    hit = _READ_CACHE.get(path)
    if key is not None and hit is not None and hit[0] == key:
        return hit[1]
    _READ_CACHE.pop(path, None)
    run = _read_files(path)
    if run is not None and key is not None:
        if len(_READ_CACHE) > 256:  # a bound, not an LRU: stores hold tens of runs
            _READ_CACHE.clear()
        _READ_CACHE[path] = (key, run)
    return run


def _read_files(path: Path) -> Run | None:
    """Return the run in ``path`` read from its files if they are consistent, else None."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        metrics = json.loads((path / "metrics.json").read_text())
        rows = pq.read_metadata(path / "predictions.parquet").num_rows
    except (OSError, ValueError, pa.ArrowException):
        return None
    if rows != meta.get("n_predictions") or meta.get("format_version") not in READ_VERSIONS:
        return None
    if (path / "predictions.parquet").stat().st_size != meta.get("predictions_bytes", -1):
        return None
    return Run(path.name, path, meta, metrics)


def write_table_atomic(final: Path, table: pd.DataFrame) -> None:
    """Write ``table`` as parquet at ``final`` atomically (temp file beside it + os.replace),
    for the derived caches in a run folder; a read-only store is no error (nothing written)."""
    tmp = final.with_name(f".{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), tmp)
        os.replace(tmp, final)
    except OSError:
        tmp.unlink(missing_ok=True)
