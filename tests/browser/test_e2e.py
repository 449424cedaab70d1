"""End to end in headless Chromium: every page, an upload evaluated, a confusion cell opened.

Each page's screenshot lands in tests/screenshots/ (ignored by git; the README's copies live
in docs/). Under CI=true these tests run, never skip (see conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import torch
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect
from safetensors.torch import load_file

from core.engine.sample import CHECKPOINTS
from tests.browser.conftest import SHOTS, WAIT_MS, Server, idle, loaded, pick, run_id

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PAGES = {
    "": "Overview",
    "confusion": "Confusion matrix",
    "per_class": "Per-class metrics",
    "mistakes": "Mistakes",
    "overfitting": "Overfitting",
    "compare": "Compare runs",
    "thresholds": "Thresholds",
    "calibration": "Calibration",
    "leakage": "Leakage",
    "suspicious": "Suspicious labels",
    "runs": "All runs",
}
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
SCREENSHOTS_ONLY = pytest.mark.skipif(
    os.environ.get("CLASSLENS_SCREENSHOTS") != "1",
    reason="asserted by AppTests; run for its screenshot by `make screenshots`",
)
VERDICT_RED = (
    '[class*="st-key-verdict"] [data-testid="stAlertContentError"]'  # a red verdict, on purpose
)


def error_count(page) -> int:  # noqa: ANN001
    """Return how many exceptions and error messages the page shows (red verdicts aside)."""
    return page.locator(ERRORS).count() - page.locator(VERDICT_RED).count()


def settle(page, timeout: float = 60) -> None:
    """Wait until Streamlit has finished running the script (bounded): a status-widget poll
    and a pause for plotly (the screenshots' wait; the tests here wait with conftest's
    ``loaded``/``idle`` on what the page must show and the app's script state)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout * 1000)
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:  # idle for three looks, 0.25 s apart
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        quiet = 0 if running else quiet + 1
        time.sleep(0.25)
    page.wait_for_timeout(600)  # plotly draws after the script finishes


def shoot(page, name: str) -> Path | None:
    """Save the whole page as tests/screenshots/<name>.png (Streamlit scrolls inside stMain,
    so the viewport grows to fit) when CLASSLENS_SCREENSHOTS=1 (`make screenshots`); return
    its path, or None in a plain test run, which then skips the few seconds each costs."""
    if os.environ.get("CLASSLENS_SCREENSHOTS") != "1":
        return None
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate(
        "() => document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight || 1000"
    )
    page.set_viewport_size({"width": size["width"], "height": min(max(height, 800), 5000)})
    settle(page)
    charts = page.locator('[data-testid="stPlotlyChart"]').count()
    deadline = time.monotonic() + 20  # bounded: plotly draws each chart after the script ends
    while page.locator(".js-plotly-plot .main-svg").count() < charts:
        if time.monotonic() > deadline:
            break
        page.wait_for_timeout(300)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    return path


def test_every_page_renders_without_errors(server: Server, page) -> None:
    rid = run_id(server, "good.safetensors")
    for path, title in PAGES.items():
        page.goto(f"{server.url}/{path}?run={rid}")
        loaded(page, page.get_by_role("heading", name=title))
        assert error_count(page) == 0, f"error element on /{path}"
        assert f"run={rid}" in page.url, "the chosen run must stay in the URL"
        shoot(page, f"good-{path or 'overview'}")
    # On All runs (the last page): the sidebar's picker chooses another run by its label, and
    # its id (the store's, read independently) replaces the URL's.
    other = run_id(server, "imbalanced.safetensors")
    page.get_by_role("combobox", name="Stored runs").click()
    page.get_by_role("option", name=re.compile(re.escape("imbalanced.safetensors"))).click()
    expect(page).to_have_url(re.compile(rf"run={other}\b"), timeout=WAIT_MS)
    loaded(page, page.get_by_role("heading", name="All runs"))
    assert error_count(page) == 0


@pytest.mark.parametrize(
    ("checkpoint", "path", "verdict"),
    [
        # Imbalanced Overview and Mistakes: their verdicts are AppTests' (test_overview,
        # test_mistakes) and test_journey opens both pages in a browser without an error,
        # so here they only take the README's screenshots (`make screenshots`).
        pytest.param(
            "imbalanced.safetensors", "", "recall on '8'", marks=SCREENSHOTS_ONLY, id="overview"
        ),
        pytest.param(
            "imbalanced.safetensors",
            "mistakes",
            "misclassified images match",
            marks=SCREENSHOTS_ONLY,
            id="mistakes",
        ),
        pytest.param(
            "overfit.safetensors", "overfitting", "Overfitting: train accuracy", id="overfitting"
        ),
        # the sample's degraded scanner found first (asserted by tests/app/test_slices.py)
        pytest.param(
            "good.safetensors",
            "slices",
            "Images with scanner is D",
            marks=SCREENSHOTS_ONLY,
            id="slices",
        ),
        # the README's cluster cards (numbers asserted by tests/app/test_embedding_map.py)
        pytest.param(
            "overfit.safetensors",
            "failure_clusters",
            "The worst failure cluster holds",
            marks=SCREENSHOTS_ONLY,
            id="failure_clusters",
        ),
    ],
    # Confusion and Per-class of the imbalanced model: the cell test and the AppTests cover
    # them (the suite keeps near 10 minutes)
)
def test_the_lessons_show_on_the_sample_models(
    server: Server, page, checkpoint: str, path: str, verdict: str
) -> None:
    """The flawed sample models: verdict boxes may be red, but nothing may crash."""
    rid = run_id(server, checkpoint)
    page.goto(f"{server.url}/{path}?run={rid}")
    loaded(page, page.get_by_text(verdict))
    assert page.locator('[data-testid="stException"]').count() == 0
    shoot(page, path or "overview")


def test_deep_link_on_first_visit_opens_the_full_app(server: Server, page) -> None:
    rid = run_id(server, "imbalanced.safetensors")
    page.goto(f"{server.url}/per_class?run={rid}")  # this page's first request to the app
    # Waits on what the page must show (a count taken right after navigating failed on a busy
    # machine): the page, the whole app's navigation, and the linked run chosen.
    heading = page.get_by_role("heading", name="Per-class metrics").first
    expect(heading).to_be_visible(timeout=WAIT_MS)
    nav = page.get_by_test_id("stSidebarNav").get_by_text("Overview")
    expect(nav).to_have_count(1, timeout=WAIT_MS)
    chosen = page.get_by_role("combobox", name="Stored runs")
    expect(chosen).to_have_value(re.compile(r"^imbalanced\.safetensors"), timeout=WAIT_MS)


def test_confusion_cell_selection_shows_that_cells_images(server: Server, page) -> None:
    rid = run_id(server, "imbalanced.safetensors")
    page.goto(f"{server.url}/confusion?run={rid}")
    metrics = json.loads((server.runs_dir / rid / "metrics.json").read_text())
    cm = metrics["splits"]["test"]["confusion_matrix"]
    # click the heatmap cell true '8' -> predicted '6' (its invisible overlay marker)
    points = page.locator(".js-plotly-plot .scatterlayer path.point")
    points.first.wait_for(state="attached", timeout=WAIT_MS)
    idle(page)
    assert points.count() == 100
    points.nth(8 * 10 + 6).click(force=True)
    clicked = page.get_by_role("heading", name=re.compile(r"images: true '8' predicted '6'"))
    loaded(page, clicked)
    assert clicked.inner_text().startswith(f"{cm[8][6]} images")
    assert page.locator('[data-testid="stImage"]').count() == min(cm[8][6], 24)
    # choose true '8', predicted '0' with the cell pickers
    pick(page, "True class", "8")
    pick(page, "Predicted class", "0")
    expected = cm[8][0]
    heading = page.get_by_role("heading", name=re.compile(r"images: true '8' predicted '0'"))
    heading.wait_for(timeout=30_000)
    assert heading.inner_text().startswith(f"{expected} images")
    thumbs = page.locator('[data-testid="stImage"]')
    expect(thumbs).to_have_count(min(expected, 24), timeout=WAIT_MS)
    assert error_count(page) == 0
    shoot(page, "confusion-cell")


def test_upload_two_checkpoints_at_once_for_comparison(
    server: Server, page, tmp_path: Path
) -> None:
    # Two checkpoints the store has not seen: the imbalanced and overfit weights re-saved as
    # torch.save files (the single-file "Evaluate" path is the hosted editor's test and AppTests').
    files = []
    for name in ("imbalanced", "overfit"):
        path = tmp_path / f"batch_{name}.pt"
        meta = json.loads(_safetensors_meta(CHECKPOINTS[name]))
        torch.save({"state_dict": load_file(str(CHECKPOINTS[name])), **meta}, path)
        files.append(str(path))

    page.goto(server.url)
    loaded(page, page.get_by_text("New run"))
    page.get_by_text("New run").click()
    upload = page.get_by_role("radiogroup", name="Checkpoint").get_by_text("Upload", exact=True)
    loaded(page, upload)
    upload.click()
    uploader = page.locator('input[type="file"]')  # the form has none before Upload is chosen
    expect(uploader).to_have_count(1, timeout=WAIT_MS)
    idle(page)
    uploader.set_input_files(files)
    start = page.get_by_role("button", name="Evaluate all")
    expect(start).to_be_enabled(timeout=WAIT_MS)  # both files read (each in a vetting child)
    idle(page)
    start.click()
    chosen = page.get_by_role("combobox", name="Stored runs")
    opens = expect(chosen, "the last evaluated upload must open")
    opens.to_have_value(re.compile("batch_"), timeout=300_000)  # two evaluations, busy CPU
    idle(page)
    opened = (
        "batch_overfit.pt" if "batch_overfit.pt" in chosen.input_value() else "batch_imbalanced.pt"
    )
    assert page.get_by_text(opened).count() >= 1  # the overview's run caption
    assert error_count(page) == 0
    shoot(page, "after-upload")
    options = page.get_by_role("option")
    for _ in range(6):  # bounded: a rerun (Overview's background checks) can close the list
        chosen.click()
        try:
            options.first.wait_for(timeout=5_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    labels = [options.nth(i).inner_text() for i in range(options.count())]
    assert any("batch_imbalanced.pt" in t for t in labels), labels
    assert any("batch_overfit.pt" in t for t in labels), labels
    page.keyboard.press("Escape")
    assert error_count(page) == 0


def _safetensors_meta(path: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()["classlens"]
