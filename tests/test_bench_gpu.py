"""bench/gpu.py's arithmetic, on CPU: FLOPs per image against a hand count, the peak table,
and the clean exit without CUDA."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench import gpu


def test_flops_per_image_match_a_hand_count() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),  # 8x8 out: 4*64 outputs x 3*3*3 MACs
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 5, bias=False),  # 5 outputs x 256 MACs
    )
    conv = 2 * (4 * 8 * 8) * (3 * 3 * 3)  # a multiply-add is 2 FLOPs: 13,824
    linear = 2 * 5 * 256  # 2,560
    assert gpu.flops_per_image(model, 3, 8) == conv + linear == 16_384


def test_flops_per_image_scale_with_the_image_area() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False))
    assert gpu.flops_per_image(model, 1, 4) == 2 * 2 * 16
    assert gpu.flops_per_image(model, 1, 8) == 4 * gpu.flops_per_image(model, 1, 4)


@pytest.mark.parametrize(
    ("name", "precision", "tf32", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", True, 989.4),
        ("NVIDIA H100 PCIe", "bf16", True, 756.0),  # not the SXM figure
        ("NVIDIA H200", "fp32", True, 494.7),  # TF32 convolutions allowed: the TF32 peak
        ("NVIDIA H200", "fp32", False, 66.9),
        ("Some Future GPU", "bf16", True, None),
    ],
)
def test_peak_table_lookup(
    monkeypatch: pytest.MonkeyPatch, name: str, precision: str, tf32: bool, peak: float | None
) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    assert gpu.peak_tflops(name, precision) == peak


def test_without_cuda_it_says_so_and_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main() == 0
    assert capsys.readouterr().out.startswith("no CUDA device")
