"""Checkpoints as analysts have them: each case is evaluated by the CLI and compared, image by
image, with the model's own predictions computed independently (PIL + torchvision transforms
+ plain PyTorch or onnxruntime). Max |delta p| <= 1e-3, or a refusal with one ``error:`` line.

The CLI runs in this process (``cli_inprocess``) except where the process itself matters.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_cli_error, assert_cli_run, cli_inprocess, draw, write_dataset
from PIL import Image
from torch import nn
from torchvision import transforms as T

from core import runs
from core.engine import data, evidence, inference, models
from core.engine.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from core.errors import ClassLensError

TOLERANCE = 1e-3
RGB_SIZE = 64


# --- the independent reference ------------------------------------------------------------------


def reference_transform(
    size: int,
    *,
    channels: int = 3,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    resize: str = "stretch",
) -> Callable[[Image.Image], torch.Tensor]:
    """Return the torchvision transform an analyst would write for this preprocessing."""
    steps: list = [T.Grayscale(1) if channels == 1 else T.Lambda(lambda im: im.convert("RGB"))]
    if resize == "center_crop":
        steps += [T.Resize(round(size / 0.875)), T.CenterCrop(size)]
    else:
        steps += [T.Resize((size, size))]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


def reference_probs(
    forward: Callable[[torch.Tensor], torch.Tensor],
    paths: list[Path],
    transform: Callable[[Image.Image], torch.Tensor],
    *,
    outputs: str = "logits",
) -> np.ndarray:
    """Return (n, C) probabilities of ``forward`` on ``paths``, one image at a time."""
    rows = []
    with torch.inference_mode():
        for path in paths:
            with Image.open(path) as im:
                out = forward(transform(im)[None]).float()
            if outputs == "logits":
                out = torch.softmax(out, 1)
            elif outputs == "log_probabilities":
                out = out.exp()
            rows.append(out[0].numpy())
    return np.stack(rows)


def run_probs(run_path: Path, root: Path) -> tuple[list[Path], np.ndarray, dict]:
    """Return (image paths, probabilities, meta) of a stored run, in its row order."""
    run = runs.RunStore(run_path.parent).get(run_path.name)
    assert run is not None
    table, meta = run.predictions(), run.meta
    dirs = {s: Path(d) for s, d in meta["dataset"]["split_dirs"].items()}
    paths = [dirs[s] / p for s, p in zip(table["split"], table["path"], strict=True)]
    return paths, run.probs().astype(np.float64), meta  # stored float16: +-2.5e-4


def evaluate_cli(capsys, runs_dir: Path, checkpoint: Path, root: Path, *extra: object) -> Path:
    proc = cli_inprocess(
        capsys, "evaluate", "--checkpoint", checkpoint, "--data", root, "--device", "cpu", *extra
    )
    return assert_cli_run(proc, runs_dir)


def assert_same_predictions(
    run_path: Path,
    root: Path,
    forward: Callable[[torch.Tensor], torch.Tensor],
    transform: Callable[[Image.Image], torch.Tensor],
    *,
    outputs: str = "logits",
) -> dict:
    """Assert the run's per-image probabilities equal the reference's; return the run's meta."""
    paths, probs, meta = run_probs(run_path, root)
    ref = reference_probs(forward, paths, transform, outputs=outputs)
    assert probs.shape == ref.shape
    assert np.abs(probs - ref).max() <= TOLERANCE, np.abs(probs - ref).max()
    assert (probs.argmax(1) == ref.argmax(1)).all()
    return meta


def rgb_dataset(root: Path, *, per_class: int = 2, size: int = RGB_SIZE) -> Path:
    return write_dataset(root, splits=None, per_class=per_class, size=size, mode="RGB")


def calibrate_bn(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Set every batch-norm's running statistics to those of ``x`` passing through the model
    (as training leaves them), so that eval-mode outputs depend on the input."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: exactly the batch statistics
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def _images(root: Path) -> list[Path]:
    return sorted(root.rglob("*.png"))


# --- 1. resize = center_crop equals torchvision's Resize + CenterCrop ---------------------------


@pytest.mark.parametrize("wh", [(300, 200), (201, 333), (257, 400), (640, 479), (224, 224)])
def test_center_crop_pixels_equal_torchvisions_resize_and_center_crop(
    tmp_path: Path, wh: tuple[int, int]
) -> None:
    rng = np.random.default_rng(sum(wh))
    path = tmp_path / "im.png"
    Image.fromarray(rng.integers(0, 256, (wh[1], wh[0], 3), dtype=np.uint8)).save(path)
    prep = Preprocessing(image_size=224, resize="center_crop")

    ours = data.decode(path, prep)
    with Image.open(path) as im:
        ref = np.asarray(T.CenterCrop(224)(T.Resize(256)(im.convert("RGB"))))

    np.testing.assert_array_equal(ours, ref.transpose(2, 0, 1))


def test_center_crop_predictions_equal_the_reference_on_non_square_images(
    tmp_path: Path, capsys, runs_dir: Path
) -> None:
    root = tmp_path / "data"
    for label, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i, (w, h) in enumerate([(45, 30), (31, 50), (57, 36), (33, 33)]):
            draw(label, i, size=64, mode="RGB").resize((w, h)).save(root / name / f"{i}.png")
    model = _convnet(2)
    ckpt = tmp_path / "m.pt"
    prep = {"image_size": 28, "channels": 3, "resize": "center_crop"}
    torch.save(
        {"state_dict": model.state_dict(), "arch": "digits_cnn", "preprocessing": prep}, ckpt
    )

    run = evaluate_cli(capsys, runs_dir, ckpt, root)

    assert_same_predictions(run, root, model, reference_transform(28, resize="center_crop"))


def _convnet(num_classes: int, in_channels: int = 3) -> nn.Module:
    from conftest import make_model

    return make_model(num_classes=num_classes, in_channels=in_channels, seed=num_classes)


# --- 1. 16-bit and other modes are converted faithfully; blank images are warned about ----------


def _png16(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr.astype(np.uint16)).save(path)
    return path


def test_a_16_bit_png_decodes_like_torchvisions_scaled_read(tmp_path: Path) -> None:
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2.functional import to_dtype

    rng = np.random.default_rng(0)
    path = _png16(tmp_path / "g16.png", rng.integers(0, 65536, (20, 20)))
    assert Image.open(path).mode == "I;16"

    ours = data.decode(path, Preprocessing(image_size=20, channels=1, mean=(0.5,), std=(0.5,)))
    ref = to_dtype(decode_image(str(path), mode=ImageReadMode.UNCHANGED), torch.uint8, scale=True)

    np.testing.assert_array_equal(ours, ref.numpy())
    assert len(np.unique(ours)) > 100  # not clipped to white
    rgb = data.decode(path, Preprocessing(image_size=20))  # gray replicated into RGB
    np.testing.assert_array_equal(rgb, np.repeat(ref.numpy(), 3, axis=0))


def test_32_bit_int_and_float_images_are_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 1, 64).reshape(8, 8)
    as_float = data.to_mode(Image.fromarray(ramp.astype(np.float32), mode="F"), 1)
    np.testing.assert_array_equal(np.asarray(as_float), np.rint(ramp * 255).astype(np.uint8))
    wide = (ramp * 65535).astype(np.int32)
    as_int = data.to_mode(Image.fromarray(wide, mode="I"), 3)
    np.testing.assert_array_equal(np.asarray(as_int)[..., 1], (wide >> 8).astype(np.uint8))


def test_a_blank_image_after_conversion_is_evaluated_and_warned(
    tmp_path: Path, capsys, runs_dir: Path
) -> None:
    root = write_dataset(tmp_path / "data", splits=None, per_class=2)
    _png16(root / "cat" / "flat16.png", np.full((16, 16), 40000))
    model = _convnet(3, in_channels=1)
    ckpt = tmp_path / "m.pt"
    prep = {"image_size": 16, "channels": 1, "mean": [0.5], "std": [0.5]}
    torch.save({"state_dict": model.state_dict(), "preprocessing": prep}, ckpt)

    proc = cli_inprocess(capsys, "evaluate", "--checkpoint", ckpt, "--data", root)
    run = assert_cli_run(proc, runs_dir)

    meta = json.loads((run / "meta.json").read_text())
    assert [w["path"] for w in meta["warnings"]] == ["cat/flat16.png"]
    assert "every pixel is 156" in meta["warnings"][0]["reason"]  # 40000 >> 8 == 156
    assert "warning: 1 image(s) blank after conversion" in proc.stderr
    paths, _, _ = run_probs(run, root)
    assert root / "cat" / "flat16.png" in paths  # evaluated, not skipped


# --- 1. outputs that are probabilities already are not softmaxed again --------------------------


class _WithSoftmax(nn.Module):
    """A classifier whose forward ends in F.softmax (invisible to a layer scan)."""

    def __init__(self, net: nn.Module, log: bool = False) -> None:
        super().__init__()
        self.net, self.log = net, log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x) * 20.0
        return torch.log_softmax(z, 1) if self.log else torch.softmax(z, 1)


def _onnx(
    model: nn.Module,
    path: Path,
    channels: int = 3,
    *,
    shape: tuple[int, ...] | None = None,
    dynamic_batch: bool = True,
) -> Path:
    """Export ``model`` to ONNX at ``path`` (legacy exporter) from a zero input of ``shape``
    (default: 2 NCHW images of RGB_SIZE), its batch dimension dynamic unless told otherwise."""
    x = torch.zeros(shape or (2, channels, RGB_SIZE, RGB_SIZE))
    axes = {"x": {0: "b"}} if dynamic_batch else None
    torch.onnx.export(model, (x,), str(path), input_names=["x"], dynamic_axes=axes, dynamo=False)
    return path


@pytest.mark.parametrize(
    "kind,log,layer",
    [
        ("onnx_softmax", False, False),
        ("onnx_log_softmax", True, False),
        ("torchscript_softmax", False, False),
        ("pickled_sequential_softmax", False, True),
    ],
)
def test_outputs_that_are_probabilities_are_not_softmaxed_twice(
    kind: str, log: bool, layer: bool, tmp_path: Path, capsys, runs_dir: Path
) -> None:
    root = rgb_dataset(tmp_path / "data")
    net = _convnet(3)
    with torch.no_grad():  # confident outputs: a second softmax would flatten them
        [m for m in net.modules() if isinstance(m, nn.Linear)][-1].weight.mul_(20)
    model = (nn.Sequential(net, nn.Softmax(dim=1)) if layer else _WithSoftmax(net, log=log)).eval()
    trust: tuple[str, ...] = ()
    if kind.startswith("onnx"):
        ckpt = _onnx(model, tmp_path / "m.onnx")
    elif kind.startswith("torchscript"):
        ckpt = tmp_path / "m.torchscript.pt"
        torch.jit.script(model).save(str(ckpt))
        trust = ("--trust-checkpoint",)
    else:
        ckpt = tmp_path / "whole.pt"
        torch.save(model, ckpt)
        trust = ("--trust-checkpoint",)

    run = evaluate_cli(capsys, runs_dir, ckpt, root, "--image-size", RGB_SIZE, *trust)

    outputs = "log_probabilities" if log else "probabilities"
    meta = assert_same_predictions(run, root, model, reference_transform(RGB_SIZE), outputs=outputs)
    assert meta["facts"]["outputs"]["kind"] == outputs
    assert meta["facts"]["outputs"]["applied"].startswith("none")
    _, probs, _ = run_probs(run, root)
    twice = torch.softmax(torch.from_numpy(probs), 1).numpy()
    assert np.abs(twice - probs).max() > 0.1  # the test can tell one softmax from two


def test_logits_are_softmaxed_once_and_the_fact_says_so(
    tmp_path: Path, capsys, runs_dir: Path
) -> None:
    root = rgb_dataset(tmp_path / "data")
    model = _convnet(3)
    ckpt = _onnx(model, tmp_path / "m.onnx")

    run = evaluate_cli(capsys, runs_dir, ckpt, root, "--image-size", RGB_SIZE)

    meta = assert_same_predictions(run, root, model, reference_transform(RGB_SIZE))
    assert meta["facts"]["outputs"] == {
        "kind": "logits",
        "applied": "softmax",
        "evidence": "its outputs on probe images are not probabilities",
    }


def test_row_kinds_are_judged_from_the_rows() -> None:
    z = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]])
    assert inference._rows_kind(z) == "logits"
    assert inference._rows_kind(torch.softmax(z, 1)) == "probabilities"
    assert inference._rows_kind(torch.log_softmax(z, 1)) == "log_probabilities"
    assert inference._rows_kind(torch.tensor([[0.5, 0.5, 0.1]])) == "logits"  # sums to 1.1
    p = torch.softmax(z, 1)
    np.testing.assert_allclose(inference.to_log_probs(p, "probabilities").exp(), p, atol=1e-6)


# --- 1. inception_v3 / googlenet: transform_input decided from the first batch-norm -------------


def _tv_model(name: str, transform_input: bool, images: list[Path]) -> nn.Module:
    """Return a random torchvision ``name`` whose batch-norm statistics were 'trained' on
    ``images`` with ``transform_input`` (as a fine-tune of the pretrained weights leaves them)."""
    import torchvision

    torch.manual_seed(3)
    model = torchvision.models.get_model(
        name, weights=None, num_classes=3, aux_logits=False, init_weights=False,
        transform_input=transform_input,
    )  # fmt: skip
    transform = reference_transform(RGB_SIZE if name == "googlenet" else 80)
    x = torch.stack([transform(Image.open(p)) for p in images])
    return calibrate_bn(model, x)


@pytest.mark.slow  # full-size torchvision networks built, calibrated and evaluated
@pytest.mark.parametrize(
    "name,flag", [("googlenet", True), ("googlenet", False), ("inception_v3", True)]
)
def test_transform_input_is_decided_from_evidence_and_recorded(
    name: str, flag: bool, tmp_path: Path, capsys, runs_dir: Path
) -> None:
    size = RGB_SIZE if name == "googlenet" else 80
    data_dir = write_dataset(tmp_path / "data", per_class=3, size=size, mode="RGB")
    root = data_dir / "test"  # evaluated on other images than the statistics came from
    model = _tv_model(name, flag, _images(data_dir / "train"))
    ckpt = tmp_path / "finetuned.pt"
    torch.save(model.state_dict(), ckpt)  # what a fine-tune saves: no transform_input in it

    run = evaluate_cli(capsys, runs_dir, ckpt, root, "--image-size", size)

    meta = assert_same_predictions(run, root, model, reference_transform(size))
    assert meta["architecture"] == name
    fact = meta["facts"]["transform_input"]
    assert fact["value"] is flag
    assert "first batch-norm" in fact["evidence"]


def test_transform_input_declared_in_the_checkpoint_wins(tmp_path: Path) -> None:
    root = rgb_dataset(tmp_path / "data", per_class=2)
    model = _tv_model("googlenet", False, _images(root))
    prep = Preprocessing(image_size=RGB_SIZE)

    decided = evidence.decide_transform_input(model, prep, _images(root), declared=True)

    assert decided is not None
    module, fact = decided
    assert (module.transform_input, model.transform_input) == (True, False)  # a copy
    assert fact == {"value": True, "evidence": "from the checkpoint's metadata"}
    assert evidence.decide_transform_input(_convnet(3), prep, _images(root)) is None


# --- 2. detection through wrappers and edits ---------------------------------------------------


def _prefixed(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in sd.items()}


# Some checkpoints are looked up in torchvision's signature index before their prefix is
# stripped (the index is built once per session, 10-25 s): those cases run in the slow suite.
INDEXED = pytest.mark.slow


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("model.", marks=INDEXED),
        "module._orig_mod.",
        "_orig_mod.module.",
        pytest.param("net.module.", marks=INDEXED),
        pytest.param("module.module.model.", marks=INDEXED),
    ],
)
def test_any_consistent_key_prefix_is_seen_through(
    prefix: str, tmp_path: Path, capsys, runs_dir: Path
) -> None:
    root = rgb_dataset(tmp_path / "data")
    model = _convnet(3)
    ckpt = tmp_path / "lightning.ckpt"
    torch.save(
        {
            "state_dict": _prefixed(model.state_dict(), prefix),
            "epoch": 3,
            "global_step": 120,
            "hyper_parameters": {"lr": 0.01, "num_classes": 3},
            "pytorch-lightning_version": "2.4.0",
        },
        ckpt,
    )

    run = evaluate_cli(capsys, runs_dir, ckpt, root, "--image-size", RGB_SIZE)

    meta = assert_same_predictions(run, root, model, reference_transform(RGB_SIZE))
    assert meta["architecture"] == "digits_cnn"


class _Lightning(nn.Module):
    """A LightningModule's layout: a torchvision backbone without its head, and a head."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _resnet18(num_classes: int = 3, images: list[Path] | None = None, channels: int = 3):
    import torchvision

    torch.manual_seed(5)
    model = torchvision.models.resnet18(num_classes=num_classes)
    if channels == 1:
        model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    if images:
        transform = reference_transform(RGB_SIZE, channels=channels, **_norm(channels))
        model = calibrate_bn(model, torch.stack([transform(Image.open(p)) for p in images]))
    return model.eval()


def _norm(channels: int) -> dict:
    return {} if channels == 3 else {"mean": (0.5,), "std": (0.5,)}


def _edited_resnet(edit: str, images: list[Path]) -> tuple[nn.Module, dict]:
    """Return (the user's model, the state_dict they saved) for one kind of edit."""
    if edit == "backbone_head":
        net = _resnet18(images=images)
        head = net.fc
        net.fc = nn.Identity()
        model = _Lightning(net, head).eval()
        return model, {"state_dict": _prefixed(model.state_dict(), "model.")}
    if edit == "sequential_head":
        net = _resnet18(images=images)
        net.fc = nn.Sequential(nn.Dropout(0.3), net.fc)
        return net.eval(), {"model_state_dict": net.state_dict(), "best_acc": 0.9}
    if edit == "gray_conv1":
        net = _resnet18(images=images, channels=1)
        return net, net.state_dict()
    if edit == "head_without_bias":
        net = _resnet18(images=images)
        linear = nn.Linear(512, 3, bias=False)
        linear.weight.data.copy_(net.fc.weight.data)
        net.fc = linear
        return net.eval(), {f"module.{k}": v for k, v in net.state_dict().items()}
    raise AssertionError(edit)


@pytest.mark.slow  # full-size torchvision networks built, calibrated and evaluated
@pytest.mark.parametrize(
    "edit", ["backbone_head", "sequential_head", "gray_conv1", "head_without_bias"]
)
def test_edited_torchvision_backbones_are_rebuilt_and_predict_like_the_model(
    edit: str, tmp_path: Path, capsys, runs_dir: Path
) -> None:
    channels = 1 if edit == "gray_conv1" else 3
    mode = "L" if channels == 1 else "RGB"
    root = write_dataset(tmp_path / "data", splits=None, per_class=2, size=RGB_SIZE, mode=mode)
    model, saved = _edited_resnet(edit, _images(root))
    ckpt = tmp_path / "edited.pt"
    torch.save(saved, ckpt)

    run = evaluate_cli(capsys, runs_dir, ckpt, root, "--image-size", RGB_SIZE)

    transform = reference_transform(RGB_SIZE, channels=channels, **_norm(channels))
    meta = assert_same_predictions(run, root, model, transform)
    assert meta["architecture"] == "resnet18"
    assert meta["facts"]["weights"]["architecture"] == "resnet18"
    assert EDIT_NOTES[edit] in " / ".join(meta["facts"]["weights"]["adapted"])
    assert meta["preprocessing"]["channels"] == channels


EDIT_NOTES = {
    "backbone_head": "key prefix 'model.backbone.' removed / head model.head used as fc",
    "sequential_head": "head fc.1 used as fc",
    "gray_conv1": "first convolution takes 1 channel",
    "head_without_bias": "head fc (no bias: a zero bias is the same layer)",
}


@pytest.mark.slow  # full-size torchvision networks built, calibrated and evaluated
def test_inception_with_its_aux_head_is_evaluated_without_it(
    tmp_path: Path, capsys, runs_dir: Path
) -> None:
    import torchvision

    root = rgb_dataset(tmp_path / "data", per_class=2, size=80)
    torch.manual_seed(2)
    model = torchvision.models.inception_v3(
        weights=None, num_classes=3, aux_logits=True, init_weights=False
    )  # what fine-tuning torchvision's pretrained inception keeps
    aux, model.AuxLogits = model.AuxLogits, None  # at 80 px the aux head cannot run (299)
    transform = reference_transform(80)
    calibrate_bn(model, torch.stack([transform(Image.open(p)) for p in _images(root)]))
    model.AuxLogits = aux
    ckpt = tmp_path / "inception.pt"
    torch.save(model.state_dict(), ckpt)
    assert any(k.startswith("AuxLogits.") for k in model.state_dict())

    run = evaluate_cli(capsys, runs_dir, ckpt, root, "--image-size", 80)

    meta = assert_same_predictions(run, root, model.eval(), transform)
    assert "auxiliary head left out" in " ".join(meta["facts"]["weights"]["adapted"])


@pytest.mark.slow  # builds torchvision's and timm's signature indexes (10-25 s cold)
def test_a_two_layer_head_is_refused_naming_the_closest_architectures_and_onnx(
    tmp_path: Path, capsys, runs_dir: Path
) -> None:
    net = _resnet18()
    net.fc = nn.Sequential(nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 3))
    ckpt = tmp_path / "mlp_head.pt"
    torch.save(net.state_dict(), ckpt)
    root = rgb_dataset(tmp_path / "data")

    proc = cli_inprocess(capsys, "evaluate", "--checkpoint", ckpt, "--data", root)

    line = assert_cli_error(proc, r"could not recognise the architecture")
    assert re.search(r"Closest: resnet18 \(120 of 120 trunk tensors matched; the head spans", line)
    assert "torch.onnx.export" in line and "--arch" in line


# --- 3. harmless metadata in weights_only loading ------------------------------------------------


def test_numpy_scalars_and_an_argparse_namespace_beside_the_weights_load_without_trust(
    tmp_path: Path, capsys, runs_dir: Path
) -> None:
    root = rgb_dataset(tmp_path / "data")
    model = _convnet(3)
    ckpt = tmp_path / "checkpoint.pth"  # torchvision references / timm train.py layout
    args = argparse.Namespace(model="digits_cnn", lr=0.1, epochs=90, sizes=(1, 2))
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
            "epoch": np.int64(89),
            "best_acc": np.float64(0.93),
            "dtype": np.dtype("float32"),
            "args": args,
            "seen": frozenset({"a", "b"}),
        },
        ckpt,
    )

    run = evaluate_cli(capsys, runs_dir, ckpt, root, "--image-size", RGB_SIZE)

    meta = assert_same_predictions(run, root, model, reference_transform(RGB_SIZE))
    assert meta["checkpoint"]["trusted"] is False


class _Smuggle:
    """Pickles as a newly allowed type whose arguments or state carry a call."""

    def __init__(self, kind: str, marker: Path) -> None:
        self.kind, self.marker = kind, marker

    def __reduce__(self) -> tuple:
        call = _Call(self.marker)
        if self.kind == "namespace_state":
            return (argparse.Namespace, (), {"x": call})
        if self.kind == "dtype_argument":
            return (np.dtype, (call,))
        if self.kind == "frozenset_member":
            return (frozenset, ([call],))
        return (argparse.ArgumentParser, ())  # a type beside the allowed one: not allowed


class _Call:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    "kind", ["namespace_state", "dtype_argument", "frozenset_member", "argument_parser"]
)
def test_pickles_that_use_the_allowed_types_to_smuggle_a_call_are_refused(
    kind: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _convnet(3).state_dict(), "args": _Smuggle(kind, marker)}, path)

    with pytest.raises(ClassLensError, match=r"evil\.pt is not a safe checkpoint.*--trust"):
        models.load_checkpoint(path)
    assert not marker.exists()


# --- 7. class names from id2label / class_names / classes; a test set holding a subset ---------


def _save_with_names(model: nn.Module, path: Path, fmt: str, names: list[str]) -> Path:
    id2label = {str(i): n for i, n in enumerate(names)}
    prep = {"image_size": RGB_SIZE, "channels": 3}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        meta = {"id2label": json.dumps(id2label), "preprocessing": json.dumps(prep)}
        save_file(sd, str(path), metadata=meta)
    elif fmt == "state_dict":
        torch.save(
            {"state_dict": model.state_dict(), "classes": names, "preprocessing": prep}, path
        )
    else:
        import onnx

        _onnx(model, path)
        proto = onnx.load(str(path))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "id2label", json.dumps(id2label)
        onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize("fmt", ["safetensors", "state_dict", "onnx"])
def test_class_names_are_read_from_any_format_and_a_subset_test_set_is_evaluated(
    fmt: str, tmp_path: Path, capsys, runs_dir: Path
) -> None:
    from sklearn.metrics import precision_recall_fscore_support

    from core.analysis import diagnostics, health

    names = ["zebra", "dog", "cat", "bird", "ant"]  # output order, not sorted
    present = ["bird", "cat", "dog"]
    root = write_dataset(tmp_path / "data", splits=None, classes=present, per_class=3, mode="RGB")
    model = _convnet(5)
    with torch.no_grad():  # favour the absent 'zebra' so the model predicts it at times
        [m for m in model.modules() if isinstance(m, nn.Linear)][-1].bias[0] += 1.5
    ckpt = _save_with_names(model, tmp_path / f"m.{fmt}", fmt, names)

    run = evaluate_cli(capsys, runs_dir, ckpt, root, "--image-size", RGB_SIZE)

    meta = assert_same_predictions(run, root, model, reference_transform(RGB_SIZE))
    assert meta["class_names"] == names
    assert meta["absent_classes"] == ["zebra", "ant"]
    report = json.loads((run / "metrics.json").read_text())
    assert report["classes"] == names  # the contract: the checkpoint's classes, in order
    test = report["splits"]["test"]
    by_name = {c["class"]: c for c in test["per_class"]}
    assert [c["class"] for c in test["per_class"]] == names
    assert by_name["zebra"]["support"] == 0 and by_name["zebra"]["absent"] is True
    assert by_name["ant"]["support"] == 0 and by_name["ant"]["absent"] is True
    assert "absent" not in by_name["cat"]
    # independent reference: scikit-learn on the stored labels, macro over the classes present
    table = runs.RunStore(run.parent).get(run.name).predictions()
    y, p = table["y_true"].to_numpy(), table["y_pred"].to_numpy()
    assert (p == 0).any(), "the test needs predictions of an absent class"
    labels = [names.index(c) for c in present]
    ref = precision_recall_fscore_support(y, p, labels=labels, average="macro", zero_division=0)
    assert test["macro"]["precision"] == pytest.approx(ref[0])
    assert test["macro"]["recall"] == pytest.approx(ref[1])
    assert test["macro"]["f1"] == pytest.approx(ref[2])
    per = precision_recall_fscore_support(y, p, labels=range(5), zero_division=0)
    np.testing.assert_allclose([c["recall"] for c in test["per_class"]], per[1])
    # an absent class is never judged: its precision is 0 (predicted, never right) yet it is
    # neither an issue nor the verdict's reason
    assert by_name["zebra"]["precision"] == 0.0
    issues = {i.name for i in diagnostics.class_issues(test, 0.99)}
    assert issues and not issues & {"zebra", "ant"}
    levels = dict(zip(names, diagnostics.class_levels(test), strict=True))
    assert levels["zebra"] == levels["ant"] == "good"
    check = health.check_classes(test)
    said = " ".join([check.sentence, *check.details])
    assert check.level != "pass" and "zebra" not in said and "'ant'" not in said
    from core.analysis import tables

    assert (
        dict(tables.run_facts(meta)["Model"])["classes"] == "5 (2 not in the dataset: zebra, ant)"
    )


def test_the_cli_says_which_classes_the_test_set_lacks(
    tmp_path: Path, capsys, runs_dir: Path
) -> None:
    root = write_dataset(tmp_path / "data", splits=None, classes=["cat"], per_class=2, mode="RGB")
    ckpt = _save_with_names(_convnet(3), tmp_path / "m.pt", "state_dict", ["cat", "dog", "bird"])
    proc = cli_inprocess(capsys, "evaluate", "--checkpoint", ckpt, "--data", root)
    assert_cli_run(proc, runs_dir)
    assert (
        "2 of the checkpoint's 3 classes have no images in the dataset (dog, bird)" in proc.stderr
    )


def test_id2label_that_is_not_indexed_from_0_is_refused(tmp_path: Path) -> None:
    model = _convnet(3)
    path = tmp_path / "m.pt"
    torch.save({"state_dict": model.state_dict(), "id2label": {"1": "a", "2": "b", "3": "c"}}, path)
    with pytest.raises(ClassLensError, match=r"id2label has keys \['1', '2', '3'\]; expected"):
        models.load_checkpoint(path)


# --- 6. ONNX: external data beside the file, NHWC inputs, a fixed batch size --------------------


def test_onnx_external_data_beside_the_file_is_read_and_hashed_into_the_run(
    tmp_path: Path, capsys, runs_dir: Path
) -> None:
    import onnx

    root = rgb_dataset(tmp_path / "data")
    model = _convnet(3)
    proto = onnx.load(str(_onnx(model, tmp_path / "one.onnx")))
    ckpt = tmp_path / "m.onnx"
    onnx.save(proto, str(ckpt), save_as_external_data=True, location="m.onnx.data",
              size_threshold=0)  # fmt: skip
    assert (tmp_path / "m.onnx.data").stat().st_size > ckpt.stat().st_size

    run = evaluate_cli(capsys, runs_dir, ckpt, root, "--image-size", RGB_SIZE)

    meta = assert_same_predictions(run, root, model, reference_transform(RGB_SIZE))
    assert list(meta["facts"]["external_data"]) == ["m.onnx.data"]
    # other weights in the data file: another run, not the cached one
    data_file = tmp_path / "m.onnx.data"
    raw = bytearray(data_file.read_bytes())
    raw[:64] = bytes(64)  # the first weights zeroed: the data changed, the .onnx did not
    data_file.write_bytes(bytes(raw))
    again = evaluate_cli(capsys, runs_dir, ckpt, root, "--image-size", RGB_SIZE)
    assert again != run


@pytest.mark.parametrize("where", ["symlink", "folder", "missing"])
def test_onnx_external_data_elsewhere_is_refused(
    where: str, tmp_path: Path, capsys, runs_dir: Path
) -> None:
    import onnx

    root = rgb_dataset(tmp_path / "data")
    proto = onnx.load(str(_onnx(_convnet(3), tmp_path / "one.onnx")))
    (tmp_path / "sub").mkdir()
    ckpt = tmp_path / "sub" / "m.onnx"
    location = "../w.data" if where == "folder" else "w.data"
    onnx.save(proto, str(tmp_path / "sub" / "tmp.onnx"), save_as_external_data=True,
              location="w.data", size_threshold=0)  # fmt: skip
    written = onnx.load(str(tmp_path / "sub" / "tmp.onnx"), load_external_data=False)
    for t in written.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(written, str(ckpt))
    if where == "symlink":
        (tmp_path / "real.data").write_bytes((tmp_path / "sub" / "w.data").read_bytes())
        (tmp_path / "sub" / "w.data").unlink()
        (tmp_path / "sub" / "w.data").symlink_to(tmp_path / "real.data")
    elif where == "folder":
        (tmp_path / "sub" / "w.data").rename(tmp_path / "w.data")
    else:
        (tmp_path / "sub" / "w.data").unlink()

    proc = cli_inprocess(capsys, "evaluate", "--checkpoint", ckpt, "--data", root)

    assert_cli_error(proc, r"m\.onnx refers to external data .* not a file beside it.*one file")


class _Nhwc(nn.Module):
    """A Keras-style classifier: takes (B, H, W, C)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2))


def test_onnx_nhwc_input_is_detected_and_transposed(tmp_path: Path, capsys, runs_dir: Path) -> None:
    root = rgb_dataset(tmp_path / "data")
    net = _convnet(3)
    ckpt = _onnx(_Nhwc(net).eval(), tmp_path / "nhwc.onnx", shape=(2, RGB_SIZE, RGB_SIZE, 3))

    run = evaluate_cli(capsys, runs_dir, ckpt, root)  # size and channels read from the shape

    meta = assert_same_predictions(run, root, net, reference_transform(RGB_SIZE))
    assert meta["facts"]["input_layout"].startswith("NHWC")
    assert meta["preprocessing"]["image_size"] == RGB_SIZE


def test_onnx_with_a_fixed_batch_size_is_run_in_batches_of_that_size(
    tmp_path: Path, capsys, runs_dir: Path
) -> None:
    root = rgb_dataset(tmp_path / "data")  # 6 images: batches of 4 + 2 padded
    model = _convnet(3)
    shape = (4, 3, RGB_SIZE, RGB_SIZE)
    ckpt = _onnx(model, tmp_path / "static.onnx", shape=shape, dynamic_batch=False)

    run = evaluate_cli(capsys, runs_dir, ckpt, root)  # no --batch-size

    meta = assert_same_predictions(run, root, model, reference_transform(RGB_SIZE))
    assert meta["facts"]["fixed_batch"].startswith("4 (batches split and padded")


# --- 6. trusted pickles: a class in __main__, output objects with .logits, {"model": module} ----


def _save_as_main(model: nn.Module, path: Path) -> Path:
    """torch.save a whole model as a training script does when its class lives in __main__."""
    import sys

    cls = type("Net", (type(model),), {"__module__": "__main__", "__qualname__": "Net"})
    main = sys.modules["__main__"]
    model.__class__ = cls
    main.Net = cls  # type: ignore[attr-defined]
    try:
        torch.save(model, path)
    finally:
        del main.Net  # type: ignore[attr-defined]
    return path


@pytest.mark.parametrize("trust", [True, False], ids=["trusted", "untrusted"])
def test_a_pickle_whose_class_lives_in_main_says_so_and_how_to_fix(
    trust: bool, tmp_path: Path, capsys
) -> None:
    root = rgb_dataset(tmp_path / "data")
    ckpt = _save_as_main(_WithSoftmax(_convnet(3)), tmp_path / "whole.pt")
    extra = ("--trust-checkpoint",) if trust else ()

    proc = cli_inprocess(capsys, "evaluate", "--checkpoint", ckpt, "--data", root, *extra)

    line = assert_cli_error(
        proc,
        r"whole\.pt is a whole pickled model.*Net was defined in the script that saved it "
        r"\(__main__\).*torch\.save\(model\.state_dict\(\), path\)",
    )
    assert "damaged" not in line


class _HfOutput(dict):
    """What a Hugging Face model returns: a mapping with a ``.logits`` attribute."""

    @property
    def logits(self) -> torch.Tensor:
        return self["logits"]


class _HfLike(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> _HfOutput:
        return _HfOutput(logits=self.net(x))


@pytest.mark.parametrize("wrapping", ["hf_output", "ultralytics_dict"])
def test_trusted_pickles_of_output_objects_and_model_dicts_are_evaluated(
    wrapping: str, tmp_path: Path, capsys, runs_dir: Path
) -> None:
    root = rgb_dataset(tmp_path / "data")
    net = _convnet(3)
    ckpt = tmp_path / "whole.pt"
    if wrapping == "hf_output":
        model: nn.Module = _HfLike(net).eval()
        torch.save(model, ckpt)
        forward = lambda x: model(x).logits  # noqa: E731
    else:  # Ultralytics: the module (often half precision) under "model", beside metadata
        model = net
        names = list(reversed(sorted(("dog", "cat", "bird"))))
        torch.save({"model": copy_half(net), "classes": names, "epoch": 3}, ckpt)
        forward = lambda x: copy_half(net).float()(x)  # noqa: E731

    run = evaluate_cli(capsys, runs_dir, ckpt, root, "--image-size", RGB_SIZE, "--trust-checkpoint")

    meta = assert_same_predictions(run, root, forward, reference_transform(RGB_SIZE))
    assert meta["checkpoint"]["format"] == "pickled_module"
    if wrapping == "ultralytics_dict":
        assert meta["class_names"] == ["dog", "cat", "bird"]


def copy_half(net: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(net).half()


# --- README "By ecosystem": every save line, run as written, evaluates like the model -----------


def readme_save_lines() -> dict[str, str]:
    """Return {ecosystem: save line} from the README's "By ecosystem" table (rows whose save
    line is code; "not yet" rows have none)."""
    text = (Path(__file__).parents[1] / "README.md").read_text()
    table = text.split("**By ecosystem**", 1)[1].split("\n\n", 2)[1]
    lines = {}
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        code = re.fullmatch(r"`(.+)`", cells[1])
        if code:
            lines[cells[0]] = code.group(1)
    return lines


class _LightningTrainerStub:
    """Writes what Lightning's ``trainer.save_checkpoint`` writes (lightning is not a
    dependency): the LightningModule's state_dict (its net under ``model.``) beside loops,
    optimizer states and ``hyper_parameters``."""

    def __init__(self, lit: nn.Module) -> None:
        self.lit = lit

    def save_checkpoint(self, path: str) -> None:
        torch.save(
            {
                "epoch": 3,
                "global_step": 120,
                "pytorch-lightning_version": "2.4.0",
                "state_dict": self.lit.state_dict(),
                "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 3}}}},
                "callbacks": {},
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-3}]}],
                "lr_schedulers": [],
                "hparams_name": "kwargs",
                "hyper_parameters": {"lr": 1e-3, "num_classes": 3},
            },
            path,
        )


class _LitModule(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.model = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


README_ECOSYSTEMS = ["torchvision", "plain PyTorch dict", "Lightning", "ONNX", "TorchScript",
                     "torch.export `.pt2`"]  # fmt: skip


README_LIBRARIES = ["timm", "Hugging Face `transformers`"]  # run by their own test below


def test_the_readme_lists_every_ecosystem_with_a_save_line() -> None:
    assert sorted(readme_save_lines()) == sorted(README_ECOSYSTEMS + README_LIBRARIES)


@pytest.mark.parametrize(
    "ecosystem",  # torchvision's line saves a full-size resnet18; Lightning's 'model.' prefix;
    # torch.export's line exports the model (~1.5 s CPU): slow
    [
        pytest.param(e, marks=INDEXED)
        if e in ("torchvision", "Lightning", "torch.export `.pt2`")
        else e
        for e in README_ECOSYSTEMS
    ],
)
def test_the_readme_save_lines_evaluate_like_the_model(
    ecosystem: str, tmp_path: Path, capsys, runs_dir: Path, monkeypatch
) -> None:
    root = rgb_dataset(tmp_path / "data")
    model = _resnet18(3, _images(root)) if ecosystem == "torchvision" else _convnet(3)
    line = readme_save_lines()[ecosystem]
    monkeypatch.chdir(tmp_path)
    names = sorted(("dog", "cat", "bird"))
    env = {"torch": torch, "model": model, "class_names": names, "epoch": 3}
    env["trainer"] = _LightningTrainerStub(_LitModule(model))
    exec(line, env)  # noqa: S102 (the README's own line)
    (written,) = re.findall(r'"(m\.[\w.]+)"', line)
    trust = ("--trust-checkpoint",) if ecosystem in ("TorchScript", "torch.export `.pt2`") else ()

    run = evaluate_cli(capsys, runs_dir, tmp_path / written, root, *trust)

    prep = json.loads((run / "meta.json").read_text())["preprocessing"]
    transform = reference_transform(
        prep["image_size"], channels=prep["channels"], mean=tuple(prep["mean"]),
        std=tuple(prep["std"]), resize=prep["resize"],
    )  # fmt: skip
    meta = assert_same_predictions(run, root, model, transform)
    assert meta["class_names"] == names


# --- timm: a state_dict built with timm's own registry and eval transform -----------------------


def _odd_sized_dataset(root: Path) -> Path:
    """Return an RGB dataset whose images are not square (the crop matters) and differ in size."""
    rgb_dataset(root, per_class=2)
    for i, path in enumerate(_images(root)):
        with Image.open(path) as im:
            im.resize((57 + 13 * i, 90 - 5 * i), Image.BILINEAR).save(path)
    return root


def _timm_model(name: str, images: list[Path], num_classes: int = 3) -> tuple[nn.Module, Callable]:
    """Return (timm model with random weights made input-sensitive, timm's eval transform)."""
    import timm
    from timm.data import create_transform, resolve_data_config

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    transform = create_transform(**resolve_data_config({}, model=model))
    x = torch.stack([transform(Image.open(p).convert("RGB")) for p in images])
    return calibrate_bn(model, x), transform


@pytest.mark.slow
@pytest.mark.parametrize("how", ["detected", "named", "train_py"])
def test_timm_checkpoints_predict_like_timms_model_and_eval_transform(
    how: str, tmp_path: Path, capsys, runs_dir: Path
) -> None:
    root = _odd_sized_dataset(tmp_path / "data")
    model, transform = _timm_model("resnet10t", _images(root))
    extra: tuple[str, ...] = ()
    if how == "detected":  # the file name only orders the candidates tried
        ckpt = tmp_path / "resnet10t.safetensors"
        from safetensors.torch import save_file

        save_file(model.state_dict(), str(ckpt))
    elif how == "named":
        ckpt = tmp_path / "m.pth"
        torch.save(model.state_dict(), ckpt)
        extra = ("--arch", "timm:resnet10t")
    else:  # what timm's train.py writes: the name under "arch", its args as a Namespace
        ckpt = tmp_path / "model_best.pth.tar"
        args = argparse.Namespace(model="resnet10t", lr=0.1)
        torch.save({"epoch": 3, "arch": "resnet10t", "state_dict": model.state_dict(),
                    "args": args, "metric": 71.2}, ckpt)  # fmt: skip

    run = evaluate_cli(capsys, runs_dir, ckpt, root, *extra)

    meta = assert_same_predictions(run, root, model, transform)
    prep, sources = meta["preprocessing"], meta["preprocessing_source"]
    cfg = model.pretrained_cfg
    assert prep["image_size"] == cfg["input_size"][1] == 176  # timm's cfg, not the default 224
    assert (prep["interpolation"], prep["crop_pct"]) == ("bicubic", cfg["crop_pct"])
    assert all(sources[k] == "read" for k in ("image_size", "mean", "std", "interpolation"))
    assert meta["architecture"] == "timm:resnet10t"
    assert "bicubic" in meta["facts"]["preprocessing"]
    assert "pretrained=False" in meta["facts"]["weights"]["built"]


@pytest.mark.slow
def test_a_timm_checkpoint_that_matches_no_model_names_the_closest_and_onnx(
    tmp_path: Path, capsys, runs_dir: Path
) -> None:
    root = rgb_dataset(tmp_path / "data")
    model, _ = _timm_model("resnet10t", _images(root))
    sd = model.state_dict()
    sd["fc.weight"] = torch.zeros(3, 256)  # a head that no resnet10t has (512 features)
    torch.save(sd, tmp_path / "resnet10t.pt")

    proc = cli_inprocess(capsys, "evaluate", "--checkpoint", tmp_path / "resnet10t.pt",
                         "--data", root, "--device", "cpu")  # fmt: skip

    line = assert_cli_error(proc, r"closest timm models: resnet10t \(\d+/\d+ tensors\)")
    assert "ONNX" in line and "--arch timm:NAME" in line


def test_an_unknown_timm_name_lists_close_ones(tmp_path: Path) -> None:
    torch.save(_convnet(3).state_dict(), tmp_path / "m.pt")
    with pytest.raises(
        ClassLensError, match=r"timm has no architecture 'resnet10x'.*timm:resnet10t"
    ):
        models.load_checkpoint(tmp_path / "m.pt", arch="timm:resnet10x")


# --- Hugging Face transformers: a save_pretrained folder, or the two files -----------------------


def _hf_vit(folder: Path, images: list[Path]) -> tuple[nn.Module, Callable]:
    """Save a tiny ViT classifier (random weights, a head scaled so the outputs depend on the
    input) and its image processor in ``folder``; return (model, the processor's transform)."""
    from transformers import (
        AutoImageProcessor,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    torch.manual_seed(0)
    names = {0: "bird", 1: "cat", 2: "dog"}
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, image_size=32, patch_size=8, num_labels=3,
                       id2label=names, label2id={v: k for k, v in names.items()})  # fmt: skip
    model = ViTForImageClassification(config).eval()
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    processor = AutoImageProcessor.from_pretrained(folder)  # the library's own, as a user's

    def transform(im: Image.Image) -> torch.Tensor:
        return processor(images=im.convert("RGB"), return_tensors="pt")["pixel_values"][0]

    with torch.no_grad():  # a head on the standardised features of these images
        x = torch.stack([transform(Image.open(p)) for p in images])
        h = model.vit(pixel_values=x).last_hidden_state[:, 0]
        mean, std = h.mean(0), h.std(0) + 1e-6
        model.classifier.weight.copy_(torch.randn(3, h.shape[1]) / std)
        model.classifier.bias.copy_(-model.classifier.weight @ mean)
    model.save_pretrained(folder)  # the README's line
    return model, transform


def _hf_forward(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: model(pixel_values=x).logits


@pytest.mark.slow
@pytest.mark.parametrize("given", ["folder", "weights_file", "two_files_renamed"])
def test_hugging_face_classifiers_predict_like_the_model_and_its_image_processor(
    given: str, tmp_path: Path, capsys, runs_dir: Path
) -> None:
    root = _odd_sized_dataset(tmp_path / "data")
    folder = tmp_path / "m"
    model, transform = _hf_vit(folder, _images(root))
    ckpt = {"folder": folder, "weights_file": folder / "model.safetensors"}.get(given)
    if given == "two_files_renamed":  # as uploaded: any name for the weights, config.json beside
        upload = tmp_path / "upload"
        upload.mkdir()
        (folder / "model.safetensors").rename(upload / "vit-best.safetensors")
        (folder / "config.json").rename(upload / "config.json")
        ckpt = upload / "vit-best.safetensors"
    # without preprocessor_config.json the normalisation is the user's to type
    typed = ("--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5")
    typed = typed if given == "two_files_renamed" else ()

    run = evaluate_cli(capsys, runs_dir, ckpt, root, *typed)

    meta = assert_same_predictions(run, root, _hf_forward(model), transform)
    _, probs, _ = run_probs(run, root)
    assert probs.std(0).max() > 0.05  # the outputs depend on the image: the test can fail
    assert meta["class_names"] == ["bird", "cat", "dog"]  # from id2label
    assert meta["architecture"] == "hf:ViTForImageClassification"
    prep = meta["preprocessing"]
    assert (prep["image_size"], prep["resize"], prep["mean"]) == (32, "stretch", [0.5] * 3)
    assert meta["preprocessing_source"]["image_size"] == "read"
    if given == "two_files_renamed":  # no preprocessor_config.json: the size from config.json
        assert meta["preprocessing_source"]["mean"] == "typed"
        assert "config.json's image_size (32)" in meta["facts"]["preprocessing"]
        return
    assert "preprocessor_config.json" in meta["facts"]["preprocessing"]


@pytest.mark.slow  # imports transformers (3-7 s on the shared VM)
def test_a_hugging_face_config_with_remote_code_or_an_unknown_model_type_is_refused(
    tmp_path: Path, capsys
) -> None:
    root = rgb_dataset(tmp_path / "data")
    folder = tmp_path / "m"
    folder.mkdir()
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))
    config = {"model_type": "vit", "architectures": ["ViTForImageClassification"],
              "auto_map": {"AutoModelForImageClassification": "modeling_x.Net"}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))

    proc = cli_inprocess(capsys, "evaluate", "--checkpoint", folder, "--data", root)
    assert_cli_error(proc, r"custom model code \(auto_map\).*never runs code.*ONNX")

    config = {"model_type": "my_net", "architectures": ["MyNetForImageClassification"]}
    (folder / "config.json").write_text(json.dumps(config))
    proc = cli_inprocess(capsys, "evaluate", "--checkpoint", folder, "--data", root)
    assert_cli_error(proc, r"does not know the model type 'my_net'.*Export the model to ONNX")


def _fewer_layers_in_the_config(folder: Path, marker: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))


def _a_pytorch_model_bin_smuggling_a_call(folder: Path, marker: Path) -> None:
    from safetensors.torch import load_file

    sd = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save({**sd, "evil": _Call(marker)}, folder / "pytorch_model.bin")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "wording"),
    [
        (
            _fewer_layers_in_the_config,
            r"do not fit ViTForImageClassification as config.json describes",
        ),
        (_a_pytorch_model_bin_smuggling_a_call, r"pytorch_model\.bin is not a safe weights file"),
    ],
    ids=["weights_that_do_not_fit_their_config", "pytorch_model_bin_smuggling_a_call"],
)
def test_an_edited_hugging_face_folder_is_refused_and_its_code_never_runs(
    edit: Callable[[Path, Path], None], wording: str, tmp_path: Path, capsys
) -> None:
    root = rgb_dataset(tmp_path / "data")
    folder, marker = tmp_path / "m", tmp_path / "pwned"
    _hf_vit(folder, _images(root))
    edit(folder, marker)

    proc = cli_inprocess(capsys, "evaluate", "--checkpoint", folder, "--data", root)

    assert_cli_error(proc, wording)
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("ecosystem", README_LIBRARIES)
def test_the_readme_save_lines_of_timm_and_hugging_face_evaluate_like_the_model(
    ecosystem: str, tmp_path: Path, capsys, runs_dir: Path, monkeypatch
) -> None:
    root = _odd_sized_dataset(tmp_path / "data")
    if ecosystem == "timm":
        model, transform = _timm_model("resnet10t", _images(root))
        forward = model
    else:
        hf, transform = _hf_vit(tmp_path / "made", _images(root))
        model, forward = hf, _hf_forward(hf)
        from transformers import AutoImageProcessor

        env_processor = AutoImageProcessor.from_pretrained(tmp_path / "made")
    line = readme_save_lines()[ecosystem]
    monkeypatch.chdir(tmp_path)
    env = {"torch": torch, "model": model}
    if ecosystem != "timm":
        env["processor"] = env_processor
    exec(line, env)  # noqa: S102 (the README's own line)
    (written,) = re.findall(r'"(m(?:\.[\w.]+)?)"', line.split(";")[0])

    run = evaluate_cli(capsys, runs_dir, tmp_path / written, root)

    meta = assert_same_predictions(run, root, forward, transform)
    assert meta["architecture"] in ("timm:resnet10t", "hf:ViTForImageClassification")


@pytest.mark.slow
def test_timm_and_transformers_are_imported_only_when_a_checkpoint_needs_them(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    torch.save(_convnet(3).state_dict(), tmp_path / "m.pt")
    code = (
        "import sys; import ui.new_run; from core.engine import models, evaluate; "
        f"models.load_checkpoint({str(tmp_path / 'm.pt')!r}); "
        "print(sorted(m for m in ('timm', 'transformers') if m in sys.modules))"
    )
    root = Path(__file__).parents[1]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


class _Upload:
    def __init__(self, name: str, data: bytes) -> None:
        self.name, self.data = name, data

    def getvalue(self) -> bytes:
        return self.data


@pytest.mark.slow
def test_a_hugging_face_model_uploaded_as_its_files_is_stored_as_one_model(
    tmp_path: Path, capsys, runs_dir: Path
) -> None:
    from core.hosting.settings import Settings
    from ui.new_run import save_checkpoint_uploads

    root = _odd_sized_dataset(tmp_path / "data")
    folder = tmp_path / "m"
    model, transform = _hf_vit(folder, _images(root))
    files = ("model.safetensors", "config.json", "preprocessor_config.json")
    uploads = [_Upload(n, (folder / n).read_bytes()) for n in files]

    saved, refused = save_checkpoint_uploads(uploads, Settings())
    assert refused == [] and len(saved) == 1
    assert sorted(p.name for p in saved[0].parent.iterdir()) == sorted(files)
    run = evaluate_cli(capsys, runs_dir, saved[0], root)
    meta = assert_same_predictions(run, root, _hf_forward(model), transform)
    assert meta["class_names"] == ["bird", "cat", "dog"]

    two = [*uploads, _Upload("other.safetensors", uploads[0].data)]
    assert save_checkpoint_uploads(two, Settings())[0] == []
    stray = [uploads[0], _Upload("labels.json", b"{}")]
    saved, refused = save_checkpoint_uploads(stray, Settings())
    assert saved == [] and "labels.json cannot be read with it" in refused[0]
