"""Batched prediction: image files -> probabilities, on CUDA when there is one.

The pipeline: loader workers decode and resize on the CPU into uint8 tensors (4x less to
copy than float32); on CUDA the batches are pinned and copied with ``non_blocking``; the
device converts to float32 and normalises. The forward pass may run under bf16/fp16
autocast when the caller asks for it, but probabilities are always the softmax of float32
logits. Models run by an external runtime (``external_runtime = True``, e.g. ONNX) get plain
float32 NCHW tensors: no channels_last, autocast or torch.compile.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from core.engine.data import ImageDataset
from core.engine.preprocessing import Preprocessing
from core.errors import ClassLensError

Progress = Callable[[int, int], None]  # (images done, images total)

# --precision values -> the autocast dtype (None: plain float32).
PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
CPU_BATCH_SIZE = 64
CUDA_FIRST_BATCH_SIZE = 512  # automatic batch size on CUDA: tried first, halved on OOM
_FLUSH_FLOATS = 1 << 24  # move results to the host every ~64 MB (one sync, not one per batch)


@dataclass(frozen=True)
class Predictions:
    """What the model said about each image that could be decoded."""

    index: np.ndarray  # (n,) int64 positions into the input path list
    y_pred: np.ndarray  # (n,) int64
    confidence: np.ndarray  # (n,) float32: the top probability
    loss: np.ndarray  # (n,) float32: cross-entropy against the true label
    probs: np.ndarray  # (n, n_classes) float32 softmax
    failed: dict[int, str]  # input position -> why the image could not be decoded
    batch_size: int = 0  # images per forward pass in the end (an automatic size may shrink)
    # input position -> a warning about an image that was decoded (e.g. blank after conversion)
    notes: dict[int, str] = field(default_factory=dict)


def resolve_device(device: str = "auto") -> torch.device:
    """Return the torch device for ``auto|cpu|cuda[:N]``; cuda without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ClassLensError(
            "--device cuda was asked for but no CUDA GPU is visible; use auto or cpu."
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise ClassLensError(f"unknown device {device!r}: use auto, cpu or cuda.")
    return torch.device(device)


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is one of PRECISIONS, else raise a ClassLensError."""
    if precision not in PRECISIONS:
        raise ClassLensError(
            f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}."
        )
    return precision


def default_batch_size(device: torch.device) -> int:
    """Return the batch size used when the user sets none (CUDA halves it on OOM)."""
    return CUDA_FIRST_BATCH_SIZE if device.type == "cuda" else CPU_BATCH_SIZE


def normalise_batch(
    batch: torch.Tensor,
    prep: Preprocessing,
    device: torch.device,
    *,
    mean_std: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Return the uint8 (B, C, H, W) host batch as normalised float32 on ``device``: the one
    pixel transform of evaluation, Grad-CAM and embeddings (mean_std: precomputed tensors)."""
    mean, std = mean_std or _mean_std(prep, device)
    x = batch.to(device, non_blocking=True).float().div_(255.0)
    return x.sub_(mean).div_(std)


def _mean_std(prep: Preprocessing, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(prep.mean, dtype=torch.float32).view(1, -1, 1, 1).to(device)
    std = torch.tensor(prep.std, dtype=torch.float32).view(1, -1, 1, 1).to(device)
    return mean, std


def logits_of(out: Any) -> Any:
    """Return the (B, C) scores in a model's output: the tensor itself, the first of a tuple
    (aux heads), or ``.logits`` / ``["logits"]`` of an output object (Hugging Face)."""
    if torch.is_tensor(out):
        return out
    logits = getattr(out, "logits", None)
    if logits is None and isinstance(out, dict):
        logits = out.get("logits")
    if torch.is_tensor(logits):
        return logits
    if isinstance(out, (tuple, list)) and out:
        return logits_of(out[0])
    return out


def output_width(
    module: nn.Module, prep: Preprocessing, device: torch.device, *, batch_size: int = 1
) -> int:
    """Return the number of logits the model gives for one blank image of this preprocessing.

    With ``batch_size`` > 1 it also checks the model takes batches (a ``torch.export`` model
    exported without a dynamic batch dimension only takes the example's batch size).
    """
    x = torch.zeros((1, prep.channels, prep.image_size, prep.image_size), device=device)
    try:
        with torch.inference_mode():
            out = module(x)
    except Exception as exc:  # wrong channels or input size for a code-bearing model
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ClassLensError(
            f"the model cannot run on {prep.channels}-channel {prep.image_size}x{prep.image_size} "
            f"images ({first}). Pass the --channels, --image-size (and --mean/--std) it was "
            "trained with."
        ) from None
    if batch_size > 1:
        try:
            with torch.inference_mode():
                module(torch.cat([x, x]))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ClassLensError(
                f"the model runs on one image but not on a batch of 2 ({first}); it was probably "
                "exported with a fixed batch size. Pass --batch-size 1, or export it with a "
                "dynamic batch dimension."
            ) from None
    out = logits_of(out)
    if out.ndim != 2:
        raise ClassLensError(
            f"the model returns shape {tuple(out.shape)}; a classifier returns (batch, classes)."
        )
    return int(out.shape[1])


# What a model's outputs are, and how each becomes log-probabilities (see ``output_kind``).
OUTPUT_KINDS = {
    "logits": "softmax",
    "log_probabilities": "none (the outputs are log-probabilities already)",
    "probabilities": "none (the outputs are probabilities already)",
}
_ROW_TOLERANCE = 1e-3  # |row sum - 1| for probabilities (fp16 exports round at ~1e-3)


def _final_activation(module: nn.Module) -> str | None:
    """Return "probabilities"/"log_probabilities" when the module says its last step is a
    Softmax/LogSoftmax (an ONNX graph's output node, or the last layer), else None."""
    declared = getattr(module, "final_activation", None)  # OnnxModule reads it from its graph
    if declared:
        return str(declared)
    if isinstance(module, torch.jit.ScriptModule):
        return None
    last = None
    for last in module.modules():  # noqa: B007 (the last one is wanted)
        pass
    if isinstance(last, nn.Softmax):
        return "probabilities"
    if isinstance(last, nn.LogSoftmax):
        return "log_probabilities"
    return None


def _rows_kind(out: torch.Tensor) -> str:
    """Return the kind of one batch of outputs (B, C) judged by its rows alone."""
    out = out.float()
    if out.shape[1] < 2 or not torch.isfinite(out).all():
        return "logits"
    if (out >= 0).all() and ((out.sum(1) - 1).abs() <= _ROW_TOLERANCE).all():
        return "probabilities"
    if (out <= 0).all() and (torch.logsumexp(out, 1).abs() <= _ROW_TOLERANCE).all():
        return "log_probabilities"
    return "logits"


def output_kind(module: nn.Module, prep: Preprocessing, device: torch.device) -> tuple[str, str]:
    """Return (kind, evidence): whether the model gives logits, probabilities or
    log-probabilities (an OUTPUT_KINDS key), so that softmax is never applied twice.

    From the model's last layer or ONNX output node when it has one, else from its outputs on
    three probe images (blank and two noise images, one at a time: static batches work).
    """
    static = _final_activation(module)
    if static:
        return static, "the model's last operation is a " + (
            "Softmax" if static == "probabilities" else "LogSoftmax"
        )
    shape = (1, prep.channels, prep.image_size, prep.image_size)
    gen = torch.Generator().manual_seed(0)
    mean, std = _mean_std(prep, torch.device("cpu"))
    noise = [(torch.rand(shape, generator=gen) - mean) / std for _ in range(2)]  # pixel noise
    kinds = set()
    with torch.inference_mode():
        for x in [torch.zeros(shape), *noise]:
            try:
                out = module(x.to(device))
            except Exception:  # a model may refuse odd input: judge by the probes it takes
                continue
            kinds.add(_rows_kind(logits_of(out)))
    if len(kinds) == 1 and kinds != {"logits"}:
        (kind,) = kinds
        what = "non-negative and sum to 1" if kind == "probabilities" else "exp-sum to 1"
        return kind, f"its outputs on probe images are rows that {what}"
    return "logits", "its outputs on probe images are not probabilities"


def to_log_probs(out: torch.Tensor, kind: str) -> torch.Tensor:
    """Return float32 log-probabilities (B, C) from model outputs of ``kind``."""
    out = out.float()
    if kind == "probabilities":
        p = out.clamp_min(0)
        return torch.log((p / p.sum(1, keepdim=True).clamp_min(1e-30)).clamp_min(1e-38))
    # logits, or log-probabilities: log_softmax leaves those unchanged (up to rounding)
    return torch.log_softmax(out, dim=1)


def default_workers(n_images: int, batch_size: int, device: torch.device | None = None) -> int:
    """Return DataLoader workers: none for small jobs (start-up dominates), else up to 4 on
    CPU (the forward pass needs the cores too) and up to 16 on CUDA, shared among the ranks
    of this machine under torchrun."""
    if n_images < 8 * batch_size:
        return 0
    cores = (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    cap = 16 if device is not None and device.type == "cuda" else 4
    return max(0, min(cap, cores))


def _is_external(module: nn.Module) -> bool:
    return bool(getattr(module, "external_runtime", False))


def _is_convnet(module: nn.Module) -> bool:
    if isinstance(module, torch.jit.ScriptModule):  # opaque: leave its layout alone
        return False
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


@dataclass(frozen=True)
class _Runner:
    """The module as prepared for one device and precision, and how to feed it."""

    module: nn.Module
    channels_last: bool  # inputs converted to channels_last (the weights already are)
    autocast: torch.dtype | None  # forward under autocast to this dtype


def prepare(
    module: nn.Module,
    device: torch.device,
    *,
    precision: str = "fp32",
    compile: bool = False,
    channels_last: bool | None = None,
) -> _Runner:
    """Return the module moved to ``device`` in eval mode with the requested speed-ups.

    ``channels_last=None`` means: on CUDA for convolutional nets (CPU results stay as they
    were). External-runtime modules get none of channels_last, autocast or compile.
    """
    dtype = PRECISIONS[check_precision(precision)]
    module = module.to(device)
    with contextlib.suppress(NotImplementedError):  # torch.export modules refuse .eval()
        module.eval()
    if _is_external(module):
        return _Runner(module, False, None)
    if channels_last is None:
        channels_last = device.type == "cuda" and _is_convnet(module)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    if compile and not isinstance(module, torch.jit.ScriptModule):
        module = torch.compile(module)  # type: ignore[assignment]  # a callable module wrapper
    return _Runner(module, bool(channels_last), dtype)


class _Forward:
    """Runs the model on a batch in chunks; with ``shrink`` a CUDA out-of-memory error halves
    the chunk and retries (the automatic batch size), else it is reported with the fix."""

    def __init__(
        self, runner: _Runner, device: torch.device, *, shrink: bool, outputs: str = "logits"
    ) -> None:
        self.runner, self.device, self.shrink = runner, device, shrink
        self.outputs = outputs  # an OUTPUT_KINDS key
        self.chunk: int | None = None  # set after the first OOM: the size that fits

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Return float32 log-probabilities (B, n_classes) for normalised inputs ``x``."""
        while True:
            chunk = self.chunk or len(x)
            try:
                return torch.cat([self._once(x[i : i + chunk]) for i in range(0, len(x), chunk)])
            except torch.cuda.OutOfMemoryError:
                if not self.shrink or chunk == 1:
                    raise ClassLensError(
                        f"out of GPU memory at batch size {chunk}. Pass a smaller --batch-size "
                        "(or leave it out to let ClassLens find one), or --precision bf16."
                    ) from None
                self.chunk = chunk // 2
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()

    def _once(self, x: torch.Tensor) -> torch.Tensor:
        r = self.runner
        if r.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        amp = (
            torch.autocast(self.device.type, dtype=r.autocast)
            if r.autocast is not None
            else contextlib.nullcontext()
        )
        with amp:
            logits = r.module(x)
        return to_log_probs(logits_of(logits), self.outputs)  # float32 whatever the autocast dtype


@contextlib.contextmanager
def _threads_beside_workers(device: torch.device, workers: int) -> Iterator[None]:
    """On CPU with loader workers, leave them their cores: torch's OpenMP threads that find
    their core taken spin-wait (3-5x slower on a 2-core box, BENCHMARKS.md)."""
    before = torch.get_num_threads()
    if device.type == "cpu" and workers:
        torch.set_num_threads(max(1, min(before, (os.cpu_count() or 1) - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def predict(
    module: nn.Module,
    paths: list[Path],
    labels: np.ndarray,
    prep: Preprocessing,
    *,
    device: torch.device,
    batch_size: int | None = 64,
    num_workers: int | None = None,
    progress: Progress | None = None,
    precision: str = "fp32",
    compile: bool = False,
    channels_last: bool | None = None,
    outputs: str = "logits",
    corrupt: Callable[[Image.Image, int], Image.Image] | None = None,
) -> Predictions:
    """Return the model's predictions for ``paths`` (true ``labels``, shape (n,), for the loss).

    ``batch_size=None`` picks one: 64 on CPU; on CUDA 512, halved whenever it runs out of
    memory. See ``prepare`` for ``precision``, ``compile`` and ``channels_last``; ``outputs``
    is what the model returns (``output_kind``): softmax is applied to logits only.
    ``corrupt(image, position)`` changes each decoded image before preprocessing
    (core.engine.corruptions.Corrupt; picklable for loader workers).
    """
    runner = prepare(
        module, device, precision=precision, compile=compile, channels_last=channels_last
    )
    forward = _Forward(runner, device, shrink=batch_size is None, outputs=outputs)
    batch_size = batch_size or default_batch_size(device)
    workers = (
        default_workers(len(paths), batch_size, device) if num_workers is None else num_workers
    )
    cuda = device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        ImageDataset(paths, prep, corrupt),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=cuda,
        prefetch_factor=4 if cuda and workers else None,
    )
    mean_std = _mean_std(prep, device)
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (index on host, logp on device)
    outs: list[tuple[torch.Tensor, torch.Tensor]] = []  # the same, on the host
    failed: dict[int, str] = {}
    notes: dict[int, str] = {}
    done = 0
    with torch.inference_mode(), _threads_beside_workers(device, workers):
        for images, idx, errors, warns in loader:
            notes.update({int(idx[i]): w for i, w in enumerate(warns) if w})
            if any(errors):
                bad = [i for i, e in enumerate(errors) if e]
                failed.update({int(idx[i]): errors[i] for i in bad})
                keep = torch.tensor([not e for e in errors], dtype=torch.bool)
                images, idx = images[keep], idx[keep]
            if len(idx):
                pending.append(
                    (idx, forward(normalise_batch(images, prep, device, mean_std=mean_std)))
                )
                if sum(p[1].numel() for p in pending) >= _FLUSH_FLOATS:
                    outs += [(i, logp.cpu()) for i, logp in pending]
                    pending.clear()
            done += len(errors)
            if progress:
                progress(done, len(paths))
    outs += [(i, logp.cpu()) for i, logp in pending]
    if outs:
        index_t = torch.cat([o[0] for o in outs])
        logp = torch.cat([o[1] for o in outs])
        loss = -logp.gather(1, labels_t[index_t].unsqueeze(1)).squeeze(1)
        index = index_t.numpy().astype(np.int64)
        probs = logp.exp().numpy().astype(np.float32)
        loss_np = loss.numpy().astype(np.float32)
    else:
        index, loss_np = np.zeros(0, np.int64), np.zeros(0, np.float32)
        probs = np.zeros((0, 0), np.float32)
    y_pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0, np.float32)
    used = forward.chunk or batch_size
    return Predictions(
        index, y_pred.astype(np.int64), confidence, loss_np, probs, failed, used, notes
    )
