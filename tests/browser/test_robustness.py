"""The Robustness page in a real browser (`make screenshots` only: the AppTests in
tests/app/test_robustness.py assert its numbers): an editor starts the derived runs, the
chart and the score appear without an error; its screenshot is the README's."""

from __future__ import annotations

import time

import pytest

from core.runs import RunStore
from tests.browser.conftest import WAIT_MS, Server, idle
from tests.browser.test_e2e import SCREENSHOTS_ONLY, error_count, shoot

pytestmark = [pytest.mark.browser, pytest.mark.slow, SCREENSHOTS_ONLY]


def test_robustness_chart_after_an_editor_starts_it(server: Server, page) -> None:  # noqa: ANN001
    run = next(
        r
        for r in RunStore(server.runs_dir).list()
        if r.meta["checkpoint"]["name"] == "good.safetensors"
    )
    page.goto(f"{server.url}/robustness?run={run.run_id}")
    start = page.get_by_role("button", name="Compute them")
    start.wait_for(timeout=WAIT_MS)
    idle(page)
    start.click()
    page.get_by_text("Classes that degrade most").wait_for(timeout=WAIT_MS)
    # every derived run stored: no progress line for a few seconds (bounded: 25 runs of 500
    # digits; the page reruns every half second while they compute)
    deadline, quiet = time.monotonic() + 900, 0
    while quiet < 4:
        assert time.monotonic() < deadline, "the derived runs kept computing"
        quiet = 0 if page.get_by_text("Corrupted copies:").count() else quiet + 1
        page.wait_for_timeout(1000)
    idle(page)
    assert error_count(page) == 0
    assert page.get_by_text("mRCE").count() >= 1
    shoot(page, "robustness")
