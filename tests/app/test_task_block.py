"""ui.tasks.result: the block every page with shared work runs (progress and rerun while the
task runs, its message and a stop when it failed, its result when done), on a one-line page."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from core.errors import ClassLensError
from core.hosting import tasks


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    tasks.clear()
    yield
    tasks.clear()


def _page(key: str) -> None:
    import streamlit as st

    from core.hosting import tasks
    from ui import tasks as ui_tasks

    task = tasks.submit(key, lambda: None)  # the test started it: this returns that task
    st.markdown("above")
    st.markdown(f"result: {ui_tasks.result(task, 'Hashing the images')}")


def _content(at: AppTest) -> list[str]:
    """Return the page's markdown lines below "above" (the test page's first line)."""
    return [m.value for m in at.markdown if m.value != "above"]


def _places(at: AppTest) -> dict[str, int]:
    """Return {markdown line: its index in the main area} (what Streamlit's browser matches
    the previous run's elements by)."""
    return {n.value: i for i, n in at.main.children.items() if n.type == "markdown"}


def _open(key: str) -> AppTest:
    at = AppTest.from_function(_page, args=(key,), default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_finished_task_gives_its_result() -> None:
    task = tasks.submit("done", lambda: 42)
    assert task.wait(5)
    at = _open("done")
    assert _content(at) == ["result: 42"]
    assert not at.get("progress") and not at.info


def test_a_refused_task_says_why_and_stops() -> None:
    def refuse() -> None:
        raise ClassLensError("this checkpoint is ONNX: no embeddings. Save it as a state_dict.")

    assert tasks.submit("refused", refuse).wait(5)
    at = _open("refused")
    assert [i.value for i in at.info] == [
        "this checkpoint is ONNX: no embeddings. Save it as a state_dict."
    ]
    assert not _content(at)  # stopped before the line that uses the result


def test_a_running_task_shows_progress_and_asks_for_a_rerun(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reruns: list[str] = []  # rerun_if_pending would sleep and st.rerun(): record the call
    monkeypatch.setattr("ui.tasks.rerun_if_pending", lambda: reruns.append("rerun"))
    gate = threading.Event()

    def work(*, progress) -> str:  # noqa: ANN001
        progress(3, 12)
        gate.wait(10)
        return "hashed"

    task = tasks.submit("running", work, progress=True)
    try:
        for _ in range(50):  # until the worker reported its first progress
            if task.fraction:
                break
            threading.Event().wait(0.05)
        at = _open("running")
        bars = at.get("progress")
        assert len(bars) == 1 and "Hashing the images: 3 of 12" in bars[0].proto.text
        assert reruns == ["rerun"]
        # The bar sits in a slot the block always draws: what follows it keeps its place
        # (rerun_if_pending is a stub here, so the page went on past the block).
        running = _places(at)
        assert at.main.children[running["above"] + 1].type == "progress"
        at.run()
        assert not at.exception, at.exception
        assert _places(at) == running and len(at.get("progress")) == 1
    finally:
        gate.set()
    assert task.wait(5)
    at.run()  # the same session's rerun once it finished
    assert not at.exception, at.exception
    assert not at.get("progress")
    assert _places(at) == {"above": running["above"], "result: hashed": running["result: None"]}
    at = _open("running")
    assert _content(at) == ["result: hashed"]
    assert not at.get("progress")
