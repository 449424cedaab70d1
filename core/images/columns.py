"""The slice table: one row per prediction row with every column a slice can be cut on.

``slice_columns(run)`` returns, in ``run.predictions()`` order and index: split, true class,
predicted class, correct, confidence, subfolder (the folders between the class folder and the
file, "" when none), then the run's metadata columns (``metadata.parquet``, attached by
``core.engine.metadata``), then the image properties (``properties.parquet``, measured by
``core.images.properties``). ``column_kinds`` says how each column is sliced.

The table is cached in memory on the run (runs are immutable; derived caches are written once),
so pages and the slice filter can call it on every rerun.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from core.engine import metadata
from core.images import gallery, properties
from core.runs import Run

BASE_COLUMNS = ("split", "true class", "predicted class", "correct", "confidence", "subfolder")
Kind = Literal["categorical", "numeric", "date", "bool"]
# More distinct text values than this and a column is not sliced by value (ids, file names):
# the message says why (see ``refused_columns``).
MAX_CATEGORIES = 1000


def root_paths(run: Run) -> np.ndarray:
    """Return each prediction row's image path relative to the dataset root, '/'-separated."""
    predictions = run.predictions()
    root = Path(run.meta["dataset"]["root"])
    out = np.empty(len(predictions), dtype=object)
    split_arr = predictions["split"].to_numpy()
    path_arr = predictions["path"].to_numpy()
    for split in pd.unique(split_arr):
        rows = split_arr == split
        folder = gallery.split_dir(run, str(split))
        try:
            prefix = folder.relative_to(root).as_posix()
        except ValueError:  # a split folder outside the root: keyed by its own name
            prefix = folder.name
        prefix = "" if prefix == "." else prefix + "/"
        out[rows] = [prefix + str(p).replace("\\", "/") for p in path_arr[rows]]
    return out


def subfolders(paths: Any) -> np.ndarray:
    """Return the folders between the class folder and the file ("" when none) for split-relative
    paths such as ``cat/indoor/x.jpg`` (-> ``indoor``)."""
    out = []
    for p in paths:
        parts = str(p).replace("\\", "/").split("/")
        out.append("/".join(parts[1:-1]))
    return np.asarray(out, dtype=object)


def base_columns(run: Run) -> pd.DataFrame:
    """Return the ``BASE_COLUMNS`` of the slice table (no metadata, no properties)."""
    predictions = run.predictions()
    names = np.asarray(run.class_names, dtype=object)
    y_true = predictions["y_true"].to_numpy()
    y_pred = predictions["y_pred"].to_numpy()
    return pd.DataFrame(
        {
            "split": predictions["split"].astype(str).to_numpy(),
            "true class": names[y_true],
            "predicted class": names[y_pred],
            "correct": y_true == y_pred,
            "confidence": predictions["confidence"].to_numpy(dtype=float),
            "subfolder": subfolders(predictions["path"]),
        },
        index=predictions.index,
    )


def slice_columns(
    run: Run, *, with_properties: bool = True, progress: properties.Progress | None = None
) -> pd.DataFrame:
    """Return the slice table: ``BASE_COLUMNS``, metadata columns, image properties.

    with_properties: measure (first time) and add the image properties; False leaves them
    out (no pixels read). progress: (done, total) while measuring properties.
    """
    key = ("slice_columns", with_properties, _stamp(run, metadata.CACHE_FILE))
    found = run.remembered(key)
    if found is not None:
        return found
    parts = [base_columns(run)]
    meta = run_metadata(run)
    if meta is not None:
        parts.append(_aligned_metadata(run, meta, parts[0].index))
    if with_properties:
        props = properties.run_properties(run, progress=progress)
        parts.append(props[list(properties.COLUMNS)].set_axis(parts[0].index))
    df = pd.concat(parts, axis=1)
    run.remember(key, df)
    return df


def _stamp(run: Run, name: str) -> int:
    try:
        return (Path(run.path) / name).stat().st_mtime_ns
    except OSError:
        return 0


def run_metadata(run: Run) -> pd.DataFrame | None:
    """Return the run's metadata table (``metadata.KEY`` + columns), attaching the dataset
    root's metadata file the first time; None when there is none or it was refused (the reason
    is in ``metadata.problem(run)``)."""
    found = metadata.stored(run)
    if found is not None:
        return found[0]
    source = metadata.find(run.meta["dataset"]["root"])
    if source is None:
        return None
    try:
        metadata.attach(run, source, root_paths(run))
    except metadata.MetadataError as exc:
        metadata.remember_problem(run, str(exc))
        return None
    except OSError:  # a read-only store: read the file each time instead
        return metadata.read(source)[0]
    found = metadata.stored(run)
    return None if found is None else found[0]


def _aligned_metadata(run: Run, meta: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """Return the metadata columns row for row with the predictions (missing rows: NA)."""
    keys = pd.Index(root_paths(run))
    table = meta.set_index(metadata.KEY)
    clash = [c for c in table.columns if c in BASE_COLUMNS or c in properties.COLUMNS]
    table = table.rename(columns={c: f"{c} (metadata)" for c in clash})
    return table.reindex(keys).set_axis(index)


def column_kinds(df: pd.DataFrame) -> dict[str, Kind]:
    """Return how each sliceable column is cut: categorical, numeric, date or bool.

    Text columns with more than ``MAX_CATEGORIES`` distinct values are left out (see
    ``refused_columns``); so are columns with no value at all.
    """
    kinds: dict[str, Kind] = {}
    for name in df.columns:
        kind = _kind(df[name])
        if kind is not None:
            kinds[str(name)] = kind
    return kinds


def refused_columns(df: pd.DataFrame) -> dict[str, str]:
    """Return {column: why it cannot be sliced} for the columns ``column_kinds`` leaves out."""
    out = {}
    for name in df.columns:
        col = df[name]
        if _kind(col) is not None:
            continue
        if col.notna().sum() == 0:
            out[str(name)] = "it has no values"
        else:
            n = col.nunique(dropna=True)
            out[str(name)] = (
                f"it has {n:,} distinct values (more than {MAX_CATEGORIES:,}), like an id or a "
                "file name: slice on a coarser column (e.g. group the values into a new "
                "metadata column)"
            )
    return out


def _kind(col: pd.Series) -> Kind | None:
    if col.notna().sum() == 0:
        return None
    if pd.api.types.is_bool_dtype(col):
        return "bool"
    if pd.api.types.is_datetime64_any_dtype(col):
        return "date"
    if pd.api.types.is_numeric_dtype(col):
        return "numeric"
    if col.nunique(dropna=True) > MAX_CATEGORIES:
        return None
    return "categorical"
