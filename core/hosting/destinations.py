"""Where a visitor was going when the identity provider's sign-in took them away.

OIDC sign-in leaves the app and comes back through Streamlit's ``/oauth2callback``, which
sends the browser to the app's root: a shared link's page and query are gone. So when a
visitor clicks "Log in", the view they opened is kept here, server-side, under a key the same
browser presents again after the redirect -- a hash of the token inside Streamlit's XSRF
cookie (``browser_key``), which Streamlit keeps for the browser across requests (only its
random mask changes) -- for ``TTL_S`` seconds; the first signed-in run on the bare root takes it
back (``Destinations.take``) and opens that view with that query.

Nothing here redirects anywhere: only a page name among the app's own views and a parsed query
of short strings are kept, so an entry planted by someone who could read another browser's
XSRF cookie does no more than sending that person a link. The entry grants nothing: the
person still signs in, and the page checks their role as always.
"""

from __future__ import annotations

import binascii
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping

TTL_S = 600  # a sign-in that takes longer than this lands on Overview, as before
MAX_ENTRIES = 1000  # anonymous visitors can click "Log in" at will: the oldest go first
MAX_KEYS, MAX_CHARS = 20, 500  # a query bigger than a link of the app's own is not kept


def browser_key(xsrf_cookie: str | None) -> str | None:
    """Return a hash of the token in Streamlit's XSRF cookie (``2|mask|masked|time``, or a
    version-1 bare hex token), the same for the browser on every request; None without one."""
    if not xsrf_cookie:
        return None
    value = xsrf_cookie.strip("\"'")
    try:
        if value.startswith("2|"):
            _, mask_hex, masked_hex, _stamp = value.split("|")
            mask, masked = binascii.a2b_hex(mask_hex), binascii.a2b_hex(masked_hex)
            if len(mask) != 4 or not masked:
                return None
            token = bytes(b ^ mask[i % 4] for i, b in enumerate(masked))
        else:
            token = binascii.a2b_hex(value)
    except (ValueError, binascii.Error):
        return None
    return hashlib.sha256(token).hexdigest() if token else None


class Destinations:
    """Views to reopen after an OIDC sign-in, keyed by ``browser_key``; thread-safe."""

    def __init__(
        self, pages: Iterable[str], *, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES
    ) -> None:
        self.pages = frozenset(pages)
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._kept: OrderedDict[str, tuple[float, str | None, dict[str, str]]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(
        self,
        browser: str | None,
        page: str | None,
        query: Mapping[str, str],
        *,
        now: float | None = None,
    ) -> bool:
        """Keep ``page`` (one of ``pages``, or None: the default view) and ``query`` for
        ``browser``; return whether it was kept (nothing to keep, an unknown page or an
        oversized query is not)."""
        if browser is None or (page is not None and page not in self.pages):
            return False
        query = {str(k): str(v) for k, v in query.items()}
        if page is None and not query:
            return False
        if len(query) > MAX_KEYS or sum(len(k) + len(v) for k, v in query.items()) > MAX_CHARS:
            return False
        now = time.time() if now is None else now
        with self._lock:
            self._kept[browser] = (now + self.ttl_s, page, query)
            self._kept.move_to_end(browser)
            while len(self._kept) > self.max_entries:
                self._kept.popitem(last=False)
        return True

    def take(
        self, browser: str | None, *, now: float | None = None
    ) -> tuple[str | None, dict[str, str]] | None:
        """Return and forget ``browser``'s (page, query) if kept and not expired."""
        if browser is None:
            return None
        now = time.time() if now is None else now
        with self._lock:
            kept = self._kept.pop(browser, None)
        if kept is None or kept[0] < now:
            return None
        return kept[1], kept[2]
