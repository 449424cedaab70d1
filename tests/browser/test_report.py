"""The exported report opens offline: file:// in headless Chromium with every network request
blocked (and counted), showing the verdict and a rendered plotly confusion matrix."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.engine.evaluate import evaluate
from core.figures.report import build_report
from tests.browser.conftest import SHOTS
from tests.conftest import classlens_meta, make_model, save_safetensors, write_dataset

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_report_opens_offline_with_verdict_and_confusion_matrix(
    browser, tmp_path: Path, runs_dir: Path
) -> None:
    data = write_dataset(tmp_path / "data", classes=("<script>", "cat", "dog"), per_class=6)
    ckpt = save_safetensors(
        make_model(seed=3), tmp_path / "m.safetensors", classlens_meta(class_names=None)
    )
    run = evaluate(ckpt, data, runs_dir=runs_dir, num_workers=0)
    report = tmp_path / "report.html"
    report.write_text(build_report(run, "test"), encoding="utf-8")

    context = browser.new_context(viewport={"width": 1280, "height": 1000}, offline=True)
    attempted: list[str] = []

    def block(route) -> None:  # noqa: ANN001
        attempted.append(route.request.url)
        route.abort()

    context.route(lambda url: not url.startswith(("file:", "data:")), block)
    dialogs: list[str] = []
    page = context.new_page()
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(report.as_uri(), timeout=60_000)
        verdict = page.locator("#verdict")
        verdict.wait_for(timeout=30_000)
        assert verdict.is_visible()
        assert verdict.inner_text().strip()
        heatmap = page.locator("#confusion.js-plotly-plot")
        heatmap.wait_for(timeout=30_000)
        assert heatmap.is_visible()
        page.locator("#confusion .heatmaplayer image, #confusion .hm").first.wait_for(
            state="attached", timeout=30_000
        )
        # The class named <script> is text on the page, not a tag that ran.
        assert page.locator("#per-class td", has_text="<script>").count() == 1
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "report.png"), full_page=True)
    finally:
        context.close()
    assert attempted == [], f"the report tried the network: {attempted}"
    assert dialogs == []
