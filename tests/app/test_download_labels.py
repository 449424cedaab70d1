"""Download labels render markdown: a class name in ``what`` shows as typed, never as a link
or a remote image."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _labels(what: str) -> list[str]:
    def page(what: str) -> None:
        import pandas as pd

        from ui import downloads

        downloads.offer(pd.DataFrame({"a": [1]}), what=what, stem="x", key="t")

    at = AppTest.from_function(page, args=(what,)).run()
    assert not at.exception, at.exception
    return [b.proto.label for b in at.get("download_button")]


def test_a_link_or_image_in_a_name_is_escaped_in_download_labels() -> None:
    for name in ("[x](http://evil)", "![i](http://e/i.png)"):
        labels = _labels(f"Curve points of '{name}'")
        assert len(labels) == 2
        for label in labels:
            assert "](" not in label.replace("\\]\\(", "")  # every bracket and paren escaped
            assert "\\[" in label and "\\(http" in label
