"""The sidebar's run picker: a run stored by another session never moves an open session's run.

The store's list is newest first, so a run stored meanwhile shifts every position by one; a
browser that answers a selectbox with an index would then name the chosen run's neighbour.
AppTest cannot reproduce that: on Streamlit 1.67 it (like the current frontend) sends a
selectbox's formatted label, not its index (checked: with one widget key for every list the
end-to-end test below still passes). So the rule is tested directly: the pure choice
(ui.run_picker.chosen_run) keeps the session's run wherever the list puts it, and the widget
key changes with the list, so an answer about the old list is never read against the new
one; the AppTest checks the whole sidebar on a store that grows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.runs import Run, RunStore
from tests.app.conftest import ROOT
from ui import run_picker
from ui.state import RUN_KEY, list_runs


@pytest.mark.parametrize(
    ("ids", "kwargs", "expected"),
    [
        (["new", "b", "a"], {"current": "a", "default": "b"}, "a"),
        (["b", "a"], {"current": "gone", "linked": "a", "default": "b"}, "a"),
        (["b", "a"], {"current": None, "linked": "gone", "default": "b"}, "b"),
        (["b", "a"], {"current": "a", "pending": "b", "default": "a"}, "b"),
        (["b", "a"], {"current": "a", "pending": "not-stored-yet"}, "a"),
        ([], {"current": "a", "linked": "a", "default": None}, None),
    ],
    ids=["store-grew", "current-gone-link", "bad-link-default", "pending-wins",
         "pending-waits", "empty-store"],
)  # fmt: skip
def test_chosen_run(ids: list[str], kwargs: dict, expected: str | None) -> None:
    assert run_picker.chosen_run(ids, **kwargs) == expected


def test_widget_key_follows_the_list() -> None:
    assert run_picker.widget_key(["b", "a"]) == run_picker.widget_key(["b", "a"])
    assert run_picker.widget_key(["c", "b", "a"]) != run_picker.widget_key(["b", "a"])


def _copy(run: Run, store: Path, rid: str, created: str) -> str:
    """Store a copy of ``run`` as run ``rid`` made at ``created`` (what another session does)."""
    shutil.copytree(run.path, store / rid)
    meta = json.loads((store / rid / "meta.json").read_text())
    meta["created"] = created
    (store / rid / "meta.json").write_text(json.dumps(meta))
    return rid


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A private run store for one test (the session store stays as other tests expect)."""
    monkeypatch.setenv("CLASSLENS_RUNS_DIR", str(tmp_path / "runs"))
    (tmp_path / "runs").mkdir()
    list_runs.clear()
    yield tmp_path / "runs"
    list_runs.clear()


def _ids(store: Path) -> list[str]:
    return [r.run_id for r in RunStore(store).list()]


def _open_then_store_another(
    sample_runs: dict[str, Run], store: Path
) -> tuple[AppTest, str, list[str]]:  # fmt: skip
    """Open a session on an older run, then store the newest run; return (at, the session's
    run, the store's ids before). The app may evaluate the sample into this store too."""
    _copy(sample_runs["good"], store, "a" * 64, "2026-01-01T00:00:00")
    chosen = _copy(sample_runs["overfit"], store, "b" * 64, "2026-01-02T00:00:00")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["run"] = chosen
    at.run()
    assert not at.exception, at.exception
    assert at.session_state[RUN_KEY] == chosen
    before = _ids(store)
    _copy(sample_runs["imbalanced"], store, "c" * 64, "9999-01-01T00:00:00")  # newest: first
    list_runs.clear()
    assert _ids(store) == ["c" * 64, *before]
    at.run()  # the browser sends the selectbox's index into the list it showed
    assert not at.exception, at.exception
    return at, chosen, before


def test_a_run_stored_meanwhile_keeps_the_sessions_run(
    sample_runs: dict[str, Run], store: Path
) -> None:
    at, chosen, before = _open_then_store_another(sample_runs, store)
    (picker,) = [s for s in at.sidebar.selectbox if s.label == "Stored runs"]
    assert len(picker.options) == len(before) + 1
    assert at.session_state[RUN_KEY] == chosen
    assert picker.value == chosen
    assert at.query_params["run"] == chosen
