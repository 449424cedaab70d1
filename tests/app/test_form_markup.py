"""A file name that is markdown, in the New run form's error: shown as typed (ui.text.md_text)."""

from __future__ import annotations

from pathlib import Path

from core.runs import Run
from tests.app.conftest import open_page
from tests.test_form_errors import shown

NAME = "evil_[x](http:e)*b*.pt"  # tests/test_form_errors.py's upload name, "/" dropped: a file name


def test_a_checkpoint_path_named_as_markup_shows_as_typed(
    sample_runs: dict[str, Run], tmp_path: Path
) -> None:
    at = open_page("overview", sample_runs["good"])
    at.sidebar.radio(key="ck_src").set_value("Server path").run()
    at.sidebar.text_input(key="ck_path").input(str(tmp_path / NAME)).run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.sidebar.error]
    assert len(errors) == 1, errors
    kinds, text = shown(errors[0])
    assert kinds == set(), kinds  # no link, no emphasis
    assert text == f"checkpoint not found: {tmp_path / NAME}.", text
