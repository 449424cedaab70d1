"""The slice filter: which images a view computes on, as AND of conditions on a run's columns.

A :class:`Where` is the AND of :class:`Condition` s over the columns of
``core.images.columns.slice_columns(run)`` (one row per prediction row). It travels in the URL
as ``?where=`` (:func:`to_query` / :func:`parse`, a plain text format, never evaluated), selects
rows with :func:`mask` and is said in words by :func:`describe`.

URL format: conditions joined by ``;``, each ``column~op~value``; ``in`` takes values joined
by ``,`` and ``between`` takes ``low,high``; ``%``, ``;``, ``~`` and ``,`` inside a column name or
a value are written as ``%25``, ``%3B``, ``%7E`` and ``%2C``. E.g.
``true class~in~3,8;confidence~between~0.2,0.6``.

A row whose value is missing (empty metadata) matches no condition, ``is not`` included.

``selection~selected~<id>`` keeps the images of a map selection (``core.selections``: the
Embedding map stores the selected images once in the run folder under ``<n>-<12 hex>``); its
rows are looked up by the caller and passed to :func:`mask` as ``selections``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CATEGORICAL",
    "NUMERIC",
    "SELECTED",
    "SELECTION",
    "Condition",
    "MissingColumns",
    "Where",
    "describe",
    "mask",
]

CATEGORICAL = ("is", "is not", "in")
NUMERIC = ("between", "<", ">=")
SELECTED = "selected"  # the images of a stored map selection (its id)
SELECTION = "selection"  # the one column name a "selected" condition takes
_SELECTION_ID = re.compile(r"^[1-9]\d{0,8}-[0-9a-f]{12}$")  # core.selections.selection_id
_TOKEN = {
    "is": "is",
    "is not": "not",
    "in": "in",
    "between": "between",
    "<": "lt",
    ">=": "ge",
    SELECTED: "sel",
}
_OP_OF = {v: k for k, v in _TOKEN.items()}
_ESCAPES = (("%", "%25"), (";", "%3B"), ("~", "%7E"), (",", "%2C"))
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
MAX_TEXT = 4000  # characters of ?where= read at all: a longer text is junk, not a filter
MAX_CONDITIONS = 20
MAX_VALUES = 1000  # values of one "in"
FIX = "Remove ?where= from the address, or set the filter again in the sidebar."


class MissingColumns(ValueError):
    """The filter names columns the run does not have (e.g. a link made on another run)."""

    def __init__(self, missing: list[str], available: list[str]) -> None:
        self.missing = missing
        shown = ", ".join(available[:12]) + (", ..." if len(available) > 12 else "")
        super().__init__(
            f"This run has no column {', '.join(repr(m) for m in missing)} (it has: {shown}). "
            "The filter probably comes from a link to another run; pick a column of this run."
        )


def _number(text: str) -> float | pd.Timestamp | None:
    """Return ``text`` as a finite float or a date (YYYY-MM-DD[ HH:MM[:SS]]), else None."""
    try:
        value = float(text)
    except ValueError:
        if _DATE.match(text.strip()):
            try:
                return pd.Timestamp(text.strip())
            except ValueError:
                return None
        return None
    return value if math.isfinite(value) else None


def _bound(value: Any, what: str) -> float | pd.Timestamp:
    """Return a numeric/date bound, or raise ValueError saying what was found."""
    if isinstance(value, pd.Timestamp):
        return value
    number = isinstance(value, (int, float, np.integer, np.floating))
    if number and not isinstance(value, bool) and math.isfinite(float(value)):
        return float(value)
    if isinstance(value, str):
        parsed = _number(value)
        if parsed is not None:
            return parsed
    raise ValueError(
        f"{what} needs a number or a date (YYYY-MM-DD), got {value!r}. "
        "Type a number such as 0.21 or a date such as 2024-01-31."
    )


@dataclass(frozen=True)
class Condition:
    """One condition on one column, e.g. ``Condition("scanner", "is", "B")``."""

    column: str  # a column of slice_columns(run); SELECTION for op "selected"
    op: str  # one of CATEGORICAL (is, is not, in), NUMERIC (between, <, >=) or "selected"
    value: Any  # str for is/is not; tuple of str for in; float/Timestamp for < >=; (lo, hi);
    # a selection id (core.selections) for "selected"

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column.strip():
            raise ValueError("A condition needs a column name; pick one of the run's columns.")
        if self.op not in _TOKEN:
            raise ValueError(f"Unknown operator {self.op!r}; use one of {', '.join(_TOKEN)}.")
        what = f"'{self.column} {self.op}'"
        if self.op == SELECTED:
            if self.column != SELECTION or not _SELECTION_ID.match(str(self.value)):
                raise ValueError(
                    f"A map selection is written {SELECTION}~sel~<n>-<12 hex digits>, got "
                    f"{self.column}~sel~{str(self.value)[:40]}."
                )
            object.__setattr__(self, "value", str(self.value))
        elif self.op in ("is", "is not"):
            if isinstance(self.value, (list, tuple, set)):
                raise ValueError(f"{what} takes one value; use 'in' for several.")
            object.__setattr__(self, "value", _text(self.value))
        elif self.op == "in":
            values = [self.value] if isinstance(self.value, str) else list(self.value)
            if not values or len(values) > MAX_VALUES:
                raise ValueError(f"{what} needs 1 to {MAX_VALUES} values, got {len(values)}.")
            object.__setattr__(self, "value", tuple(dict.fromkeys(_text(v) for v in values)))
        elif self.op == "between":
            if not isinstance(self.value, (list, tuple)) or len(self.value) != 2:
                raise ValueError(f"{what} needs two values, low and high, got {self.value!r}.")
            lo, hi = (_bound(v, what) for v in self.value)
            if type(lo) is not type(hi):
                raise ValueError(f"{what} needs two numbers or two dates, got {lo!r} and {hi!r}.")
            if lo > hi:
                raise ValueError(f"{what}: the low end {lo} is above the high end {hi}; swap them.")
            object.__setattr__(self, "value", (lo, hi))
        else:
            object.__setattr__(self, "value", _bound(self.value, what))


def _text(value: Any) -> str:
    """Return a categorical value as the text it is compared by (1.0 -> "1", True -> "True")."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Where:
    """The AND of its conditions; no condition means every image."""

    conditions: tuple[Condition, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.conditions)

    def columns(self) -> list[str]:
        """Return the columns the filter reads, in order, once each (a map selection reads
        none: see :meth:`selections`)."""
        return list(dict.fromkeys(c.column for c in self.conditions if c.op != SELECTED))

    def selections(self) -> list[str]:
        """Return the ids of the map selections the filter keeps, in order, once each."""
        return list(dict.fromkeys(c.value for c in self.conditions if c.op == SELECTED))


# --- the URL text -------------------------------------------------------------------------------


def _escape(text: str) -> str:
    for char, code in _ESCAPES:
        text = text.replace(char, code)
    return text


def _unescape(text: str) -> str:
    for char, code in reversed(_ESCAPES):
        text = text.replace(code, char).replace(code.lower(), char)
    return text


def _fmt(value: Any) -> str:
    if isinstance(value, pd.Timestamp):
        return value.isoformat() if value != value.normalize() else value.strftime("%Y-%m-%d")
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    return str(value)


def to_query(where: Where) -> str:
    """Return the ``?where=`` text of ``where`` (empty for no condition); :func:`parse` reads it."""
    parts = []
    for c in where.conditions:
        values = c.value if isinstance(c.value, tuple) else (c.value,)
        text = ",".join(_escape(_fmt(v)) for v in values)
        parts.append(f"{_escape(c.column)}~{_TOKEN[c.op]}~{text}")
    return ";".join(parts)


def parse(text: str) -> Where:
    """Return the :class:`Where` that ``text`` (from :func:`to_query`) describes.

    Raises ValueError naming the part that could not be read and how to fix it.
    """
    if not isinstance(text, str):
        raise ValueError(f"The filter must be text, got {type(text).__name__}. {FIX}")
    text = text.strip()
    if not text:
        return Where()
    if len(text) > MAX_TEXT:
        raise ValueError(
            f"The filter is {len(text):,} characters long (at most {MAX_TEXT:,}). {FIX}"
        )
    parts = [p for p in text.split(";") if p.strip()]
    if len(parts) > MAX_CONDITIONS:
        raise ValueError(
            f"The filter has {len(parts)} conditions (at most {MAX_CONDITIONS}). {FIX}"
        )
    conditions = []
    for part in parts:
        pieces = part.split("~")
        if len(pieces) != 3:
            raise ValueError(
                f"Could not read the filter condition {part[:80]!r}: expected "
                f"column~op~value. {FIX}"
            )
        column, token, raw = pieces
        op = _OP_OF.get(token.strip().lower())
        if op is None:
            raise ValueError(
                f"Unknown operator {token[:20]!r} in the filter; the link knows "
                f"{', '.join(_OP_OF)}. {FIX}"
            )
        values = [_unescape(v) for v in raw.split(",")]
        value: Any = values if op in ("in", "between") else _unescape(raw)
        try:
            conditions.append(Condition(_unescape(column).strip(), op, value))
        except ValueError as exc:
            raise ValueError(f"Could not read the filter: {exc} {FIX}") from None
    return Where(tuple(conditions))


# --- rows and words -----------------------------------------------------------------------------


def _categorical(series: pd.Series, values: tuple[str, ...]) -> np.ndarray:
    """Return where ``series`` equals one of ``values`` (compared as the column's type)."""
    present = series.notna().to_numpy()
    if pd.api.types.is_bool_dtype(series):
        wanted = {v.strip().lower() for v in values}
        truth = {
            True: bool({"true", "1", "yes"} & wanted),
            False: bool({"false", "0", "no"} & wanted),
        }
        return series.map(truth).fillna(False).to_numpy(bool) & present
    if pd.api.types.is_numeric_dtype(series):
        numbers = [n for n in (_number(v) for v in values) if isinstance(n, float)]
        return series.isin(numbers).to_numpy(bool) & present
    if pd.api.types.is_datetime64_any_dtype(series):
        stamps = [n for n in (_number(v) for v in values) if isinstance(n, pd.Timestamp)]
        return series.isin(stamps).to_numpy(bool) & present
    return series.astype(str).isin(values).to_numpy(bool) & present


def _ordered(series: pd.Series, c: Condition) -> pd.Series:
    """Return ``series`` as numbers or dates to compare with ``c``'s bounds, or raise."""
    bound = c.value[0] if isinstance(c.value, tuple) else c.value
    if isinstance(bound, pd.Timestamp):
        if pd.api.types.is_datetime64_any_dtype(series):
            return series
        raise ValueError(
            f"'{c.column}' holds no dates, so '{c.column} {c.op}' cannot take the date "
            f"{_fmt(bound)}; give a number, or use 'is'/'in'."
        )
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series
    raise ValueError(
        f"'{c.column}' is not numeric, so '{c.column} {c.op}' does not apply; "
        "use 'is', 'is not' or 'in' for it."
    )


def mask(
    where: Where, columns: pd.DataFrame, *, selections: Mapping[str, Any] | None = None
) -> np.ndarray:
    """Return the (n,) bool array of the rows of ``columns`` that meet every condition.

    columns: one row per prediction row (core.images.columns.slice_columns). selections:
    {selection id: (n,) bool rows} for the map selections the filter names
    (``core.selections.rows``). Raises :class:`MissingColumns` when a condition names a
    column it lacks, ValueError when an operator does not fit a column's type or a
    selection's rows were not given.
    """
    missing = [c for c in where.columns() if c not in columns.columns]
    if missing:
        raise MissingColumns(missing, [str(c) for c in columns.columns])
    keep = np.ones(len(columns), dtype=bool)
    for c in where.conditions:
        if c.op == SELECTED:
            chosen = (selections or {}).get(c.value)
            if chosen is None or np.shape(chosen) != (len(columns),):
                raise ValueError(
                    f"The filter keeps the map selection {c.value!r}, but its images were not "
                    "found for this run. Select them again on the Embedding map."
                )
            keep &= np.asarray(chosen, dtype=bool)
            continue
        series = columns[c.column]
        if c.op in CATEGORICAL:
            values = c.value if isinstance(c.value, tuple) else (c.value,)
            hit = _categorical(series, values)
            if c.op == "is not":
                hit = ~hit & series.notna().to_numpy()
        else:
            s = _ordered(series, c)
            if c.op == "between":
                hit = ((s >= c.value[0]) & (s <= c.value[1])).to_numpy(bool)
            elif c.op == "<":
                hit = (s < c.value).to_numpy(bool)
            else:
                hit = (s >= c.value).to_numpy(bool)
        keep &= hit
    return keep


def _say(value: Any) -> str:
    """Return a filter's value in words: six significant digits, never an exponent (a bound of
    1e6 reads "1,000,000", 1.23e-05 reads "0.0000123")."""
    if isinstance(value, float):
        if math.isfinite(value) and abs(value) >= 1e5:
            return f"{value:,.0f}"
        return np.format_float_positional(
            value, precision=6, unique=True, fractional=False, trim="-"
        )
    return _fmt(value)


def describe(where: Where) -> str:
    """Return the filter in words, e.g. "scanner is B and brightness < 0.21" ("all images")."""
    if not where:
        return "all images"
    words = []
    for c in where.conditions:
        if c.op == SELECTED:
            n = int(c.value.split("-", 1)[0])
            words.append(f"{n:,} image{'s' if n != 1 else ''} selected on the map")
        elif c.op == "in":
            shown = [_say(v) for v in c.value[:8]]
            more = f" or {len(c.value) - 8} more" if len(c.value) > 8 else ""
            if len(c.value) == 1:
                words.append(f"{c.column} is {shown[0]}")
            else:
                words.append(
                    f"{c.column} is {', '.join(shown[:-1])} or {shown[-1]}{more}"
                    if not more
                    else f"{c.column} is {', '.join(shown)}{more}"
                )
        elif c.op == "between":
            words.append(f"{c.column} between {_say(c.value[0])} and {_say(c.value[1])}")
        else:
            words.append(f"{c.column} {c.op} {_say(c.value)}")
    return " and ".join(words)
