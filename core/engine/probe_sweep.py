"""The preprocessing probe's measurements: candidate settings scored on a sample, cached.

``core.engine.probe`` decides what is unknown, draws the sample and chooses; this module runs the
model on the sample under each candidate (image size x normalisation) exactly as an
evaluation decodes and normalises images, skips sizes whose estimated cost would overrun the
budget, stops once two sizes in a row score far below the best, and keeps each sweep in the
run store's ``.probes/`` folder so the same inputs never run it twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from core.engine import data, inference
from core.engine.preprocessing import Preprocessing

BUDGET_S = 60.0  # seconds of probing before larger sizes are skipped
BATCH = 32  # images per forward pass (bounded memory at 384 px)
FALL_BELOW = 0.10  # a size scoring this far below the best "falls"; two in a row stop the sweep
VERSION = 1  # part of the cache key: bump when the candidates or the scoring change


@dataclass(frozen=True)
class Sweep:
    """Runs (or finds in the cache) the candidates of one sample under given settings."""

    module: nn.Module
    paths: list[Path]
    labels: np.ndarray
    prep: Preprocessing  # channels and resize of the decoding; the tie-break's default
    n_classes: int
    device: torch.device | str
    budget_s: float
    cache_dir: Path | None
    what: str  # checkpoint sha, dataset fingerprint, split, sample size and seed: the sample

    def _key(self, sizes: Sequence[int], norms: Sequence[Any]) -> str:
        blob = json.dumps(
            [VERSION, self.what, self.prep.channels, self.prep.resize,
             list(sizes), [[n, list(m), list(s)] for n, m, s in norms], self.budget_s],
        )  # fmt: skip
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def cached(self, sizes: Sequence[int], norms: Sequence[Any]) -> dict[str, Any] | None:
        return _cached(self.cache_dir, self._key(sizes, norms))

    def run(
        self, sizes: Sequence[int], norms: Sequence[Any], say: Callable[[str], None]
    ) -> dict[str, Any]:
        key = self._key(sizes, norms)
        record = _cached(self.cache_dir, key)
        if record is None:
            say(f"probing {len(sizes)} size(s) x {len(norms)} normalisation(s)")
            record = sweep(
                self.module, self.paths, self.labels, prep=self.prep, sizes=sizes, norms=norms,
                n_classes=self.n_classes, device=self.device, budget_s=self.budget_s,
            )  # fmt: skip
            _store(self.cache_dir, key, record)
        return record


def sweep(
    module: nn.Module,
    paths: Sequence[Path],
    labels: np.ndarray,
    *,
    prep: Preprocessing,
    sizes: Sequence[int],
    norms: Sequence[tuple[str, tuple[float, ...], tuple[float, ...]]],
    n_classes: int,
    device: torch.device | str = "cpu",
    budget_s: float = BUDGET_S,
) -> dict[str, Any]:
    """Return the sweep: each candidate (size x normalisation) with its accuracy on the
    images at ``paths`` (labels: (n,) their run labels) and ``fit`` (the true class's mean
    log-softmax, the tie-break), and the sizes skipped and why. ``prep`` gives the channels
    and resize mode of the decoding. Sizes run in the order given (the caller puts the default
    size first: it is the likeliest, and its cost scales the estimates of the others).
    """
    dev = torch.device(device)
    runner = inference.prepare(module, dev)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    candidates: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    spent, last, best_acc, best_size, falls = 0.0, None, -1.0, 0, 0
    batch = [BATCH]  # shrinks to 1 for a model exported with a fixed batch size
    for size in sizes:
        if falls >= 2:
            skipped.append({"image_size": size, "reason": "stopped: larger sizes scored lower"})
            continue
        if last is not None:  # compute grows with the pixels; scaled from the largest size run
            estimate = last[1] * (size / last[0]) ** 2
            if spent + estimate > budget_s:
                skipped.append(
                    {"image_size": size, "reason": f"estimated {estimate:.0f} s: over the budget"}
                )
                continue
        t0 = time.perf_counter()
        x, ok = _decode(paths, prep, size)
        size_best = -1.0
        for name, mean, std in norms:
            acc, fit, error = _score(runner, dev, x, y[ok], mean, std, n_classes, batch)
            cand = {"image_size": size, "normalisation": name, "mean": list(mean),
                    "std": list(std), "accuracy": acc}  # fmt: skip
            if error:
                cand["error"] = error
            cand["fit"] = round(fit, 4) if math.isfinite(fit) else None
            candidates.append(cand)
            size_best = max(size_best, acc if acc is not None else -1.0)
        seconds = time.perf_counter() - t0
        spent += seconds
        if last is None or size >= last[0]:
            last = (size, max(seconds, 1e-3))
        if size > best_size:  # only sizes beyond the best can "fall": scores peak at one size
            falls = falls + 1 if best_acc - size_best >= FALL_BELOW else 0
        if size_best > best_acc:
            best_acc, best_size = size_best, size
    return {
        "n_images": len(paths),
        "candidates": candidates,
        "skipped_sizes": skipped,
        "seconds": round(spent, 2),
    }


def _decode(
    paths: Sequence[Path], prep: Preprocessing, size: int
) -> tuple[torch.Tensor, list[int]]:
    """Return (uint8 (n_ok, C, size, size), positions decoded) as the evaluation decodes them."""
    at = Preprocessing(
        image_size=size, channels=prep.channels, mean=prep.mean, std=prep.std, resize=prep.resize
    )
    arrays, ok = [], []
    for i, path in enumerate(paths):
        try:
            arrays.append(torch.from_numpy(data.decode(path, at)))
            ok.append(i)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue  # the evaluation lists it as skipped; the probe just leaves it out
    empty = torch.zeros((0, prep.channels, size, size), dtype=torch.uint8)
    return (torch.stack(arrays) if arrays else empty), ok


def _score(
    runner: Any,
    device: torch.device,
    x: torch.Tensor,
    y: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    n_classes: int,
    batch: list[int],
) -> tuple[float | None, float, str]:
    """Return (accuracy, mean log-softmax of the true class, error) of one candidate; accuracy
    is None with the error's first line when the model cannot run on it."""
    if not len(x):
        return None, -math.inf, "no image of the sample could be decoded"
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1).to(device)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1).to(device)
    outs = []
    i = 0
    with torch.inference_mode():
        while i < len(x):
            chunk = x[i : i + batch[0]].to(device).float().div_(255.0).sub_(m).div_(s)
            if runner.channels_last:
                chunk = chunk.contiguous(memory_format=torch.channels_last)
            try:
                out = runner.module(chunk)
            except Exception as exc:  # wrong size or channels for this model, a fixed batch
                if batch[0] > 1 and i == 0:
                    batch[0] = 1  # retry one image at a time (a static batch dimension)
                    continue
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                return None, -math.inf, first[:160]
            out = inference.logits_of(out)
            if out.ndim != 2 or out.shape[1] != n_classes:
                shape = tuple(out.shape)
                return None, -math.inf, f"outputs of shape {shape} for {n_classes} classes"
            outs.append(out.float().cpu())
            i += len(chunk)
    logits = torch.cat(outs)
    acc = float((logits.argmax(1) == y).float().mean())
    fit = float(torch.log_softmax(logits, 1).gather(1, y.view(-1, 1)).mean())
    return round(acc, 4), fit, ""


def _cached(cache_dir: Path | None, key: str) -> dict[str, Any] | None:
    if cache_dir is None:
        return None
    try:
        return dict(json.loads((cache_dir / f"{key}.json").read_text()))
    except (OSError, ValueError):
        return None


def _store(cache_dir: Path | None, key: str, record: dict[str, Any]) -> None:
    if cache_dir is None:
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record))
        tmp.replace(cache_dir / f"{key}.json")
    except OSError:
        pass  # a read-only store: the probe runs again next time, nothing is lost
