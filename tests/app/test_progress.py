"""A New run's progress shows in the main area, above the page, with its phase from the first
rerun, and the new run opens when it is done (issue 10, item 3).

The evaluation process is a stand-in that reports the worker's protocol step by step when the
test releases it, then names a stored sample run as its result.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.runs import Run
from tests.app.conftest import ROOT
from ui import jobs
from ui.state import RUN_KEY

STAND_IN = """
import json, pathlib, sys, time
base, run_id, runs_dir = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
def say(obj):
    print(json.dumps(obj), flush=True)
def hold(name):
    deadline = time.monotonic() + 120
    while not (base / name).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
hold("go-load")
say({"phase": "loading the model"})
hold("go-eval")
say({"phase": "preparing", "total": 540})
say({"progress": [135, 540]})
hold("go-end")
say({"progress": [540, 540]})
say({"run": run_id, "runs_dir": runs_dir})
"""


def _until(at: AppTest, what, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout  # bounded
    while time.monotonic() < deadline:
        at.run()
        if what():
            return
        time.sleep(0.1)
    raise AssertionError(f"not shown after {timeout}s")


def _main_texts(at: AppTest) -> list[str]:
    texts = [e.value for kind in ("info", "success", "error") for e in at.main.get(kind)]
    return texts + [p.proto.text for p in at.main.get("progress")]


def _sidebar_progress(at: AppTest) -> list[str]:
    return [p.proto.text for p in at.sidebar.get("progress")]


@pytest.fixture()
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_runs: dict[str, Run]):
    script = tmp_path / "worker.py"
    script.write_text(STAND_IN)
    target = sample_runs["overfit"]
    monkeypatch.setattr(
        jobs,
        "WORKER",
        [sys.executable, str(script), str(tmp_path), target.run_id, str(target.path.parent)],
    )
    monkeypatch.setattr(jobs, "_JOBS", {})  # no job of another test with the same inputs
    return tmp_path, target


def test_progress_shows_above_the_page_by_phase_and_opens_the_new_run(stand_in) -> None:
    base, target = stand_in
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    start = at.session_state[RUN_KEY]
    assert start != target.run_id
    evaluate = next(b for b in at.sidebar.button if b.label == "Evaluate")
    evaluate.click()
    at.run()
    assert not at.exception, at.exception
    # The first rerun after the click: the phase is in the main area already.
    assert any("starting the evaluation process" in t for t in _main_texts(at)), _main_texts(at)
    assert any("above the page" in c.value for c in at.sidebar.caption)
    assert _sidebar_progress(at) == []

    (base / "go-load").touch()
    _until(at, lambda: any("loading the model…" in t for t in _main_texts(at)))
    (base / "go-eval").touch()
    _until(at, lambda: any("evaluating 135/540 images" in t for t in _main_texts(at)))
    bar = next(p for p in at.main.get("progress") if "evaluating" in p.proto.text)
    assert bar.proto.value == 25  # percent
    assert " img/s · " in bar.proto.text and bar.proto.text.endswith(" left")

    (base / "go-end").touch()
    _until(at, lambda: at.session_state[RUN_KEY] == target.run_id)
    assert not at.exception, at.exception
    assert any(t.startswith(f"Done: run {target.run_id[:6]}") for t in _main_texts(at))
