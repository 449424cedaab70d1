"""core.hosting.attempts: sign-in attempt limits per session and per server (issue 13, item 6).

A fake clock stands in for time: nothing sleeps.
"""

from __future__ import annotations

import pytest

from core.hosting.attempts import AttemptLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


def test_a_session_waits_after_its_free_guesses_and_the_wait_doubles(clock: Clock) -> None:
    lim = AttemptLimiter(3, 1000, base_delay_s=2, clock=clock)
    for n in (1, 2, 3):
        assert lim.wait_s("a") == 0
        assert lim.failed("a") == (n, n)
    waits = []
    for _ in range(4):
        wait = lim.wait_s("a")
        waits.append(wait)
        clock.now += wait  # the session waits exactly as told, then guesses wrong again
        assert lim.wait_s("a") == 0
        lim.failed("a")
    assert waits == [2, 4, 8, 16]
    assert lim.wait_s("b") == 0  # another session is not slowed by a's guesses alone


def test_the_wait_is_capped(clock: Clock) -> None:
    lim = AttemptLimiter(1, 10_000, base_delay_s=2, max_delay_s=60, clock=clock)
    for _ in range(200):  # 150 wrong guesses no longer leave the right one open at once
        lim.failed("a")
    assert lim.wait_s("a") == 60
    clock.now += 59
    assert lim.wait_s("a") == pytest.approx(1)


def test_success_forgets_the_sessions_guesses(clock: Clock) -> None:
    lim = AttemptLimiter(2, 1000, clock=clock)
    lim.failed("a")
    lim.failed("a")
    assert lim.wait_s("a") > 0
    lim.succeeded("a")
    assert lim.wait_s("a") == 0
    assert lim.failed("a") == (1, 3)  # the server's window still counts all three


def test_many_sessions_trip_the_server_limit_for_everyone(clock: Clock) -> None:
    """An attacker opening a new session per guess: the per-session limit never trips."""
    lim = AttemptLimiter(5, 10, base_delay_s=2, window_s=600, clock=clock)
    for i in range(9):
        lim.failed(f"attacker-{i}")
        clock.now += 1
    assert lim.wait_s("someone") == 0
    lim.failed("attacker-9")  # the 10th wrong guess within the window
    assert lim.wait_s("someone") == 2 and lim.wait_s("attacker-10") == 2
    clock.now += 2
    lim.failed("attacker-10")
    assert lim.wait_s("someone") == 4
    # Once the window has passed, the old guesses no longer count.
    clock.now += 601
    assert lim.wait_s("someone") == 0


def test_old_sessions_are_forgotten(clock: Clock) -> None:
    lim = AttemptLimiter(1, 1000, window_s=10, max_delay_s=20, clock=clock)
    for i in range(100):
        lim.failed(f"s{i}")
    clock.now += 31
    lim.wait_s("x")
    assert lim._sessions == {}  # bounded memory: one entry per recent guessing session
