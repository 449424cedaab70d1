"""Per-image metadata (site, scanner, date, ...) read from a CSV or Parquet file and attached
to a run as ``metadata.parquet`` + ``metadata.json`` in its folder.

The file is keyed by a ``path`` column: each image's path relative to the dataset root
(``test/cat/x.png``). It is found at the dataset root (``metadata.csv`` or
``metadata.parquet``) or given explicitly (``--metadata FILE``, the New run form). Metadata is
an attachment, not an input of the run: it does not change the run id (the predictions do not
depend on it), and attaching another file replaces it.

Typing: every non-key column becomes numeric, date (ISO 8601), bool (true/false) or text.
Nothing is dropped silently: metadata rows with no image and images with no metadata row are
counted and listed in ``metadata.json`` (``warnings``); a column mixing numbers and text is
kept as text with the odd cells named; duplicate keys and a missing key column are refused
with a message saying how to fix the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core import paths
from core.errors import ClassLensError
from core.runs import Run

KEY = "path"
FILE_NAMES = ("metadata.csv", "metadata.parquet")
CACHE_FILE = "metadata.parquet"
INFO_FILE = "metadata.json"
MAX_LISTED = 10  # examples named in a message
_TRUE = {"true", "yes"}
_FALSE = {"false", "no"}


class MetadataError(ClassLensError):
    """A metadata file that cannot be used as it is; the message says how to fix it."""


def find(dataset_root: str | Path) -> Path | None:
    """Return the metadata file at the dataset root (``FILE_NAMES``, first found), else None."""
    for name in FILE_NAMES:
        candidate = Path(dataset_root) / name
        if candidate.is_file():
            return candidate
    return None


def normalise_key(value: Any) -> str:
    """Return a path key as stored: '/'-separated, no leading './' or surrounding spaces."""
    key = str(value).strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key


def read(file: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Return (table, warnings): the metadata file typed, keyed by ``KEY`` (first column).

    Raises MetadataError for an unreadable file, no ``path`` column, empty or duplicated
    column names, and duplicate keys.
    """
    file = Path(file)
    try:
        if file.suffix.lower() == ".parquet":
            raw = pd.read_parquet(file)
        else:
            raw = pd.read_csv(file, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError as exc:
        raise MetadataError(f"metadata file {file} does not exist: check the path.") from exc
    except (OSError, ValueError, pa.ArrowException, pd.errors.ParserError) as exc:
        raise MetadataError(
            f"metadata file {file.name} could not be read ({exc.__class__.__name__}: "
            f"{str(exc)[:200]}). Save it as UTF-8 CSV with a header row, or as Parquet."
        ) from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    _check_columns(file, list(raw.columns))
    key_col = next(c for c in raw.columns if c.lower() == KEY)
    keys = raw[key_col].map(normalise_key)
    if (keys == "").any():
        rows = (keys == "").to_numpy().nonzero()[0][:MAX_LISTED] + 2
        raise MetadataError(
            f"metadata file {file.name}: {int((keys == '').sum())} rows have an empty path "
            f"(lines {', '.join(map(str, rows))}). Give each row the image path relative to "
            "the dataset root, e.g. test/cat/001.png."
        )
    dup = keys[keys.duplicated(keep=False)]
    if len(dup):
        names = ", ".join(repr(k) for k in pd.unique(dup)[:MAX_LISTED])
        raise MetadataError(
            f"metadata file {file.name}: {dup.nunique()} paths appear more than once "
            f"({names}). Keep one row per image."
        )
    table = pd.DataFrame({KEY: keys.to_numpy()})
    warnings: list[str] = []
    for col in raw.columns:
        if col == key_col:
            continue
        table[col], note = type_column(raw[col], name=col)
        if note:
            warnings.append(note)
    return table, warnings


def store_upload(name: str, data: bytes) -> Path:
    """Return where an uploaded metadata file is kept (the cache, by content), after checking
    its extension and that it reads as a metadata table (``read``: MetadataError if not)."""
    safe_name = Path(name).name or "metadata.csv"
    suffix = Path(safe_name).suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise MetadataError(
            f"{safe_name} is not a metadata file: upload a .csv or .parquet table with a "
            f"{KEY!r} column (each image's path relative to the dataset root)."
        )
    digest = hashlib.sha256(data).hexdigest()[:16]
    target = paths.cache_dir() / "metadata" / digest / f"metadata{suffix}"
    if target.exists():  # stored (and read) before
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{uuid.uuid4().hex}{suffix}")  # one per writer
    tmp.write_bytes(data)
    try:
        read(tmp)
    except MetadataError as exc:
        tmp.unlink(missing_ok=True)
        raise MetadataError(str(exc).replace(tmp.name, safe_name)) from exc
    tmp.replace(target)
    return target


def _check_columns(file: Path, columns: list[str]) -> None:
    if not any(c.lower() == KEY for c in columns):
        shown = ", ".join(repr(c) for c in columns[:MAX_LISTED])
        raise MetadataError(
            f"metadata file {file.name} has no {KEY!r} column (found: {shown}). Add a column "
            f"named {KEY} with each image's path relative to the dataset root."
        )
    if any(c == "" for c in columns):
        raise MetadataError(f"metadata file {file.name} has a column with no name: name it.")
    seen = pd.Series([c.lower() for c in columns])
    if seen.duplicated().any():
        twice = ", ".join(repr(c) for c in pd.unique(seen[seen.duplicated()]))
        raise MetadataError(
            f"metadata file {file.name} has columns named twice ({twice}): rename one."
        )


def type_column(col: pd.Series, *, name: str) -> tuple[pd.Series, str]:
    """Return (typed column, note): numeric, date, bool or text; the note names odd cells."""
    if not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)):
        return col.reset_index(drop=True), ""  # Parquet: already typed
    text = col.astype(str).str.strip()
    empty = text.eq("") | text.str.lower().isin({"na", "nan", "null", "none"})
    filled = text[~empty]
    out = text.where(~empty, None).astype(object)
    if filled.empty:
        return out.reset_index(drop=True), ""
    lower = filled.str.lower()
    if lower.isin(_TRUE | _FALSE).all():
        values = lower.isin(_TRUE).reindex(text.index).astype("boolean")
        return values.where(~empty, pd.NA).reset_index(drop=True), ""
    numbers = pd.to_numeric(filled, errors="coerce")
    if numbers.notna().all():
        return pd.to_numeric(text.where(~empty), errors="coerce").reset_index(drop=True), ""
    dates = pd.to_datetime(filled, errors="coerce", format="ISO8601")
    if dates.notna().all() and filled.str.contains(r"\d{4}-\d{2}", regex=True).all():
        full = pd.to_datetime(text.where(~empty), errors="coerce", format="ISO8601")
        return full.reset_index(drop=True), ""
    note = ""
    share = numbers.notna().mean()
    if share >= 0.5:  # mostly numbers: likely typos; keep as text and say where
        odd = filled[numbers.isna()]
        cells = ", ".join(f"line {i + 2}: {v!r}" for i, v in odd.head(MAX_LISTED).items())
        note = (
            f"column {name!r} mixes numbers and text ({len(odd)} cells are not numbers: "
            f"{cells}); it is kept as text. Fix those cells to slice it by value ranges."
        )
    return out.reset_index(drop=True), note


def match(table: pd.DataFrame, image_paths: Any) -> dict[str, Any]:
    """Return how the metadata keys meet the run's images (root-relative paths).

    {"images": n, "matched": m, "images_without_metadata": count, "rows_without_image":
    count, plus up to ``MAX_LISTED`` examples of each}.
    """
    images = pd.Index(pd.unique(pd.Series(list(image_paths), dtype=object)))
    keys = pd.Index(table[KEY])
    missing = images.difference(keys, sort=False)
    extra = keys.difference(images, sort=False)
    return {
        "images": int(len(images)),
        "matched": int(len(images) - len(missing)),
        "images_without_metadata": int(len(missing)),
        "images_without_metadata_examples": [str(p) for p in missing[:MAX_LISTED]],
        "rows_without_image": int(len(extra)),
        "rows_without_image_examples": [str(p) for p in extra[:MAX_LISTED]],
    }


def match_warnings(report: dict[str, Any], file_name: str) -> list[str]:
    """Return the plain sentences for unmatched paths in a ``match`` report."""
    out = []
    if report["images_without_metadata"]:
        out.append(
            f"{report['images_without_metadata']:,} of {report['images']:,} images have no row "
            f"in {file_name} (e.g. {', '.join(report['images_without_metadata_examples'][:3])}"
            "); their metadata columns are empty."
        )
    if report["rows_without_image"]:
        out.append(
            f"{report['rows_without_image']:,} rows of {file_name} match no evaluated image "
            f"(e.g. {', '.join(report['rows_without_image_examples'][:3])}); they are kept in "
            "the run's metadata.parquet. Paths must be relative to the dataset root, e.g. "
            "test/cat/001.png."
        )
    if report["images"] and not report["matched"]:
        out.append(
            f"no image matched any row of {file_name}: check that the path column is relative "
            "to the dataset root (the folder holding train/ and test/)."
        )
    return out


def attach(run: Run, file: str | Path, image_paths: Any) -> dict[str, Any]:
    """Read ``file``, write it to the run folder (``metadata.parquet``, ``metadata.json``) and
    return the info written: source, sha256, columns, match report and warnings.

    image_paths: the run's images relative to the dataset root (``columns.root_paths``).
    """
    file = Path(file)
    table, warnings = read(file)
    report = match(table, image_paths)
    info = {
        "source": str(file.resolve()),
        "sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
        "columns": [c for c in table.columns if c != KEY],
        "match": report,
        "warnings": warnings + match_warnings(report, file.name),
    }
    folder = Path(run.path)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp_table = folder / f".{CACHE_FILE}-{tag}"
    tmp_info = folder / f".{INFO_FILE}-{tag}"
    try:
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), tmp_table)
        tmp_info.write_text(json.dumps(info, indent=1, default=str))
        os.replace(tmp_table, folder / CACHE_FILE)
        os.replace(tmp_info, folder / INFO_FILE)
    finally:
        tmp_table.unlink(missing_ok=True)
        tmp_info.unlink(missing_ok=True)
    return info


def stored(run: Run) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """Return (table, info) attached to the run, or None when it has none."""
    folder = Path(run.path)
    try:
        table = pq.read_table(folder / CACHE_FILE).to_pandas()
        info = json.loads((folder / INFO_FILE).read_text())
    except (OSError, ValueError, pa.ArrowException):
        return None
    return table, info


def problem(run: Run) -> str | None:
    """Return why the dataset's metadata file was refused for this run, else None."""
    return run.remembered("metadata_problem")


def remember_problem(run: Run, message: str) -> None:
    """Keep why the dataset's metadata file was refused, for ``problem``."""
    run.remember("metadata_problem", message)


def info(run: Run) -> dict[str, Any] | None:
    """Return the run's ``metadata.json`` (source, columns, match report, warnings), or None."""
    found = stored(run)
    return None if found is None else found[1]
