"""Engine errors shown in the New run form name the form's fields, not CLI flags."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from markdown_it import MarkdownIt

from core.engine import inference, models
from core.engine.preprocessing import Preprocessing
from core.errors import ClassLensError
from core.hosting.safety import save_checkpoint_upload
from core.hosting.settings import Settings
from tests.conftest import make_model
from ui.form_errors import TRUST_MANY, for_form
from ui.text import md_text

EVIL_FILE = "evil_[x](http://e)*b*.pt"
# CommonMark (Streamlit's frontend) with GFM's strikethrough and tables
MD = MarkdownIt("commonmark").enable(["strikethrough", "table"])
FLAG = re.compile(r"--(trust-checkpoint|image-size|mean|std|arch|channels|resize)\b")


def _message(call) -> str:  # noqa: ANN001 - a zero-argument callable that raises
    with pytest.raises(ClassLensError) as info:
        call()
    return str(info.value)


def test_untrusted_code_asks_to_tick_the_trust_box(tmp_path: Path) -> None:
    path = tmp_path / "m.torchscript.pt"
    torch.jit.script(make_model()).save(str(path))
    raw = _message(lambda: models.load_checkpoint(path))
    assert "--trust-checkpoint" in raw  # the engine speaks CLI
    text = for_form(raw)
    assert "tick **I trust this file** only if you trust where it came from" in text
    assert not FLAG.search(text)
    assert "tick **I trust these files**" in for_form(raw, trust=TRUST_MANY)


def test_a_wrong_input_size_asks_for_the_form_fields() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 3))
    prep = Preprocessing(image_size=224, channels=1, mean=(0.5,), std=(0.5,))
    raw = _message(lambda: inference.output_width(model, prep, torch.device("cpu")))
    text = for_form(raw)
    assert "cannot run on 1-channel 224x224 images" in text
    assert "Set **Image size**, **Mean** and **Std** to what it was trained with" in text
    assert "**Probe preprocessing**" in text and not FLAG.search(text)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"channels": 1, "mean": (0.1, 0.2, 0.3), "std": (0.5,)},
            "**Mean** has 3 value(s) but the model takes 1 channel(s): type 1 comma-separated",
        ),
        ({"std": (0.2, 0.0, 0.2)}, "**Std** values must be positive"),
    ],
    ids=["mean-count", "std-positive"],
)
def test_preprocessing_errors_name_the_field(kwargs: dict, expected: str) -> None:
    text = for_form(_message(lambda: Preprocessing(**kwargs)))
    assert expected in text and not FLAG.search(text)


def test_unknown_architecture_points_to_the_architecture_field() -> None:
    text = for_form(_message(lambda: models.archs.get("resnet1")))
    assert "in **Architecture**" in text and not FLAG.search(text)


def test_messages_without_flags_are_unchanged() -> None:
    raw = "checkpoint has 10 outputs but the dataset has 3 classes (a, b, c)."
    assert for_form(raw) == raw


def shown(markdown: str) -> tuple[set[str], str]:
    """Return the kinds of markdown nodes ``markdown`` renders to, and the text a reader sees
    (bold markers dropped): one paragraph of text nodes is a message shown as typed."""
    tokens = MD.parse(markdown)
    kinds = {t.type for t in tokens} - {"paragraph_open", "inline", "paragraph_close"}
    inline = [c for t in tokens if t.type == "inline" for c in t.children or []]
    kinds |= {c.type for c in inline} - {"text", "softbreak"}
    text = "".join("\n" if c.type == "softbreak" else c.content for c in inline)
    return kinds, text


@pytest.mark.parametrize("name", [EVIL_FILE, EVIL_FILE.replace("//", "")])
def test_an_uploaded_files_name_shows_as_typed_in_the_form_error(name: str) -> None:
    # what ui.new_run.save_checkpoint_uploads lists as refused: the engine's message
    refused = _message(lambda: save_checkpoint_upload(name, b"not a model", Settings()))
    stored = Path(name).name  # the browser's name up to its last "/": "e)*b*.pt"
    assert refused.startswith(f"{stored} is not a checkpoint by its content")
    assert "em_open" in shown(refused)[0], "unescaped, the name is markup"
    assert shown(for_form(refused, trust=TRUST_MANY)) == (set(), refused)


def test_the_forms_bold_is_kept_beside_an_escaped_name() -> None:
    raw = f"{EVIL_FILE} runs code when loaded: pass --trust-checkpoint only if you trust it."
    text = for_form(raw)
    assert "tick **I trust this file** only if you trust it." in text
    kinds, seen = shown(text)
    assert kinds == {"strong_open", "strong_close"}
    assert (
        seen == f"{EVIL_FILE} runs code when loaded: tick I trust this file only if you trust it."
    )
    code = for_form("unknown 'x': run `python -m core archs` for all.")
    assert "run `python -m core archs` for all" in code  # the engine's one code span stays one


@pytest.mark.parametrize(
    "message",
    [
        EVIL_FILE,
        "__init__.pt and *x* and **y** and _z_ and ~~s~~ and `c` and $x^2$ and a|b",
        "<img src=x onerror=alert(1)> &amp; &lt; \\*not bold\\*",
        "![i](http://e/i.png) [r]: http://e :red[x] :material/home: :smile:",
        "www.evil.com and me@evil.com and https://evil.com/x",
        "# heading\n- item\n+ item\n1. one\n2) two\n> quote\n===\n|a|b|\n|-|-|",
    ],
    ids=["file", "emphasis", "html", "links", "autolinks", "blocks"],
)
def test_md_text_renders_any_message_as_typed(message: str) -> None:
    assert shown(md_text(message)) == (set(), message)


def test_md_text_leaves_plain_messages_readable() -> None:
    for plain in (
        "missing.csv does not exist: check the path.",
        "has no 'path' column (found: 'file', 'site')",
        "/tmp/pytest-of-x/test_refused_0/root/a.pt: '..' are not allowed (1-channel, 1,024 MB)!",
    ):
        assert md_text(plain) == plain
    # GFM's autolink literals (Streamlit renders them; commonmark above does not): broken up
    assert md_text("www.evil.com me@evil.com https://e") == r"www\.evil.com me\@evil.com https\://e"
