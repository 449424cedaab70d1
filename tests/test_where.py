"""The slice filter (core.analysis.where): masks equal pandas queries written another way, the
URL text round-trips and junk is refused with a message that says how to fix it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.analysis.where import (
    Condition,
    MissingColumns,
    Where,
    describe,
    mask,
    parse,
    to_query,
)


@pytest.fixture
def columns() -> pd.DataFrame:
    """A slice_columns-like table: categorical, numeric, bool, date and text with odd names."""
    rng = np.random.default_rng(0)
    n = 400
    return pd.DataFrame(
        {
            "split": rng.choice(["train", "test"], n),
            "true class": rng.choice(["0", "3", "8", "9"], n),
            "predicted class": rng.choice(["0", "3", "8", "9"], n),
            "correct": rng.random(n) < 0.7,
            "confidence": rng.random(n).astype(np.float32),
            "scanner": pd.Series(rng.choice(["A", "B", "C;~,%", None], n), dtype=object),
            "writer": rng.integers(0, 5, n),
            "brightness": np.where(rng.random(n) < 0.1, np.nan, rng.random(n)),
            "date": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 60, n), "D"),
        }
    )


def _query(df: pd.DataFrame, expr: str) -> np.ndarray:
    """Return the rows ``df.query(expr)`` keeps as a bool mask (the independent reference)."""
    return df.index.isin(df.query(expr, engine="python").index)


CASES = {
    "is": (Where((Condition("scanner", "is", "B"),)), "scanner == 'B'"),
    "is not (missing never matches)": (
        Where((Condition("scanner", "is not", "B"),)),
        "scanner != 'B' and scanner.notna()",
    ),
    "in, names with a space": (
        Where((Condition("true class", "in", ("3", "8")),)),
        "`true class` in ['3', '8']",
    ),
    "between (both ends in)": (
        Where((Condition("confidence", "between", (0.2, 0.6)),)),
        "confidence >= 0.2 and confidence <= 0.6",
    ),
    "< skips missing": (Where((Condition("brightness", "<", 0.21),)), "brightness < 0.21"),
    ">=": (Where((Condition("brightness", ">=", 0.5),)), "brightness >= 0.5"),
    "numeric column, is": (Where((Condition("writer", "is", "3"),)), "writer == 3"),
    "bool column": (Where((Condition("correct", "is", "False"),)), "correct == False"),
    "dates": (
        Where((Condition("date", "between", ("2024-01-10", "2024-02-01")),)),
        "date >= '2024-01-10' and date <= '2024-02-01'",
    ),
    "odd characters in a value": (
        Where((Condition("scanner", "in", ("C;~,%", "A")),)),
        "scanner in ['C;~,%', 'A']",
    ),
    "AND of four": (
        Where(
            (
                Condition("split", "is", "test"),
                Condition("true class", "in", ("3", "8")),
                Condition("confidence", ">=", 0.3),
                Condition("scanner", "is not", "A"),
            )
        ),
        "split == 'test' and `true class` in ['3','8'] and confidence >= 0.3 "
        "and scanner != 'A' and scanner.notna()",
    ),
}


@pytest.mark.parametrize("where,expr", CASES.values(), ids=list(CASES))
def test_mask_equals_a_pandas_query(columns: pd.DataFrame, where: Where, expr: str) -> None:
    got = mask(where, columns)
    want = _query(columns, expr)
    assert got.dtype == bool and got.shape == (len(columns),)
    assert 0 < want.sum() < len(columns)  # the case selects something and not everything
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("where,expr", CASES.values(), ids=list(CASES))
def test_url_text_round_trips(columns: pd.DataFrame, where: Where, expr: str) -> None:
    text = to_query(where)
    assert parse(text) == where
    np.testing.assert_array_equal(mask(parse(text), columns), mask(where, columns))


def test_url_text_is_readable() -> None:
    where = Where(
        (Condition("true class", "in", ("3", "8")), Condition("confidence", "between", (0.2, 0.6)))
    )
    assert to_query(where) == "true class~in~3,8;confidence~between~0.2,0.6"
    assert to_query(Where()) == "" and parse("") == Where() and parse("  ") == Where()
    assert (
        to_query(Where((Condition("scanner", "is", "a;b~c,d%"),))) == "scanner~is~a%3Bb%7Ec%2Cd%25"
    )


def test_no_condition_keeps_every_row(columns: pd.DataFrame) -> None:
    assert mask(Where(), columns).all()
    assert describe(Where()) == "all images"


def test_describe_in_words() -> None:
    where = parse("scanner~is~B;brightness~lt~0.21")
    assert describe(where) == "scanner is B and brightness < 0.21"
    assert describe(parse("true class~in~3,8")) == "true class is 3 or 8"
    assert describe(parse("confidence~between~0.2,0.6")) == "confidence between 0.2 and 0.6"
    assert describe(parse("date~ge~2024-01-10")) == "date >= 2024-01-10"
    assert describe(parse("scanner~not~A")) == "scanner is not A"
    # numbers as numbers, never an exponent (was "1e+06" / "1.23e-05" with {:g})
    assert describe(parse("width~ge~1000000")) == "width >= 1,000,000"
    assert describe(parse("width~lt~1234567.891")) == "width < 1,234,568"
    assert describe(parse("brightness~lt~0.0000123")) == "brightness < 0.0000123"
    assert describe(parse("brightness~lt~0.213456789")) == "brightness < 0.213457"


JUNK = {
    "no operator": ("scanner", "expected column~op~value"),
    "unknown operator": ("scanner~like~B", "Unknown operator"),
    "code is not run": ("__import__('os')~is~1;x~eval~2", "Unknown operator"),
    "a word for a number": ("confidence~lt~abc", "needs a number or a date"),
    "infinity": ("confidence~ge~inf", "needs a number or a date"),
    "between needs two": ("confidence~between~0.2", "needs two values"),
    "between reversed": ("confidence~between~0.6,0.2", "swap them"),
    "between a date and a number": ("date~between~2024-01-01,3", "two numbers or two dates"),
    "empty column": ("~is~B", "needs a column name"),
    "too long": ("a~is~" + "b" * 5000, "characters long"),
    "too many": (";".join(f"c{i}~is~1" for i in range(30)), "30 conditions"),
}


@pytest.mark.parametrize("text,message", JUNK.values(), ids=list(JUNK))
def test_junk_is_refused_with_a_fix(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        parse(text)
    assert "Remove ?where=" in str(err.value)


def test_a_column_the_run_lacks_is_named(columns: pd.DataFrame) -> None:
    with pytest.raises(MissingColumns, match="no column 'site'") as err:
        mask(parse("site~is~B;scanner~is~A"), columns)
    assert err.value.missing == ["site"]
    assert "another run" in str(err.value)


def test_an_operator_that_does_not_fit_the_column(columns: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="'scanner' is not numeric"):
        mask(parse("scanner~lt~3"), columns)
    with pytest.raises(ValueError, match="holds no dates"):
        mask(parse("confidence~lt~2024-01-01"), columns)


def test_condition_checks_its_own_value() -> None:
    with pytest.raises(ValueError, match="use 'in' for several"):
        Condition("scanner", "is", ("A", "B"))
    with pytest.raises(ValueError, match="Unknown operator"):
        Condition("scanner", "==", "A")
    assert Condition("writer", "in", (1.0, 2)).value == ("1", "2")
    assert Condition("confidence", "<", "0.5").value == 0.5
