"""The one way a name reaches rendered markdown: escaped, or as a code span it cannot close.

Streamlit renders markdown in st.markdown / caption / alerts / headings and in every widget's
label and help, radio options, expander and tab labels. Class names, run (checkpoint) names,
paths, metadata columns and values, user names and anything read from a URL are user strings:
put them through ``md_escape`` (or ``md_code``) at the point they join markdown, so a class
called ``[x](http://e) **b** <img src=x>`` shows as typed instead of a link, bold and an image.
tests/app/test_security.py walks every page's rendered text for such names.

Messages that quote such strings (engine errors naming an uploaded file or a path) go through
``md_text`` as a whole: it escapes what can make markup and leaves the rest readable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def md_escape(text: str) -> str:
    """Return ``text`` safe inside Streamlit markdown (class names may hold * _ [ ] etc.)."""
    return "".join("\\" + ch if ch in "\\`*_{}[]()#+-.!|~:$<>" else ch for ch in str(text))


_MARKUP = frozenset("\\`*{}[]<>#|~$&@")  # markup wherever they stand (and "_", see below)
_LINE_START = re.compile(r"^(\s*)([-+=]|\d+[.)])", re.MULTILINE)  # list, setext marker
_NOT_INTRAWORD_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")


def md_text(text: str) -> str:
    """Return a plain-text message (an engine error quoting a file name or path) as markdown
    that shows it as typed. Every character that can start markup anywhere is escaped, as
    ``md_escape`` does (``\\ ` * { } [ ] < > # | ~ $ & @``, ``_`` except inside a word, where
    it cannot emphasise); ``. - ( ) ! : +`` are escaped only where they can: a line's list or
    setext marker, ``www.`` and ``:`` before a letter or ``/`` (``http://``, ``:smile:``,
    ``:material/…:``, ``:red[``). So ``evil_[x](http://e)*b*.pt`` shows as typed while
    ``metadata.csv does not exist: check the path`` reads the same in the markdown source."""
    text = "".join("\\" + ch if ch in _MARKUP else ch for ch in str(text))
    text = _NOT_INTRAWORD_UNDERSCORE.sub(r"\\_", text)
    text = _LINE_START.sub(lambda m: m[1] + m[2][:-1] + "\\" + m[2][-1], text)
    text = re.sub(r"(?i)\b(www)\.", r"\1\\.", text)
    return re.sub(r":(?=[A-Za-z/])", r"\\:", text)


def md_code(text: str) -> str:
    """Return ``text`` as one markdown code span that no backtick inside it can close (the
    fence is one backtick longer than its longest run), for names shown as `code`."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    pad = " " if longest else ""
    return f"{'`' * (longest + 1)}{pad}{text}{pad}{'`' * (longest + 1)}"


def md_names(text: str, class_names: Sequence[str]) -> str:
    """Return ``text`` (markdown from core, which quotes class names as 'name') with every
    quoted class name escaped, so a class called **bold** or <script> shows as typed. Other
    strings core quotes the same way (a slice's label in the health headline) may be passed
    among ``class_names``."""
    for name in sorted(set(class_names), key=len, reverse=True):
        escaped = md_escape(name)
        if escaped != name:
            text = text.replace(f"'{name}'", f"'{escaped}'")
    return text
