"""Evaluation progress above the page refreshes itself only while a followed job runs.

A timer that reruns the page when nothing is pending closes a list the analyst just opened
(the browser test saw the stored-runs list close after the click), so once every followed job
has ended and its run is open, the progress is drawn without ``run_every``.
"""

from __future__ import annotations

import pytest

from core.runs import Run
from tests.app.conftest import open_page
from ui import jobs, progress
from ui.state import RUN_KEY


@pytest.fixture()
def live_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """Record each time the page drew the self-refreshing fragment (then draw it statically)."""
    calls: list[tuple[str, ...]] = []

    def spy(keys: tuple[str, ...]) -> None:
        calls.append(keys)
        progress._followed(keys)

    monkeypatch.setattr(progress, "_followed_live", spy)
    return calls


def _follow(monkeypatch: pytest.MonkeyPatch, *followed: jobs.Job) -> tuple[str, ...]:
    table = {j.key: j for j in followed}
    monkeypatch.setattr(jobs, "get", table.get)
    return tuple(table)


def test_nothing_pending_draws_no_timer(
    sample_runs: dict[str, Run], monkeypatch: pytest.MonkeyPatch, live_calls: list
) -> None:
    run = sample_runs["good"]
    keys = _follow(monkeypatch, jobs.Job("k1", "good on digits", run=run, finished=True))
    at = open_page("overview", run)
    at.session_state[jobs.FOLLOW_KEY] = keys
    at.session_state[progress.OPENED_KEY] = keys  # its run was opened already
    at.run()
    assert not at.exception, at.exception
    assert at.session_state[RUN_KEY] == run.run_id
    assert any(s.value.startswith(f"Done: run {run.run_id[:6]}") for s in at.success)
    assert live_calls == []
    # An evaluation that failed is nothing to wait for either.
    keys = _follow(monkeypatch, jobs.Job("k2", "bad", error="no weights", finished=True))
    at.session_state[jobs.FOLLOW_KEY] = keys
    at.run()
    assert any("no weights" in e.value for e in at.error)
    assert live_calls == []


def test_a_running_job_refreshes_until_it_ends(
    sample_runs: dict[str, Run], monkeypatch: pytest.MonkeyPatch, live_calls: list
) -> None:
    running = jobs.Job("k3", "overfit on digits", total=10, done=4, phase=jobs.EVALUATING)
    keys = _follow(monkeypatch, running)
    at = open_page("overview", sample_runs["good"])
    at.session_state[jobs.FOLLOW_KEY] = keys
    at.run()
    assert not at.exception, at.exception
    assert live_calls == [keys]
    assert progress.waiting(keys)
    running.finished, running.error = True, "stopped"
    assert not progress.waiting(keys)
    at.run()
    assert live_calls == [keys], "ended: drawn without the timer"
