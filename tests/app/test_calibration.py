"""The Calibration page through AppTest: ECE, bins and images against a per-sample loop."""

from __future__ import annotations

import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.runs import Run
from tests.app import conftest

pytestmark = pytest.mark.slow

N_BINS = 15
ZOOM = "cal_gallery-zoom-"
COUNT = re.compile(r"^\*\*([\d,]+)\*\* images in this bin")


def _open(run: Run, split: str = "test") -> AppTest:
    """Return the page in app.py; skip until app.py registers it (the lead adds the line)."""
    if "pages/calibration.py" not in (conftest.ROOT / "app.py").read_text():
        pytest.skip("pages/calibration.py is not registered in app.py yet")
    at = conftest.open_page("calibration", run)
    if split != "test":
        at.segmented_control(key="split").set_value(split).run()
        assert not at.exception, at.exception
    return at


def _bins(conf, correct) -> tuple[list[list[int]], float, float]:
    """Return (positions per bin, ECE, MCE) from a per-sample loop, bins [lo, hi)."""
    edges = np.linspace(0, 1, N_BINS + 1)
    members: list[list[int]] = [[] for _ in range(N_BINS)]
    for i, x in enumerate(conf):
        members[min(int(np.digitize(x, edges)) - 1, N_BINS - 1)].append(i)
    gaps = [
        (len(m), abs(np.mean([correct[i] for i in m]) - np.mean([conf[i] for i in m])))
        for m in members
        if m
    ]
    return members, sum(n * g for n, g in gaps) / len(conf), max(g for _, g in gaps)


def _split(run: Run, split: str):
    df = run.predictions()
    rows = df[df["split"] == split]
    conf = rows["confidence"].to_numpy().astype(np.float64)
    return rows, conf, (rows["y_true"] == rows["y_pred"]).to_numpy()


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


@pytest.mark.parametrize("model, split", [("good", "test"), ("overfit", "train")])
def test_ece_mce_and_per_class_table(sample_runs: dict[str, Run], model: str, split: str) -> None:
    run = sample_runs[model]
    at = _open(run, split)
    assert at.title[0].value == "Calibration"
    rows, conf, correct = _split(run, split)
    _, ece, mce = _bins(conf, correct)
    assert _metric(at, "ECE") == f"{ece:.1%}"
    assert _metric(at, "MCE") == f"{mce:.1%}"
    assert _metric(at, "Images") == f"{len(rows):,}"
    table = at.dataframe[0].value
    probs = run.probs()[rows.index.to_numpy()].astype(np.float64)
    y = rows["y_true"].to_numpy()
    for c in range(len(run.class_names)):
        assert table["ece"][c] == pytest.approx(_bins(probs[:, c], y == c)[1], abs=1e-9)
    assert len(at.get("plotly_chart")) == 2


def test_bin_selection_shows_exactly_its_images(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["imbalanced"]
    at = _open(run)
    rows, conf, correct = _split(run, "test")
    members, _, _ = _bins(conf, correct)
    non_empty = [b for b in range(N_BINS) if members[b]]
    labels = []
    for b in non_empty:
        n, acc = len(members[b]), np.mean([correct[i] for i in members[b]])
        labels.append(
            f"{b / N_BINS:.2f}–{(b + 1) / N_BINS:.2f} · {n:,} image{'s' * (n != 1)} · "
            f"accuracy {acc:.0%}"
        )
    assert at.selectbox(key="cal_bin").options == labels
    for b in (non_empty[0], non_empty[-1]):
        at.selectbox(key="cal_bin").set_value(b).run()
        assert not at.exception, at.exception
        expected = rows.index.to_numpy()[members[b]]
        found = [int(m[1].replace(",", "")) for e in at.markdown if (m := COUNT.match(e.value))]
        assert found == [len(expected)]
        shown = [int(k.key.removeprefix(ZOOM)) for k in at.button if (k.key or "").startswith(ZOOM)]
        by_conf = sorted(expected, key=lambda i: (-float(rows.at[i, "confidence"]), i))
        assert shown == by_conf[:24]


def test_imbalanced_reading_agrees_with_its_bins(sample_runs: dict[str, Run]) -> None:
    """The reading names the 50% bin overconfident when that bin is right less often than it
    claims (the old reading called the whole model underconfident from the averages)."""
    at = _open(sample_runs["imbalanced"])
    _, conf, correct = _split(sample_runs["imbalanced"], "test")
    members, _, _ = _bins(conf, correct)
    edges = np.linspace(0, 1, N_BINS + 1)
    half = members[int(np.digitize(0.5, edges)) - 1]
    acc, mean_conf = np.mean(correct[half]), np.mean(conf[half])
    assert acc < mean_conf, "the sample's 50% bin is overconfident"
    reading = next(m.value for m in at.markdown if "(ECE)" in m.value)
    # Each side's share of the ECE from the per-sample bins: the reading names the 50% bin
    # only when the overconfident side is a lean (at least 10% of the ECE and half a point),
    # not one noisy bin. (Changed on purpose, issue 14: with the sample's degraded scanner the
    # overconfident side of this model is too small; a mixed model: tests/test_calibration.py.)
    signed = [len(m) * (np.mean(correct[m]) - np.mean(conf[m])) / len(conf) for m in members if m]
    over, under = -sum(g for g in signed if g < 0), sum(g for g in signed if g > 0)
    assert under > over
    if over >= max(0.10 * (over + under), 0.005):
        spans = re.findall(r"\*\*overconfident\*\* from (\d+)% to (\d+)% confidence", reading)
        assert any(int(lo) <= 50 < int(hi) for lo, hi in spans), reading
    else:
        assert "The model is **underconfident**" in reading
    assert "**underconfident**" in reading  # and the confident bins lean the other way
    assert np.mean(correct) > np.mean(conf)  # the averages alone would say underconfident
