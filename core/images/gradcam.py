"""Grad-CAM: where in an image the model looked for a class (Selvaraju et al., ICCV 2017).

For the last ``nn.Conv2d`` of a model, the map for class ``c`` is
``relu(sum_k w_k * A_k)`` with ``A_k`` the layer's k-th activation map and ``w_k`` the mean over
its pixels of ``d logit_c / d A_k``; it is upsampled to the input size and scaled to [0, 1]
per image. Only checkpoints built from a state_dict (``Checkpoint.native``) expose their layers;
code-bearing formats and convolution-free models are refused with a ClassLensError.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from core.contracts import MetaJson
from core.engine import data, models
from core.engine.inference import logits_of, normalise_batch
from core.engine.preprocessing import Preprocessing
from core.errors import ClassLensError

NATIVE_FORMATS = frozenset(f.name for f in models.FORMATS if not f.code_bearing)
BATCH = 32  # images per forward/backward pass: bounds memory on large models
ALPHA = 0.45  # weight of the heatmap in the overlay


def _refusal(why: str) -> ClassLensError:
    return ClassLensError(
        f"Grad-CAM needs a convolutional layer it can hook; {why}. Evaluate a CNN saved as a "
        "state_dict or .safetensors file to see it."
    )


def last_conv(module: nn.Module) -> nn.Conv2d:
    """Return the last ``nn.Conv2d`` in ``module`` (in registration order), or raise."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise _refusal(f"this model ({type(module).__name__}) has no nn.Conv2d")
    return convs[-1]


def check_supported(ckpt: models.Checkpoint) -> nn.Conv2d:
    """Return the layer Grad-CAM will hook, or raise ClassLensError saying why it cannot."""
    if not ckpt.native:
        raise _refusal(f"a {ckpt.format} checkpoint hides its layers")
    return last_conv(ckpt.module)


def verified_copy(path: Path, sha256: str, into: Path) -> Path:
    """Return a copy of ``path`` (and its JSON metadata sidecars) in the folder ``into``,
    hashed as it is copied; raise ClassLensError, keeping no copy, unless its sha256 is
    ``sha256``. Nothing is parsed or loaded here."""
    if not path.is_file():
        raise ClassLensError(
            f"checkpoint not found: {path}. It was moved or deleted since this run was "
            "evaluated; put it back or evaluate it again."
        )
    out = into / path.name
    h = hashlib.sha256()
    with open(path, "rb") as src, open(out, "wb") as dst:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            h.update(chunk)
            dst.write(chunk)
    if h.hexdigest() != sha256:
        out.unlink()
        raise ClassLensError(
            f"{path.name} changed since this run was evaluated (sha256 {h.hexdigest()[:12]} "
            f"vs {sha256[:12]}); it was not loaded. Evaluate the checkpoint again."
        )
    for side in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if side != path and side.is_file():
            shutil.copyfile(side, into / side.name)
    return out


def load_for_run(meta: MetaJson, *, require_conv: bool = True) -> models.Checkpoint:
    """Return the run's checkpoint (from ``run.meta``) ready for Grad-CAM, or raise why not.

    Code-bearing formats are refused before loading; the file must still match the run's
    sha256, checked before anything is loaded (see verified_copy).
    require_conv=False skips the check for a convolution (for uses other than Grad-CAM).
    """
    info = meta["checkpoint"]
    if info["format"] not in NATIVE_FORMATS:
        raise _refusal(f"a {info['format']} checkpoint hides its layers")
    src = Path(info["path"])
    # Verify, then load the very bytes verified: a private copy hashed while copied. Loading
    # first would run a replaced file's code (a trusted run loads pickles in full) before any
    # check, and hashing the path then loading it would leave a window to swap the file.
    with tempfile.TemporaryDirectory(prefix="classlens-verified-") as tmp:
        verified = verified_copy(src, info["sha256"], Path(tmp))
        ckpt = models.load_checkpoint(
            verified, arch=meta.get("architecture"), trusted=bool(info.get("trusted"))
        )
    ckpt = dataclasses.replace(ckpt, path=src)
    decided = meta.get("facts", {}).get("transform_input")
    if decided is not None:  # as evaluated (core.engine.evidence); the cached module stays as it is
        module = copy.copy(ckpt.module)
        module.transform_input = bool(decided["value"])  # type: ignore[assignment]
        ckpt = dataclasses.replace(ckpt, module=module)
    if require_conv:
        check_supported(ckpt)
    return ckpt


def run_preprocessing(meta: MetaJson) -> Preprocessing:
    """Return the preprocessing a run was evaluated with (``run.meta["preprocessing"]``)."""
    prep = dict(meta["preprocessing"])
    return Preprocessing(**{**prep, "mean": tuple(prep["mean"]), "std": tuple(prep["std"])})


def gradcam(
    module: nn.Module, x: torch.Tensor, *, targets: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return (cams, targets): float32 (B, H, W) maps in [0, 1] and the (B,) classes explained.

    x: normalised (B, C, H, W) input on the module's device; targets: one class per image,
    default each image's highest logit. A map with no positive evidence is all zeros.
    """
    layer = last_conv(module)
    saved: list[torch.Tensor] = []

    def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor:
        saved.append(out)
        return out.clone()  # later in-place ops (ReLU(inplace=True)) act on the copy

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)  # activations need a graph even if frozen
            logits = logits_of(module(x))
            if targets is None:
                chosen = logits.argmax(dim=1)
            else:
                chosen = torch.as_tensor(list(targets), device=logits.device, dtype=torch.long)
                if chosen.shape != (len(x),):
                    raise ValueError(f"targets must give one class per image, got {len(chosen)}.")
            score = logits.gather(1, chosen[:, None]).sum()
            (grads,) = torch.autograd.grad(score, saved[-1])
    finally:
        handle.remove()
    acts = saved[-1].detach()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * acts).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    flat = cam.flatten(1)
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    span = (hi - lo).clamp_min(1e-12)[:, None, None]
    cam = torch.where((hi > lo)[:, None, None], (cam - lo[:, None, None]) / span, 0.0)
    return cam.float().cpu().numpy(), chosen.cpu().numpy()


def jet(values: Any) -> np.ndarray:
    """Return uint8 (..., 3) RGB for values in [0, 1]: blue (0) through green to red (1)."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    rgb = np.stack([np.clip(1.5 - np.abs(4 * v - c), 0.0, 1.0) for c in (3.0, 2.0, 1.0)], axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def overlay(image: Any, cam: Any, *, alpha: float = ALPHA) -> np.ndarray:
    """Return uint8 (H, W, 3) RGB: ``image`` blended with a jet heatmap of ``cam``.

    image: uint8 (H, W) grayscale or (H, W, 3) RGB; cam: (h, w) in [0, 1], resized bilinearly
    to (H, W) when it differs.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {img.shape}.")
    heat = np.asarray(cam, dtype=np.float32)
    if heat.shape != img.shape[:2]:
        resized = Image.fromarray(heat).resize(
            (img.shape[1], img.shape[0]), Image.Resampling.BILINEAR
        )
        heat = np.asarray(resized)
    blend = (1 - alpha) * img.astype(np.float32) + alpha * jet(heat).astype(np.float32)
    return np.clip(blend.round(), 0, 255).astype(np.uint8)


def _display(pixels: np.ndarray, size: int) -> np.ndarray:
    """(C, S, S) model-input pixels -> (h, w, 3) uint8, enlarged by a whole factor to ~size."""
    rgb = np.repeat(pixels, 3, axis=0) if pixels.shape[0] == 1 else pixels
    img = Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 2, 0)))
    factor = max(1, size // max(img.size))
    if factor > 1:
        img = img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
    return np.asarray(img)


def overlays(
    ckpt: models.Checkpoint,
    paths: Sequence[str | Path],
    prep: Preprocessing,
    *,
    targets: Sequence[int] | None = None,
    size: int = 128,
    device: torch.device | str = "cpu",
) -> list[np.ndarray | None]:
    """Return one Grad-CAM overlay per file, uint8 (h, w, 3) about ``size`` px (None if the
    file cannot be decoded), drawn on the model's own input pixels (after resize/crop).

    targets: the class to explain per file (default: the model's prediction).
    """
    check_supported(ckpt)
    device = torch.device(device)
    module = ckpt.module.to(device).eval()
    decoded: list[np.ndarray | None] = []
    for p in paths:
        try:
            decoded.append(data.decode(Path(p), prep))
        except (OSError, ValueError, Image.DecompressionBombError):
            decoded.append(None)
    ok = [i for i, d in enumerate(decoded) if d is not None]
    out: list[np.ndarray | None] = [None] * len(decoded)
    for start in range(0, len(ok), BATCH):
        chunk = ok[start : start + BATCH]
        batch = torch.from_numpy(np.stack([np.asarray(decoded[i]) for i in chunk]))
        x = normalise_batch(batch, prep, device)
        want = None if targets is None else [int(targets[i]) for i in chunk]
        cams, _ = gradcam(module, x, targets=want)
        for i, cam in zip(chunk, cams, strict=True):
            out[i] = overlay(_display(decoded[i], size), cam)  # type: ignore[arg-type]
    return out
