"""A map selection used as the slice filter (issue 15): a synthetic box selection on the
Embedding map, "Use as filter", then another page computes on exactly the images inside the
box (counted from the cached map with pandas; numbers from Run.subset and scikit-learn); a link
carrying the selection opens the same slice; an unknown selection id says so and shows all."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from core.analysis.diagnostics import pct
from core.runs import Run
from tests.app.conftest import open_page
from tests.app.test_embedding_map import _points, _select, _settle

pytestmark = pytest.mark.slow


def _metric(at, label: str) -> str:  # type: ignore[no-untyped-def]
    return next(m.value for m in at.metric if m.label == label)


def _headline_is(at, run: Run, inside: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """Overview's images and accuracy per split equal those of the run restricted to
    ``inside`` (Run.subset) and scikit-learn on those rows."""
    sub = run.subset(inside, "the box")
    df = run.predictions()[inside]
    for split in ("train", "test"):
        rows = df[df["split"] == split]
        assert _metric(at, f"Images ({split})") == f"{len(rows):,}"
        assert sub.metrics["splits"][split]["n"] == len(rows)
        acc = accuracy_score(rows["y_true"], rows["y_pred"])
        assert sub.metrics["splits"][split]["accuracy"] == pytest.approx(acc)
        assert _metric(at, f"Accuracy ({split})") == pct(acc)


def test_use_as_filter_applies_the_selection_everywhere(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["overfit"]
    at = _settle(open_page("embedding_map", run))
    assert "em_use_filter" not in _keys(at)  # nothing selected yet: no button
    pts = _points(run)
    x0, x1 = np.nanpercentile(pts["x"], [30, 70])
    y0, y1 = np.nanpercentile(pts["y"], [20, 80])
    _select(at, {"box": [{"x": [float(x0), float(x1)], "y": [float(y1), float(y0)]}]})
    inside = ((pts["x"] >= x0) & (pts["x"] <= x1) & (pts["y"] >= y0) & (pts["y"] <= y1)).to_numpy()
    assert 20 < inside.sum() < len(pts)

    at.button(key="em_use_filter").click().run()
    assert not at.exception, at.exception
    at = _settle(at)
    p = run.predictions()
    keys = sorted((p["split"] + "/" + p["path"])[inside])
    sid = f"{len(keys)}-{hashlib.sha256(chr(10).join(keys).encode()).hexdigest()[:12]}"
    assert at.query_params["where"] == f"selection~sel~{sid}"
    assert (run.path / "selections" / f"{sid}.json").exists()
    note = [e.value for e in at.info if "images**" in e.value]
    assert note and f"**{inside.sum():,} of {len(p):,} images**" in note[0]
    assert f"{inside.sum():,} images selected on the map" in note[0]
    # the sidebar lists it as a removable condition
    assert any("selected on the map" in m.value for m in at.sidebar.markdown)
    assert "slice_drop_0" in _keys(at)

    at.switch_page("pages/overview.py").run()
    assert not at.exception, at.exception
    _headline_is(at, run, inside)

    # a link with the selection opens the same slice in a new session
    linked = open_page("overview", run, where=f"selection~sel~{sid}")
    _headline_is(linked, run, inside)

    # removed in the sidebar: every image again
    at.button(key="slice_drop_0").click().run()
    assert not at.exception, at.exception
    assert "where" not in at.query_params
    assert _metric(at, "Images (test)") == f"{run.metrics['splits']['test']['n']:,}"


def test_an_unknown_selection_in_a_link_says_so_and_shows_all(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["imbalanced"]
    at = open_page("overview", run, where="selection~sel~7-0123456789ab")
    assert any(
        "is not stored with this run" in w.value and "all images" in w.value for w in at.warning
    ), [w.value for w in at.warning]
    assert _metric(at, "Images (test)") == f"{run.metrics['splits']['test']['n']:,}"


def _keys(at) -> set[str]:  # type: ignore[no-untyped-def]
    return {b.key for b in at.button if b.key}
