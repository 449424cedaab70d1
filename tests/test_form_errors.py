"""Engine errors shown in the New run form name the form's fields, not CLI flags."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from core.engine import inference, models
from core.engine.preprocessing import Preprocessing
from core.errors import ClassLensError
from tests.conftest import make_model
from ui.form_errors import TRUST_MANY, for_form

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
