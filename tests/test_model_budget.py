"""A checkpoint cannot make the server allocate far beyond its own size (issue 13, item 8).

A small safetensors file whose head declares [1_000_000, 1] asks for a million classes; built
for real, resnet18 would then allocate 2 GB before loading the weights failed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.engine import archs, models
from core.engine.model_budget import check_build_size
from core.engine.nets import DigitsCNN
from core.errors import ClassLensError


@pytest.fixture()
def real_builds(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Record every build of resnet18 that is not on the meta device (one that allocates)."""
    seen: list[dict] = []
    arch = archs.get("resnet18")

    def spy(**kwargs):  # noqa: ANN003
        if torch.get_default_device().type != "meta":
            seen.append(kwargs)
        return arch.build(**kwargs)

    monkeypatch.setitem(archs.registry(), "resnet18", dataclasses.replace(arch, build=spy))
    return seen


def test_a_huge_declared_head_is_refused_before_anything_is_built(
    tmp_path: Path, real_builds: list[dict]
) -> None:
    path = tmp_path / "head.safetensors"
    head = {"fc.weight": torch.zeros(1_000_000, 1, dtype=torch.float16), "fc.bias": torch.zeros(1)}
    save_file(head, str(path), metadata={"classlens": '{"architecture": "resnet18"}'})
    assert path.stat().st_size < 2_100_000
    with pytest.raises(ClassLensError, match=r"num_classes=1,000,000.*file holds 1,000,001"):
        models.load_checkpoint(path)
    assert real_builds == []  # refused from the meta count alone


def test_a_fitting_checkpoint_is_built(tmp_path: Path, real_builds: list[dict]) -> None:
    sd = archs.get("resnet18").build(num_classes=3).state_dict()
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    ckpt = models.load_checkpoint(path, arch="resnet18")
    assert real_builds and all(k == {"num_classes": 3} for k in real_builds)
    assert ckpt.module.fc.out_features == 3


def test_the_bound_is_the_files_own_numbers_with_a_little_slack() -> None:
    arch = archs.get("digits_cnn")
    sd = DigitsCNN(num_classes=10, in_channels=1).state_dict()
    have = sum(t.numel() for t in sd.values())
    check_build_size(arch, {"num_classes": 10, "in_channels": 1}, sd)  # exact: fits
    # A module slightly larger than the file (a narrowed first convolution) still fits.
    check_build_size(arch, {"num_classes": 10, "in_channels": 3}, sd)
    with pytest.raises(ClassLensError, match=f"file holds {have:,}"):
        check_build_size(arch, {"num_classes": 200_000, "in_channels": 1}, sd)
