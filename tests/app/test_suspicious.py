"""The Suspicious labels page under AppTest: its count, cards and CSV against a plain loop."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.runs import Run

from .conftest import RecordingStorage, open_page

pytestmark = pytest.mark.slow

ZOOM = "sl_gallery-zoom-"
COUNT = re.compile(r"^\*\*([\d,]+)\*\* suspicious labels among ([\d,]+) (\w+) images$")


def _reference(run: Run, split: str) -> list[tuple[int, int, float]]:
    """Return [(row, suggested class, margin)] in display order, from a row-by-row loop over
    run.predictions() and run.probs() (thresholds: mean self-probability per given class)."""
    df, probs = run.predictions(), run.probs().astype(np.float64)
    rows = [i for i in range(len(df)) if df["split"].iat[i] == split]
    k = probs.shape[1]
    total, count = [0.0] * k, [0] * k
    for i in rows:
        c = int(df["y_true"].iat[i])
        total[c] += probs[i, c]
        count[c] += 1
    t = [total[c] / count[c] if count[c] else math.inf for c in range(k)]
    found = []
    for i in rows:
        given = int(df["y_true"].iat[i])
        confident = [j for j in range(k) if probs[i, j] >= t[j]]
        if confident:
            best = max(confident, key=lambda j: (probs[i, j], -j))
            if best != given:
                found.append((int(df.index[i]), best, probs[i, best] - probs[i, given]))
    return sorted(found, key=lambda r: (-r[2], r[0]))


def _count(at: AppTest) -> tuple[int, int, str]:
    found = [m for e in at.markdown if (m := COUNT.match(e.value))]
    assert len(found) == 1, [e.value for e in at.markdown]
    return int(found[0][1].replace(",", "")), int(found[0][2].replace(",", "")), found[0][3]


def _shown_rows(at: AppTest) -> list[int]:
    return [int(b.key.removeprefix(ZOOM)) for b in at.button if (b.key or "").startswith(ZOOM)]


@pytest.mark.parametrize("name", ["good", "overfit", "imbalanced"])
def test_count_csv_and_cards_match_a_loop(
    sample_runs: dict[str, Run], media: type[RecordingStorage], name: str
) -> None:
    run = sample_runs[name]
    at = open_page("suspicious", run)
    assert at.title[0].value == "Suspicious labels"
    expected = _reference(run, "test")
    n, n_split, split = _count(at)
    assert split == "test" and n_split == run.metrics["splits"]["test"]["n"]
    assert n == len(expected)
    if not expected:
        assert any("No image in this split" in s.value for s in at.success)
        return
    (button,) = at.get("download_button")
    csv = pd.read_csv(io.BytesIO(media.read(button.proto.url)), dtype={"path": str})
    assert csv["row"].tolist() == [r for r, _, _ in expected]
    assert csv["y_suggested"].tolist() == [s for _, s, _ in expected]
    np.testing.assert_allclose(csv["margin"], [m for _, _, m in expected], rtol=1e-6)
    names = run.class_names
    df = run.predictions()
    assert csv["given"].astype(str).tolist() == [names[df.at[r, "y_true"]] for r in csv["row"]]
    assert csv["path"].tolist() == [df.at[r, "path"] for r in csv["row"]]
    assert _shown_rows(at) == [r for r, _, _ in expected][:24]
    r, s, _ = expected[0]
    p = run.probs()[r]
    given = names[df.at[r, "y_true"]]
    head = f"**{given}** {p[df.at[r, 'y_true']]:.0%} → :orange[**{names[s]}** {p[s]:.0%}]"
    assert any(e.value == head for e in at.markdown), head


def test_train_split_and_sort_by_self_confidence(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["imbalanced"]
    at = open_page("suspicious", run)
    at.segmented_control(key="sl_split").set_value("train").run()
    at.selectbox(key="sl_order").set_value("self_confidence").run()
    assert not at.exception, at.exception
    expected = _reference(run, "train")
    n, _, split = _count(at)
    assert (n, split) == (len(expected), "train")
    df, probs = run.predictions(), run.probs()
    by_self = sorted((probs[r, df.at[r, "y_true"]], r) for r, _, _ in expected)
    assert _shown_rows(at) == [r for _, r in by_self][:24]


@pytest.mark.parametrize(("name", "split"), [("overfit", "test"), ("imbalanced", "train")])
def test_confidently_only_where_the_probability_says_so(
    sample_runs: dict[str, Run], name: str, split: str
) -> None:
    """'confidently' only for suggested classes at CONFIDENT_PROB or more: the overfit model
    suggests at under 20% (it used to be 'confidently disputed'), the imbalanced one at 86%."""
    from core.analysis.suspicious import CONFIDENT_PROB

    run = sample_runs[name]
    at = open_page("suspicious", run)
    if split != "test":
        at.segmented_control(key="sl_split").set_value(split).run()
    probs = run.probs()
    expected = _reference(run, split)
    assert expected, "the sample has suspicious labels here"
    sure = sum(probs[r, s] >= CONFIDENT_PROB for r, s, _ in expected)
    text = " ".join(e.value for e in at.markdown) + " ".join(e.value for e in at.success)
    claims = "**confidently**" in text or "**confident** disputes" in text
    assert claims == (sure > 0), text
    if sure == 0:
        assert "does not dispute" in text
