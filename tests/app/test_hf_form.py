"""New run form: a Hugging Face save_pretrained folder typed as the server path is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.runs import Run
from tests.app.conftest import open_page


@pytest.mark.slow
def test_a_hugging_face_folder_on_the_server_is_read_by_the_form(
    sample_runs: dict[str, Run], tmp_path: Path
) -> None:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    folder = tmp_path / "vit"
    config = ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, image_size=32, patch_size=8,
                       num_labels=10)  # fmt: skip
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)

    at = open_page("overview", sample_runs["good"])
    at.sidebar.radio(key="ck_src").set_value("Server path").run()
    at.sidebar.text_input(key="ck_path").input(str(folder)).run()

    assert not at.exception
    assert not [e.value for e in at.sidebar.error]
    captions = " ".join(c.value for c in at.sidebar.caption)
    # (the architecture is markdown-escaped: it comes from the user's file)
    assert r"huggingface · hf\:ViTForImageClassification · 3 channel(s)" in captions
    assert "image size read from the file" in captions
