"""The inference path: uint8 decode + device normalisation equals the float reference; the
speed options (channels_last, bf16 autocast, compile, automatic batch size) keep results
and the run id; external-runtime models get plain float32 NCHW; precision in the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from core import runs
from core.engine import evaluate, inference
from core.engine.preprocessing import Preprocessing
from core.errors import ClassLensError
from tests.conftest import (
    SORTED_CLASSES,
    cli_inprocess,
    make_model,
    write_dataset,
)

CPU = torch.device("cpu")
RGB = Preprocessing(
    image_size=16, channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)


@pytest.fixture
def rgb_images(tmp_path: Path) -> tuple[list[Path], np.ndarray]:
    """Return 10 RGB 20x20 PNGs (resized to 16 by the pipeline) and labels 0..2."""
    root = write_dataset(tmp_path / "rgb", splits=None, per_class=4, size=20, mode="RGB")
    paths = sorted(root.glob("*/*.png"))[:10]
    return paths, np.arange(len(paths)) % 3


def _reference_probs(model: torch.nn.Module, paths: list[Path], prep: Preprocessing) -> np.ndarray:
    """The float path: PIL resize, torchvision to_tensor (float on the host) and normalize."""
    xs = []
    for p in paths:
        img = Image.open(p).convert("RGB").resize((prep.image_size,) * 2, Image.Resampling.BILINEAR)
        xs.append(TF.normalize(TF.to_tensor(img), list(prep.mean), list(prep.std)))
    with torch.inference_mode():
        return torch.softmax(model(torch.stack(xs)), dim=1).numpy()


def test_uint8_pipeline_equals_the_float_reference(rgb_images: tuple) -> None:
    paths, labels = rgb_images
    model = make_model(in_channels=3)
    pred = inference.predict(model, paths, labels, RGB, device=CPU, batch_size=4)

    ref = _reference_probs(model, paths, RGB)
    assert pred.index.tolist() == list(range(10)) and pred.failed == {}
    np.testing.assert_allclose(pred.probs, ref, atol=1e-6)
    assert pred.y_pred.tolist() == ref.argmax(1).tolist()
    np.testing.assert_allclose(pred.loss, -np.log(ref[np.arange(10), labels]), rtol=1e-5)
    assert pred.batch_size == 4


def test_channels_last_gives_the_same_probabilities(rgb_images: tuple) -> None:
    paths, labels = rgb_images
    plain = inference.predict(make_model(in_channels=3), paths, labels, RGB, device=CPU)
    model = make_model(in_channels=3)
    fast = inference.predict(model, paths, labels, RGB, device=CPU, channels_last=True)

    conv = model.features[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    np.testing.assert_allclose(fast.probs, plain.probs, atol=1e-5)
    assert fast.y_pred.tolist() == plain.y_pred.tolist()


def test_channels_last_is_off_on_cpu_by_default() -> None:
    assert not inference.prepare(make_model(), CPU).channels_last


def _record_conv_dtype(model: torch.nn.Module) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    model.features[0].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    return seen


def test_bf16_autocast_on_cpu_keeps_float32_probabilities(rgb_images: tuple) -> None:
    paths, labels = rgb_images
    model = make_model(in_channels=3)
    seen = _record_conv_dtype(model)
    fp32 = inference.predict(model, paths, labels, RGB, device=CPU)
    bf16 = inference.predict(model, paths, labels, RGB, device=CPU, precision="bf16")

    assert seen == [torch.float32] + [torch.bfloat16]  # one batch each: autocast did run
    assert bf16.probs.dtype == np.float32
    np.testing.assert_allclose(bf16.probs.sum(axis=1), 1.0, atol=1e-5)  # softmax in float32
    np.testing.assert_allclose(bf16.probs, fp32.probs, atol=0.03)  # bf16: ~3 digits


class ExternalRuntime(torch.nn.Module):
    """Stands in for the ONNX wrapper: records what it is fed."""

    external_runtime = True

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)  # a conv net, yet not to be made channels_last
        self.fed: list[tuple[torch.dtype, bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fed.append((x.dtype, x.is_contiguous(), torch.is_autocast_enabled("cpu")))
        return x.float().mean(dim=(2, 3))


def test_external_runtime_models_get_plain_float32(
    rgb_images: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, labels = rgb_images
    monkeypatch.setattr(torch, "compile", lambda m: pytest.fail("compiled an external model"))
    module = ExternalRuntime()
    inference.predict(
        module, paths, labels, RGB, device=CPU, precision="bf16", compile=True, channels_last=True
    )
    assert module.fed == [(torch.float32, True, False)]


def test_compile_is_applied_only_when_asked(
    rgb_images: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, labels = rgb_images
    compiled: list[torch.nn.Module] = []
    monkeypatch.setattr(torch, "compile", lambda m: compiled.append(m) or m)  # real: minutes
    model = make_model(in_channels=3)
    inference.predict(model, paths, labels, RGB, device=CPU)
    assert compiled == []
    inference.predict(model, paths, labels, RGB, device=CPU, compile=True)
    assert compiled == [model]


class RunsOutAt(torch.nn.Module):
    """A model that raises CUDA's out-of-memory error on batches larger than ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.inner, self.sizes = limit, make_model(in_channels=3), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        if len(x) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.inner(x)


def test_automatic_batch_size_halves_on_out_of_memory(rgb_images: tuple) -> None:
    paths, labels = rgb_images
    model = RunsOutAt(limit=3)
    pred = inference.predict(model, paths, labels, RGB, device=CPU, batch_size=None)

    ref = inference.predict(make_model(in_channels=3), paths, labels, RGB, device=CPU)
    np.testing.assert_allclose(pred.probs, ref.probs, atol=1e-6)
    assert pred.batch_size == 2  # the first halving that fits
    assert model.sizes == [10, 5, 2, 2, 2, 2, 2]  # one batch of 10: tried, halved twice


def test_out_of_memory_with_a_given_batch_size_says_what_to_do(rgb_images: tuple) -> None:
    paths, labels = rgb_images
    with pytest.raises(ClassLensError, match=r"batch size 8\. Pass a smaller --batch-size"):
        inference.predict(RunsOutAt(limit=3), paths, labels, RGB, device=CPU, batch_size=8)


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ClassLensError, match="unknown precision 'fp8': use one of fp32, bf16"):
        inference.check_precision("fp8")


# --- precision and the run id ------------------------------------------------------------------


def test_fp32_keeps_the_content_id_and_bf16_is_a_run_of_its_own(
    checkpoint: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[object] = []
    monkeypatch.setattr(torch, "compile", lambda m: compiled.append(m) or m)
    fp32 = evaluate.evaluate(checkpoint, dataset, device="cpu")
    same = evaluate.evaluate(checkpoint, dataset, device="cpu", compile=True, batch_size=5)
    bf16 = evaluate.evaluate(checkpoint, dataset, device="cpu", precision="bf16")

    meta = json.loads((fp32.path / "meta.json").read_text())
    content_id = runs.run_id(
        checkpoint_sha256=meta["checkpoint"]["sha256"],
        dataset_fingerprint=meta["dataset"]["fingerprint"],
        preprocessing=meta["preprocessing"],
        class_names=list(SORTED_CLASSES),
    )
    assert fp32.run_id == content_id == same.run_id  # compile, batch size: the cached run
    assert compiled == []  # ... and no inference for it
    assert bf16.run_id != fp32.run_id
    assert (fp32.meta["precision"], bf16.meta["precision"]) == ("fp32", "bf16")
    assert bf16.predictions().y_true.tolist() == fp32.predictions().y_true.tolist()


def test_cli_precision_flag_and_its_error(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, dataset: Path, runs_dir: Path
) -> None:
    proc = cli_inprocess(capsys, "evaluate", "--checkpoint", checkpoint, "--data", dataset,
                         "--device", "cpu", "--precision", "bf16")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((Path(proc.stdout.strip().splitlines()[-1]) / "meta.json").read_text())
    assert meta["precision"] == "bf16" and meta["batch_size"] == 64
    assert "bf16" in proc.stderr  # the progress line names it

    with pytest.raises(SystemExit) as exc:
        cli_inprocess(capsys, "evaluate", "--checkpoint", checkpoint, "--data", dataset,
                      "--precision", "fp8")  # fmt: skip
    assert exc.value.code == 2
    assert "invalid choice: 'fp8'" in capsys.readouterr().err


def test_only_nets_with_convolutions_count_as_conv_nets() -> None:
    assert inference._is_convnet(make_model())
    assert not inference._is_convnet(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)))


class RecordsThreads(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner, self.threads = make_model(in_channels=3), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.threads.append(torch.get_num_threads())
        return self.inner(x)


def test_cpu_forward_leaves_the_loader_workers_their_cores(
    rgb_images: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, labels = rgb_images
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        model = RecordsThreads()
        inference.predict(model, paths, labels, RGB, device=CPU, batch_size=5, num_workers=2)
        assert model.threads == [2, 2] and torch.get_num_threads() == 3  # 4 cores - 2 workers
        inference.predict(model, paths, labels, RGB, device=CPU, num_workers=0)
        assert model.threads[-1] == 3  # no workers: every thread for the forward pass
    finally:
        torch.set_num_threads(before)
