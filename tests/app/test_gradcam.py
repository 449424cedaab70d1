"""The Mistakes page's opt-in Grad-CAM toggle under AppTest, on the bundled sample runs."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block

from core.runs import Run

from .conftest import open_page

pytestmark = pytest.mark.slow


def _urls(at: AppTest) -> list[str]:
    return [img.url for e in at.image for img in e.proto.imgs]


def _grid_place(at: AppTest) -> int:
    """Return the index in the main area of the gallery's first row (what Streamlit's browser
    matches the previous run's elements by)."""
    return next(i for i, n in at.main.children.items() if isinstance(n, Block) and n.image)


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


def test_two_sessions_share_one_computation_and_never_wait_for_it(
    sample_runs: dict[str, Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second viewer of the same Grad-CAM page joins the first one's computation; while it
    runs, a page shows progress over the plain thumbnails instead of blocking its script."""
    import threading

    from core.hosting import tasks
    from core.images import gradcam

    tasks.clear()
    gate, calls = threading.Event(), []
    real = gradcam.overlays

    def slow_overlays(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        gate.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(gradcam, "overlays", slow_overlays)
    monkeypatch.setattr("ui.tasks.POLL_S", 0.05)
    monkeypatch.setattr("ui.tasks.rerun_if_pending", lambda poll=0: None)  # one rerun at a time
    sessions = [open_page("mistakes", sample_runs["good"]) for _ in range(2)]
    before = _urls(sessions[0])
    place = _grid_place(sessions[0])  # with the toggle off: the page has the bar's slot too
    for at in sessions:
        at.toggle(key="mk_gradcam").set_value(True).run()
        assert not at.exception, at.exception
        assert any("Computing Grad-CAM" in p.proto.text for p in at.get("progress"))
        assert _urls(at) == before  # plain thumbnails while it computes
        assert _grid_place(at) == place  # turning it on moved nothing below
        assert at.main.children[place - 1].type == "progress"  # the bar just above
    gate.set()
    task = next(t for t in tasks._RUNNING.values()) if tasks._RUNNING else None
    if task is not None:
        assert task.wait(60)
    for at in sessions:
        at.run()
        assert not at.exception, at.exception
        assert not at.get("progress")
        assert not set(_urls(at)) & set(before)  # overlays now
        # The bar had a slot the block always draws: the gallery keeps its place once done
        # (pushed down while running, the browser kept the previous run's rows beside the
        # new ones between reruns).
        assert _grid_place(at) == place
    assert len(calls) == 1  # one computation for both sessions
