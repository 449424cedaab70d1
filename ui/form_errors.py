"""Engine errors in the New run form's words: the one mapping from CLI flags to form fields.

``core`` raises ClassLensError with the CLI's wording ("pass --trust-checkpoint", "Pass the
--channels, --image-size (and --mean/--std) it was trained with"), which is right on a terminal
and wrong in a form that has no flags. ``for_form`` rewrites those phrases to name the form's
fields; messages are never duplicated here, only their flag phrases translated.

``for_form`` returns markdown: the engine's plain text (which may quote an uploaded file's name
or a typed path) through ``ui.text.md_text``, so a file called ``evil_[x](http://e)*b*.pt``
shows as typed, with only the form's own markup (the fields in bold) added. Every New run
message reaches the screen through it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ui.text import md_text

TRUST_ONE, TRUST_MANY = "I trust this file", "I trust these files"  # the form's checkbox labels

# (pattern, replacement) applied in order; "{trust}" is the trust checkbox's label.
_PHRASES: tuple[tuple[str, str], ...] = (
    (r"[Pp]ass --trust-checkpoint", "tick **{trust}**"),
    (
        r"Pass the --channels, --image-size \(and --mean/--std\) it was trained with",
        "Set **Image size**, **Mean** and **Std** to what it was trained with, or click "
        "**Probe preprocessing**",
    ),
    (r"Pass one of these to --arch", "Type one of these in **Architecture**"),
    (r"[Pp]ass the right --arch", "type the right name in **Architecture**"),
    (
        r"[Pp]ass --arch NAME(?: \(`python -m core archs` lists them\))?",
        "type a name in **Architecture**",
    ),
    (r"Check the path passed to --checkpoint", "Check the checkpoint path"),
    (r"Check the path passed to --data", "Check the dataset folder"),
    (
        r"Pass --batch-size 1",
        "This form has no batch size: evaluate it with the CLI and --batch-size 1",
    ),
    (r"pass (\d+) comma-separated value", r"type \1 comma-separated value"),
    (r"`python -m core archs`", "`python -m core archs`"),  # the engine's one code span
)
# Flags left after the phrases: the form field each one is.
_FIELDS = {
    "--image-size": "**Image size**",
    "--mean": "**Mean**",
    "--std": "**Std**",
    "--resize": "**Resize**",
    "--arch": "**Architecture**",
    "--trust-checkpoint": "**{trust}**",
}


_HELD = "\ue000"  # a private-use character around a placeholder: md_text leaves it alone


def for_form(message: str, *, trust: str = TRUST_ONE) -> str:
    """Return ``message`` (an engine error, plain text) as markdown: shown as typed
    (``md_text``), its CLI flag phrases rewritten to name the New run form's fields in bold."""
    kept: list[str] = []  # the form's markdown, held out of the escaping under a placeholder

    def held(markdown: str) -> Callable[[re.Match[str]], str]:
        def hold(match: re.Match[str]) -> str:
            kept.append(match.expand(markdown))
            return f"{_HELD}{len(kept) - 1}{_HELD}"

        return hold

    message = message.replace(_HELD, "")  # only this function's placeholders carry it
    for pattern, replacement in _PHRASES:
        message = re.sub(pattern, held(replacement.replace("{trust}", trust)), message)
    for flag, field in _FIELDS.items():
        message = re.sub(re.escape(flag) + r"\b", held(field.replace("{trust}", trust)), message)
    return re.sub(f"{_HELD}(\\d+){_HELD}", lambda m: kept[int(m[1])], md_text(message))
