"""An analyst's session in one browser tab: every page by its sidebar link (no reloads), in
order, in reverse and again. Selections made on the first pass (a confusion cell and its
gallery page, a class filter, the split) must be there on every later visit, and no page may
show an exception. Waits are on the app's own state, never fixed sleeps.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.browser.conftest import WAIT_MS, Server, idle, pick

pytestmark = [pytest.mark.browser, pytest.mark.slow]
NAV = {  # sidebar link -> the page's title
    "Overview": "Overview",
    "Confusion matrix": "Confusion matrix",
    "Per-class metrics": "Per-class metrics",
    "Mistakes": "Mistakes",
    "Overfitting": "Overfitting",
    "Compare": "Compare runs",
    "Thresholds": "Thresholds",
    "Calibration": "Calibration",
    "Leakage": "Leakage",
    "Suspicious labels": "Suspicious labels",
    "All runs": "All runs",
}
ERRORS = '[data-testid="stException"]'  # the imbalanced model's verdict is red on purpose
SPLIT_PAGES = ("Overview", "Confusion matrix", "Per-class metrics", "Compare", "Thresholds",
               "Calibration")  # fmt: skip


def _after(page, shown) -> None:  # noqa: ANN001
    """Wait for ``shown`` (a locator the action must bring up), then for the run to end."""
    from playwright.sync_api import expect

    expect(shown.first).to_be_visible(timeout=WAIT_MS)
    idle(page)


def _go(page, link: str) -> None:
    """Click the sidebar link and wait for its page to finish; it must show no error."""
    page.get_by_test_id("stSidebarNav").get_by_text(link, exact=True).click()
    _after(page, page.get_by_role("heading", name=NAV[link], exact=True))
    assert page.locator(ERRORS).count() == 0, f"{link}: {page.locator(ERRORS).first.inner_text()}"


def _radio(page, group: str, option: str):  # noqa: ANN202
    return page.get_by_role("radiogroup", name=group).get_by_role("radio", name=option, exact=True)


def _to_page(page, n: int) -> None:
    box = page.get_by_role("spinbutton", name="Page")
    box.fill(str(n))
    box.press("Enter")
    _after(page, page.get_by_text(re.compile(rf"^Page {n} of \d+$")))


def _chips(page, label: str) -> list[str]:
    """Return the options chosen in the multiselect ``label``."""
    widget = page.get_by_test_id("stMultiSelect").filter(has=page.get_by_text(label, exact=True))
    return widget.first.inner_text().removeprefix(label).split()


def _interact(page, link: str, cell: tuple[str, str], n_mistakes: int) -> None:
    """First pass: move the page away from what it opens on."""
    if link == "Overview":  # the split, shared by the pages that pick one
        _radio(page, "Split", "train").click()
        _after(page, page.get_by_role("heading", name="Classes on the train split"))
    elif link == "Confusion matrix":
        pick(page, "True class", cell[0])
        _after(page, page.get_by_role("heading", name=re.compile(f"true '{cell[0]}' predicted")))
        pick(page, "Predicted class", cell[1])
        _after(page, page.get_by_role("heading", name=re.compile(_cell_title(cell))))
        _to_page(page, 2)
    elif link == "Mistakes":
        pick(page, "True class", "8")
        _after(page, page.get_by_text(f"{n_mistakes} misclassified images match"))
        _to_page(page, 2)
    elif link == "Thresholds":
        pick(page, "Class", "8")
        _after(page, page.get_by_text(re.compile(r"'8' images flagged")))
    elif link == "Suspicious labels":
        _radio(page, "Split", "train").click()
        _after(page, page.get_by_text(re.compile(r"among [\d,]+ train images")))


def _cell_title(cell: tuple[str, str]) -> str:
    return rf"images: true '{cell[0]}' predicted '{cell[1]}'"


def _restored(page, link: str, cell: tuple[str, str]) -> None:
    """Later passes: the page shows what the first pass left it at."""
    from playwright.sync_api import expect

    if link in SPLIT_PAGES:
        expect(_radio(page, "Split", "train")).to_be_checked()
    if link == "Confusion matrix":
        expect(page.get_by_role("heading", name=re.compile(_cell_title(cell)))).to_be_visible()
        expect(page.get_by_text(re.compile(r"^Page 2 of \d+$"))).to_be_visible()
    elif link == "Mistakes":
        assert _chips(page, "True class") == ["8"]
        expect(page.get_by_text(re.compile(r"^Page 2 of \d+$"))).to_be_visible()
    elif link == "Thresholds":
        expect(page.get_by_role("combobox", name="Class", exact=True)).to_have_value("8")
    elif link == "Suspicious labels":
        expect(_radio(page, "Split", "train")).to_be_checked()


def test_every_page_keeps_its_selections_across_sidebar_navigation(server: Server, page) -> None:
    metas = {d.name: json.loads((d / "meta.json").read_text()) for d in server.runs_dir.iterdir()
             if (d / "meta.json").is_file()}  # fmt: skip
    rid = next(r for r, m in metas.items() if m["checkpoint"]["name"] == "imbalanced.safetensors")
    cell = ("3", "3")  # on train: 6 gallery pages; the page opens on the most confused pair
    cm = json.loads((server.runs_dir / rid / "metrics.json").read_text())["splits"]["test"]
    n_mistakes = sum(cm["confusion_matrix"][8]) - cm["confusion_matrix"][8][8]  # of '8', test
    page.goto(f"{server.url}/?run={rid}")  # the only page load: from here on, sidebar clicks
    _after(page, page.get_by_role("heading", name="Overview", exact=True))

    links = list(NAV)
    for link in links:
        _go(page, link)
        _interact(page, link, cell, n_mistakes)
        _restored(page, link, cell)
    for link in [*reversed(links[:-1]), *links[1:]]:  # back to Overview, and forward again
        _go(page, link)
        _restored(page, link, cell)
    assert f"run={rid}" in page.url
