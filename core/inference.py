"""Batched prediction: image files -> probabilities, on CUDA when there is one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.data import ImageDataset
from core.errors import ClassLensError
from core.preprocessing import Preprocessing

Progress = Callable[[int, int], None]  # (images done, images total)


@dataclass(frozen=True)
class Predictions:
    """What the model said about each image that could be decoded."""

    index: np.ndarray  # (n,) int64 positions into the input path list
    y_pred: np.ndarray  # (n,) int64
    confidence: np.ndarray  # (n,) float32: the top probability
    loss: np.ndarray  # (n,) float32: cross-entropy against the true label
    probs: np.ndarray  # (n, n_classes) float32 softmax
    failed: dict[int, str]  # input position -> why the image could not be decoded


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


def _normalise(batch: torch.Tensor, prep: Preprocessing, device: torch.device) -> torch.Tensor:
    """uint8 (B, C, H, W) on the host -> normalised float32 on ``device``."""
    x = batch.to(device, non_blocking=True).float().div_(255.0)
    mean = torch.tensor(prep.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(prep.std, device=device).view(1, -1, 1, 1)
    return (x - mean) / std


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
    if isinstance(out, (tuple, list)):
        out = out[0]
    if out.ndim != 2:
        raise ClassLensError(
            f"the model returns shape {tuple(out.shape)}; a classifier returns (batch, classes)."
        )
    return int(out.shape[1])


def default_workers(n_images: int, batch_size: int) -> int:
    """Return DataLoader workers: none for small jobs (start-up dominates), else up to 4."""
    if n_images < 8 * batch_size:
        return 0
    return max(0, min(4, (os.cpu_count() or 1)))


def predict(
    module: nn.Module,
    paths: list[Path],
    labels: np.ndarray,
    prep: Preprocessing,
    *,
    device: torch.device,
    batch_size: int = 64,
    num_workers: int | None = None,
    progress: Progress | None = None,
) -> Predictions:
    """Return the model's predictions for ``paths`` (true ``labels``, shape (n,), for the loss)."""
    module = module.to(device)
    with contextlib.suppress(NotImplementedError):  # torch.export modules refuse .eval()
        module.eval()
    loader = torch.utils.data.DataLoader(
        ImageDataset(paths, prep),
        batch_size=batch_size,
        shuffle=False,
        num_workers=default_workers(len(paths), batch_size) if num_workers is None else num_workers,
        pin_memory=device.type == "cuda",
    )
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    outs: list[tuple[torch.Tensor, ...]] = []
    failed: dict[int, str] = {}
    done = 0
    with torch.inference_mode():
        for images, idx, errors in loader:
            bad = [i for i, e in enumerate(errors) if e]
            failed.update({int(idx[i]): errors[i] for i in bad})
            keep = torch.tensor([not e for e in errors], dtype=torch.bool)
            if keep.any():
                logits = module(_normalise(images[keep], prep, device))
                if isinstance(logits, (tuple, list)):
                    logits = logits[0]
                logp = torch.log_softmax(logits.float(), dim=1).cpu()
                kept_idx = idx[keep]
                loss = -logp.gather(1, labels_t[kept_idx].unsqueeze(1)).squeeze(1)
                outs.append((kept_idx, logp.exp(), loss))
            done += len(idx)
            if progress:
                progress(done, len(paths))
    if outs:
        index = torch.cat([o[0] for o in outs]).numpy().astype(np.int64)
        probs = torch.cat([o[1] for o in outs]).numpy().astype(np.float32)
        loss = torch.cat([o[2] for o in outs]).numpy().astype(np.float32)
    else:
        index, loss = np.zeros(0, np.int64), np.zeros(0, np.float32)
        probs = np.zeros((0, 0), np.float32)
    y_pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0, np.float32)
    return Predictions(index, y_pred.astype(np.int64), confidence, loss, probs, failed)
