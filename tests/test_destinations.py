"""The view an OIDC sign-in took a visitor from, kept server-side for the same browser."""

from __future__ import annotations

import pytest
from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string

from core.hosting.destinations import MAX_CHARS, TTL_S, Destinations, browser_key
from ui.auth import view_of

PAGES = ("overview", "thresholds", "mistakes")


def test_browser_key_is_the_cookies_token_whatever_its_mask() -> None:
    # Streamlit re-masks the same token on every response (its own encoder is the reference).
    token = bytes(range(16))
    first, second = generate_xsrf_token_string(token, 1), generate_xsrf_token_string(token, 2)
    assert first != second
    assert browser_key(first) == browser_key(second) == browser_key(f'"{first}"')
    assert browser_key(token.hex()) == browser_key(first)  # a version-1 (bare hex) token
    assert browser_key(generate_xsrf_token_string(bytes(16), 1)) != browser_key(first)
    assert token.hex() not in (browser_key(first) or "")  # the token itself is not kept
    for junk in (None, "", "2|zz|00|1", "2|00|", "not hex", "2|0011|"):
        assert browser_key(junk) is None, junk


def test_kept_once_for_the_same_browser_until_it_expires() -> None:
    kept = Destinations(PAGES)
    assert kept.remember("b1", "thresholds", {"run": "r1", "class": "8"}, now=0)
    assert kept.take("b2", now=1) is None  # another browser
    assert kept.take("b1", now=1) == ("thresholds", {"run": "r1", "class": "8"})
    assert kept.take("b1", now=2) is None  # taken once
    assert kept.remember("b1", None, {"run": "r1"}, now=0)  # the root with a query
    assert kept.take("b1", now=TTL_S + 1) is None  # expired


@pytest.mark.parametrize(
    "browser, page, query",
    [
        (None, "thresholds", {"run": "r"}),  # no XSRF cookie: nothing to key on
        ("b", "../../evil", {}),  # only the app's own views
        ("b", "https://evil.example", {}),
        ("b", None, {}),  # the bare root: nothing to restore
        ("b", "thresholds", {"q": "x" * MAX_CHARS}),
        ("b", "thresholds", {str(i): "" for i in range(21)}),
    ],
)
def test_what_is_not_kept(browser: str | None, page: str | None, query: dict) -> None:
    kept = Destinations(PAGES)
    assert not kept.remember(browser, page, query)
    assert kept.take(browser) is None


def test_the_oldest_go_first_beyond_the_bound() -> None:
    kept = Destinations(PAGES, max_entries=2)
    for b in ("b1", "b2", "b3"):
        kept.remember(b, "mistakes", {}, now=0)
    assert kept.take("b1", now=1) is None
    assert kept.take("b3", now=1) == ("mistakes", {})


def test_view_of_an_address() -> None:
    assert view_of("https://host/thresholds") == "thresholds"
    assert view_of("https://host/base/thresholds/") == "thresholds"
    assert view_of("https://host/") is None
    assert view_of("https://host/nope") is None
    assert view_of(None) is None
