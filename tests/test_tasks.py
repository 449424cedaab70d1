"""core.hosting.tasks: one computation per key across threads, off the caller's thread, bounded."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
from torch import nn

from core.errors import ClassLensError
from core.hosting import tasks


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    tasks.configure()
    tasks.clear()
    yield
    tasks.configure()
    tasks.clear()


def test_ten_sessions_one_computation() -> None:
    calls: list[int] = []
    gate = threading.Event()

    def work(x: int) -> np.ndarray:
        calls.append(x)
        gate.wait(5)
        return np.full(3, x)

    got: list[tasks.Task] = []
    threads = [
        threading.Thread(target=lambda: got.append(tasks.submit(("k", 1), work, 7)))
        for _ in range(10)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(got) == 10 and all(t is got[0] for t in got)
    assert not got[0].finished  # submit returned while the work still ran
    gate.set()
    assert got[0].wait(5)
    np.testing.assert_array_equal(got[0].result, [7, 7, 7])
    assert calls == [7]
    assert tasks.submit(("k", 1), work, 7) is got[0]  # kept: a later viewer gets it too
    assert calls == [7]


def test_progress_is_reported_while_running() -> None:
    step, gate = threading.Event(), threading.Event()

    def work(*, progress) -> str:  # noqa: ANN001
        progress(3, 12)
        step.set()
        gate.wait(5)
        return "done"

    task = tasks.submit("p", work, progress=True)
    assert task.fraction is None or task.fraction == 0.25
    assert step.wait(5)
    assert task.fraction == 0.25 and (task.done, task.total) == (3, 12)
    gate.set()
    assert task.wait(5) and task.result == "done" and task.error is None


def test_classlens_error_is_an_answer_other_errors_retry() -> None:
    calls: list[str] = []

    def refuse() -> None:
        calls.append("refuse")
        raise ClassLensError("this model has no nn.Conv2d")

    task = tasks.submit("r", refuse)
    assert task.wait(5) and task.error == "this model has no nn.Conv2d"
    assert tasks.submit("r", refuse) is task and calls == ["refuse"]

    def crash() -> None:
        calls.append("crash")
        raise RuntimeError("disk went away")

    first = tasks.submit("c", crash)
    assert first.wait(5) and first.error == "unexpected RuntimeError: disk went away"
    second = tasks.submit("c", crash)
    assert second is not first and second.wait(5)
    assert calls == ["refuse", "crash", "crash"]


def test_results_kept_under_entry_and_byte_bounds() -> None:
    tasks.configure(max_entries=2, max_bytes=10_000)
    for k in range(3):
        assert tasks.submit(k, np.zeros, 100).wait(5)  # 800 bytes each
    assert tasks.get(0) is None and tasks.get(1) is not None and tasks.get(2) is not None
    assert tasks.kept_bytes() == 1600
    assert tasks.submit("big", np.zeros, 1000).wait(5)  # 8000 bytes: 1 or 2 must go
    # LRU: 1 was used (get) before 2, so 1 goes first; 2 + big = 8800 <= 10000
    assert tasks.get(1) is None and tasks.get(2) is not None and tasks.get("big") is not None
    assert tasks.kept_bytes() == 8800
    assert tasks.submit("huge", np.zeros, 2000).wait(5)  # alone over the bound: not kept
    assert tasks.get("huge") is None and tasks.get("big") is not None  # the others stay


def test_running_task_never_evicted() -> None:
    tasks.configure(max_entries=0)
    gate = threading.Event()
    task = tasks.submit("slow", lambda: gate.wait(5) and 1)
    assert tasks.get("slow") is task  # still running: found
    gate.set()
    assert task.wait(5) and task.result == 1
    assert tasks.get("slow") is None  # finished, and the bound keeps none


def test_compute_runs_here_once_and_joins_a_running_one() -> None:
    calls: list[str] = []

    def load() -> str:
        calls.append(threading.current_thread().name)
        return "model"

    assert tasks.compute("m", load) == "model" and tasks.compute("m", load) == "model"
    assert calls == [threading.current_thread().name]  # ran in the caller's thread, once
    with pytest.raises(ClassLensError, match="refused"):
        tasks.compute("bad", lambda: (_ for _ in ()).throw(ClassLensError("refused")))
    with pytest.raises(ZeroDivisionError):
        tasks.compute("zero", lambda: 1 / 0)


def test_size_of_counts_arrays_and_module_weights() -> None:
    assert tasks.size_of(np.zeros((10, 4), np.float32)) == 160
    assert tasks.size_of([np.zeros(10, np.uint8), None, b"abcd"]) >= 14
    linear = nn.Linear(100, 10)  # 1000 weights + 10 biases, float32
    assert tasks.size_of(linear) == 1010 * 4


def test_configure_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1"):
        tasks.configure(workers=0)
