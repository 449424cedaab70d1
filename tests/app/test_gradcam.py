"""The Mistakes page's opt-in Grad-CAM toggle under AppTest, on the bundled sample runs."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.runs import Run

from .conftest import open_page

pytestmark = pytest.mark.slow


def _urls(at: AppTest) -> list[str]:
    return [img.url for e in at.image for img in e.proto.imgs]


def test_toggle_replaces_the_visible_thumbnails_with_overlays(sample_runs: dict[str, Run]) -> None:
    at = open_page("mistakes", sample_runs["good"])  # DigitsCNN: has convolutions
    before = _urls(at)
    assert before and not at.toggle(key="mk_gradcam").value
    at.toggle(key="mk_gradcam").set_value(True).run()
    assert not at.exception, at.exception
    after = _urls(at)
    assert len(after) == len(before)
    assert not set(after) & set(before)  # every visible image is now an overlay
    assert not at.info


def test_mlp_run_says_why_and_keeps_thumbnails(sample_runs: dict[str, Run]) -> None:
    at = open_page("mistakes", sample_runs["overfit"])  # DigitsWideMLP: no convolution
    n_images = len(at.image)
    at.toggle(key="mk_gradcam").set_value(True).run()
    assert not at.exception, at.exception
    assert any("Grad-CAM needs a convolutional layer" in i.value for i in at.info)
    assert len(at.image) == n_images
