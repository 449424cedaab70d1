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


def test_md_code_keeps_any_name_inside_one_code_span() -> None:
    """Parsed as CommonMark (as Streamlit's frontend does), the span is one code node holding
    the name exactly: no link, no image, whatever backticks the name holds."""
    from markdown_it import MarkdownIt

    from ui.gallery import md_code

    for name in ("plain.pt", "a`[x](http://evil)`b", "``![i](http://e/i.png)", "`", "x```y"):
        tokens = MarkdownIt("commonmark").parseInline(f"file: {md_code(name)}")[0].children
        kinds = [t.type for t in tokens]
        assert kinds == ["text", "code_inline"], (name, kinds)
        assert tokens[1].content == name, (name, tokens[1].content)
