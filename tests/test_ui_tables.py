"""ui.tables: the one percentage format of the metric tiles (hand-written expectations)."""

from __future__ import annotations

import math

import pytest

from ui.tables import pct


@pytest.mark.parametrize(
    ("x", "shown"),
    [(0.0, "0.0%"), (0.12345, "12.3%"), (1.0, "100.0%"), (math.nan, "—")],
    ids=["zero", "rounded", "one", "undefined"],
)
def test_pct(x: float, shown: str) -> None:
    assert pct(x) == shown
