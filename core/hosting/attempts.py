"""Sign-in attempt limits: per browser session and per server, with growing waits.

The password gate asks :meth:`AttemptLimiter.wait_s` before it compares a password and reports
each outcome. A session that has made ``per_session`` wrong guesses waits before each further
one, the wait doubling per wrong guess; when the whole server has taken ``per_server`` wrong
guesses within ``window_s``, every session waits likewise (a new session costs an attacker
nothing, so the per-session limit alone would not hold). A guess made while waiting is refused
without being compared. Pure: the clock is injected, nothing sleeps.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Session:
    failures: int = 0  # wrong guesses since the last success
    last: float = 0.0  # clock time of the last wrong guess


class AttemptLimiter:
    """Count wrong guesses per session id and per server; say how long a session must wait."""

    def __init__(
        self,
        per_session: int,
        per_server: int,
        *,
        window_s: float = 600.0,
        base_delay_s: float = 2.0,
        max_delay_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_session, self.per_server = per_session, per_server
        self.window_s, self.base_delay_s, self.max_delay_s = window_s, base_delay_s, max_delay_s
        self.clock = clock
        self._sessions: dict[str, _Session] = {}
        self._server: deque[float] = deque()  # times of wrong guesses within the window
        self._lock = threading.Lock()

    def _delay(self, over: int) -> float:
        """Return the wait after ``over`` guesses beyond the limit (1 -> base, doubling)."""
        return min(self.base_delay_s * 2.0 ** min(over - 1, 60), self.max_delay_s)

    def _prune(self, now: float) -> None:
        while self._server and self._server[0] <= now - self.window_s:
            self._server.popleft()
        stale = now - self.window_s - self.max_delay_s
        for sid in [s for s, v in self._sessions.items() if v.last < stale]:
            del self._sessions[sid]

    def wait_s(self, session: str) -> float:
        """Return the seconds ``session`` must wait before its next guess is compared (0: now)."""
        with self._lock:
            now = self.clock()
            self._prune(now)
            waits = [0.0]
            s = self._sessions.get(session)
            if s is not None and s.failures >= self.per_session:
                waits.append(s.last + self._delay(s.failures - self.per_session + 1) - now)
            if len(self._server) >= self.per_server:
                over = len(self._server) - self.per_server + 1
                waits.append(self._server[-1] + self._delay(over) - now)
            return max(waits)

    def failed(self, session: str) -> tuple[int, int]:
        """Record a wrong guess; return (this session's wrong guesses, the server's in the
        window), for the log."""
        with self._lock:
            now = self.clock()
            self._prune(now)
            s = self._sessions.setdefault(session, _Session())
            s.failures += 1
            s.last = now
            self._server.append(now)
            return s.failures, len(self._server)

    def succeeded(self, session: str) -> None:
        """Forget the session's wrong guesses (the server's count stays: it is a window)."""
        with self._lock:
            self._sessions.pop(session, None)
