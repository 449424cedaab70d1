"""core.images.gradcam on a hand-built CNN whose evidence for each class sits in a known region."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.engine import models
from core.engine.nets import DigitsWideMLP
from core.engine.preprocessing import Preprocessing
from core.engine.sample import CHECKPOINTS, DATASET
from core.errors import ClassLensError
from core.images import gradcam

SIZE = 16


def _identity_conv(channels: int) -> nn.Conv2d:
    """A 3x3 convolution that copies each input channel (centre tap 1, the rest 0)."""
    conv = nn.Conv2d(channels, channels, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for c in range(channels):
            conv.weight[c, c, 1, 1] = 1.0
    return conv


def _region_net() -> nn.Module:
    """Logit c = the mean of input channel c (through two convolutions and a pool)."""
    head = nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
        head.bias.zero_()
    return nn.Sequential(
        _identity_conv(2),
        nn.MaxPool2d(2),
        _identity_conv(2),  # the layer Grad-CAM hooks
        nn.ReLU(inplace=True),  # in place right after it: the hook must not be disturbed
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        head,
    ).eval()


def _images(n: int = 3, seed: int = 0) -> torch.Tensor:
    """Channel 0 lights the top-left quarter, channel 1 (dimmer) the bottom-right quarter."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2, SIZE, SIZE)).astype(np.float32) * 0.05
    x[:, 0, :6, :6] += 1.0
    x[:, 1, -6:, -6:] += 0.6
    return torch.from_numpy(x)


def _peak(cam: np.ndarray) -> tuple[int, int]:
    return tuple(int(v) for v in np.unravel_index(np.argmax(cam), cam.shape))  # type: ignore[return-value]


def test_cam_peaks_in_the_region_that_drives_the_target() -> None:
    net, x = _region_net(), _images()
    with torch.no_grad():
        assert net(x).argmax(1).tolist() == [0, 0, 0]  # channel 0 is brighter
    cams, targets = gradcam.gradcam(net, x)
    assert targets.tolist() == [0, 0, 0]  # default: the predicted class
    for cam in cams:
        r, c = _peak(cam)
        assert r < 8 and c < 8, (r, c)
        assert cam[-4:, -4:].max() < 0.2  # the other region carries no evidence for class 0
    cams, targets = gradcam.gradcam(net, x, targets=[1, 1, 1])
    assert targets.tolist() == [1, 1, 1]
    for cam in cams:
        r, c = _peak(cam)
        assert r >= 8 and c >= 8, (r, c)
        assert cam[:4, :4].max() < 0.2


def test_shape_range_and_no_parameter_grads() -> None:
    net, x = _region_net(), _images(n=4)
    cams, _ = gradcam.gradcam(net, x, targets=[0, 1, 0, 1])
    assert cams.shape == (4, SIZE, SIZE) and cams.dtype == np.float32
    assert cams.min() >= 0.0 and cams.max() <= 1.0
    np.testing.assert_allclose(cams.max(axis=(1, 2)), 1.0, atol=1e-6)
    assert all(p.grad is None for p in net.parameters())
    assert not net[2]._forward_hooks  # the hook is removed


def test_targets_must_match_the_batch() -> None:
    with pytest.raises(ValueError, match="one class per image"):
        gradcam.gradcam(_region_net(), _images(n=2), targets=[0])


def test_last_conv_is_the_last_registered() -> None:
    net = _region_net()
    assert gradcam.last_conv(net) is net[2]


def test_mlp_is_refused() -> None:
    with pytest.raises(ClassLensError, match="Grad-CAM needs a convolutional layer"):
        gradcam.gradcam(DigitsWideMLP(input_size=8, width=16), torch.zeros(1, 1, 8, 8))


def test_non_native_checkpoint_is_refused() -> None:
    ckpt = models.Checkpoint(
        Path("m.pt"), "", "torchscript", _region_net(), "torchscript", None, native=False
    )
    with pytest.raises(ClassLensError, match="Grad-CAM needs a convolutional layer.*torchscript"):
        gradcam.check_supported(ckpt)
    meta = {"checkpoint": {"path": "/nowhere.pt2", "format": "torch_export", "sha256": "x"}}
    with pytest.raises(ClassLensError, match="torch_export checkpoint hides its layers"):
        gradcam.load_for_run(meta)  # refused before any loading


def _meta(name: str, sha: str | None = None) -> dict:
    path = CHECKPOINTS[name]
    return {
        "checkpoint": {
            "path": str(path),
            "format": "safetensors",
            "sha256": sha or models.sha256_file(path),
            "trusted": False,
        },
        "architecture": None,
    }


def test_load_for_run_on_the_sample_checkpoints() -> None:
    with pytest.raises(ClassLensError, match="Grad-CAM needs a convolutional layer"):
        gradcam.load_for_run(_meta("overfit"))  # the MLP
    with pytest.raises(ClassLensError, match="changed since this run"):
        gradcam.load_for_run(_meta("good", sha="0" * 64))
    ckpt = gradcam.load_for_run(_meta("good"))
    prep = Preprocessing(image_size=32, channels=1, mean=(0.5,), std=(0.5,))
    files = sorted((DATASET / "test" / "3").iterdir())[:2] + [DATASET / "missing.png"]
    out = gradcam.overlays(ckpt, files, prep, size=128)
    assert out[2] is None
    for img in out[:2]:
        assert img is not None and img.dtype == np.uint8 and img.shape == (128, 128, 3)


def test_jet_and_overlay() -> None:
    np.testing.assert_array_equal(
        gradcam.jet([0.0, 0.5, 1.0]), [[0, 0, 128], [128, 255, 128], [128, 0, 0]]
    )
    gray = np.full((4, 6), 200, np.uint8)
    same = gradcam.overlay(gray, np.zeros((2, 3)), alpha=0.0)
    assert same.shape == (4, 6, 3) and same.dtype == np.uint8 and (same == 200).all()
    hot = gradcam.overlay(np.zeros((4, 6, 3), np.uint8), np.ones((4, 6)), alpha=1.0)
    assert (hot == [128, 0, 0]).all()
    with pytest.raises(ValueError, match="image must be"):
        gradcam.overlay(np.zeros((4, 6, 2), np.uint8), np.zeros((4, 6)))


# --- issue 13, item 7: verify the checkpoint's sha256 before loading it -------------------------


class _Pwn:
    """Unpickling this touches ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def _trusted_state_dict_meta(path: Path) -> dict:
    """The meta of a local run evaluated with trust on a state_dict (loaded by full pickle)."""
    return {
        "checkpoint": {
            "path": str(path),
            "format": "state_dict",
            "sha256": models.sha256_file(path),
            "trusted": True,
        },
        "architecture": "digits_cnn",
    }


def test_a_replaced_trusted_checkpoint_is_refused_before_it_is_loaded(tmp_path: Path) -> None:
    from core.engine.nets import DigitsCNN

    path = tmp_path / "model.pt"
    torch.save(DigitsCNN(num_classes=10, in_channels=1).state_dict(), path)
    meta = _trusted_state_dict_meta(path)
    assert gradcam.load_for_run(meta).path == path  # as evaluated: loads, reports its own path

    marker = tmp_path / "pwned"
    torch.save({"weights": _Pwn(marker)}, path)  # the same path, now a malicious pickle
    with pytest.raises(ClassLensError, match="changed since this run was evaluated.*not loaded"):
        gradcam.load_for_run(meta)
    assert not marker.exists(), "the replaced file's code ran before its sha256 was checked"


def test_verified_copy_keeps_nothing_when_the_bytes_differ(tmp_path: Path) -> None:
    src = tmp_path / "m.safetensors"
    src.write_bytes(b"abc")
    (tmp_path / "m.json").write_text("{}")
    into = tmp_path / "into"
    into.mkdir()
    good = gradcam.verified_copy(src, models.sha256_file(src), into)
    assert good.read_bytes() == b"abc" and (into / "m.json").read_text() == "{}"
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(ClassLensError, match="changed since"):
        gradcam.verified_copy(src, "0" * 64, other)
    assert list(other.iterdir()) == []
    with pytest.raises(ClassLensError, match="checkpoint not found.*moved or deleted"):
        gradcam.verified_copy(tmp_path / "gone.pt", "0" * 64, other)
