"""The preprocessing probe: what a checkpoint does not say about its input, measured.

A checkpoint without metadata (TorchScript, a bare state_dict, safetensors without a header)
does not say the image size or the normalisation it was trained with, and a guess can turn a
good model into a near-chance one (a resnet18 trained at 64 px: 28.6% at 224 px, 63.3% at 64).
So each setting comes from, in order: the user (typed), the file's structure (read: a fixed
input shape, the first layer), the checkpoint's metadata (declared), this probe (probed), a
documented default -- and the run records which (meta.json ``preprocessing_source``).

The probe runs the model on a small stratified sample of the **train** split (else val) under
candidate settings and keeps the most accurate. It never chooses on the test split alone:
choosing preprocessing by the accuracy being judged would flatter that accuracy, so a dataset
with only a test split is not probed (the defaults stay, marked "default", and a note says why).

Candidates vary only what is unknown: the images' typical native size and the sizes models are
commonly trained at (``SIZES``), times ImageNet / 0.5 / no normalisation. The default size
(224) runs first, then the others smallest first; a size whose estimated cost would overrun
``BUDGET_S`` is skipped (and listed), and the sweep stops once two sizes in a row above the
best one score far below it. Nothing is chosen unless some
candidate scores clearly above chance (an untrained model keeps the defaults). Results are
cached in the run store (``.probes/``), so the same inputs a second time run no inference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from core.analysis.provenance import candidate_label, preprocessing_warning  # noqa: F401 (re-exported)
from core.engine import data, preprocessing
from core.engine.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from core.engine.probe_sweep import BUDGET_S, Sweep

# Square sizes models are commonly trained at (CIFAR 32 ... ImageNet 224, Inception 299, 384).
SIZES = (32, 48, 64, 96, 112, 128, 160, 224, 256, 299, 384)
SAMPLE_SIZE = 128  # images per candidate: enough to tell 30% from 60%, cheap enough to repeat
SEED = 0  # the sample is the same every time for the same dataset


def normalisations(channels: int) -> list[tuple[str, tuple[float, ...], tuple[float, ...]]]:
    """Return the (name, mean, std) candidates for ``channels`` (ImageNet's statistics are
    averaged over its channels for a single-channel model)."""
    imagenet: tuple[tuple[float, ...], tuple[float, ...]]
    if channels == 1:
        imagenet = ((round(sum(IMAGENET_MEAN) / 3, 3),), (round(sum(IMAGENET_STD) / 3, 3),))
    else:
        imagenet = (IMAGENET_MEAN, IMAGENET_STD)
    return [
        ("ImageNet", *imagenet),
        ("0.5", (0.5,) * channels, (0.5,) * channels),
        ("none", (0.0,) * channels, (1.0,) * channels),
    ]


def stratified_sample(
    labels: Sequence[int] | np.ndarray, n: int, *, seed: int = SEED
) -> np.ndarray:
    """Return the sorted positions of up to ``n`` items drawn per class in proportion to its
    size (largest remainders), at least one of each class while ``n`` allows; seeded.

    labels: (N,) class of each item. With fewer than ``n`` items, all of them.
    """
    labels = np.asarray(labels)
    if len(labels) <= n:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    if n < len(classes):  # more classes than places: one image from each of n random classes
        take = np.zeros(len(classes), dtype=int)
        take[rng.choice(len(classes), n, replace=False)] = 1
    else:
        take = np.ones(len(classes), dtype=int)
        rest, avail = n - len(classes), counts - 1
        quota = avail * rest / avail.sum()
        extra = np.floor(quota).astype(int)
        # ties between equal remainders are broken by a seeded shuffle, not by class order
        order = np.lexsort((rng.permutation(len(classes)), -(quota - extra)))
        extra[order[: rest - extra.sum()]] += 1
        take += extra
    picked = [
        rng.choice(np.flatnonzero(labels == c), k, replace=False)
        for c, k in zip(classes, take, strict=True)
        if k
    ]
    return np.sort(np.concatenate(picked))


def probe_split(splits: Iterable[str]) -> str | None:
    """Return the split to probe on: train, else val; None when only the judged test split
    exists (choosing by its accuracy would flatter it)."""
    present = set(splits)
    return next((s for s in ("train", "val") if s in present), None)


def typical_size(paths: Iterable[Path]) -> int | None:
    """Return the median shorter side of the images at ``paths`` (headers only), or None."""
    sides = []
    for path in paths:
        try:
            with Image.open(path) as img:
                sides.append(min(img.size))
        except (OSError, ValueError):
            continue
    return int(np.median(sides)) if sides else None


def size_candidates(native: int | None, *, first: int | None = None) -> list[int]:
    """Return the sizes to try: SIZES plus the images' typical native size, smallest first
    after ``first`` (the default size: the likeliest, tried before the budget can run out)."""
    sizes = set(SIZES)
    if native is not None and 16 <= native <= 1024:
        sizes.add(native)
    ordered = sorted(sizes)
    return [first, *(s for s in ordered if s != first)] if first in sizes else ordered


# --- what the file's structure says -----------------------------------------------------------


def read_input(module: nn.Module, in_channels: int | None) -> dict[str, Any]:
    """Return the preprocessing the module's structure fixes: ``channels`` (its first
    convolution, as loading found it) and ``image_size`` when the input size is fixed (an ONNX
    or torch.export input shape, the first layer of a network on flattened pixels), and what a
    library's own configuration fixes (timm's pretrained_cfg, a Hugging Face
    preprocessor_config.json: ``module.classlens_read``, set by core.engine.foreign)."""
    read: dict[str, Any] = dict(getattr(module, "classlens_read", None) or {})
    if in_channels:
        read["channels"] = int(in_channels)
    size = _fixed_size(module, read.get("channels"))
    if size:
        read["image_size"] = size
    return read


def _fixed_size(module: nn.Module, channels: int | None) -> int | None:
    fixed = getattr(module, "fixed_image_size", None)  # OnnxModule: from the graph's input
    if isinstance(fixed, int) and fixed > 0:
        return fixed
    if isinstance(module, torch.fx.GraphModule):  # torch.export: the example input's shape
        for node in module.graph.nodes:
            if node.op != "placeholder":
                continue
            shape = getattr(node.meta.get("val"), "shape", None)
            if shape is not None and len(shape) == 4:
                h, w = shape[2], shape[3]  # a dynamic size is a SymInt, not an int
                return int(h) if isinstance(h, int) and h == w else None
    weights = [p for name, p in module.named_parameters() if name.endswith("weight")]
    if weights and weights[0].ndim == 2 and not any(p.ndim == 4 for p in weights):
        # A network on flattened pixels: its first layer takes channels * size * size values.
        per_channel = weights[0].shape[1] // (channels or 1)
        side = math.isqrt(per_channel)
        if side * side * (channels or 1) == weights[0].shape[1] and side >= 4:
            return side
    return None


# --- the probe ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """The preprocessing of one evaluation and where each setting came from."""

    prep: Preprocessing
    sources: dict[str, str]  # field -> a preprocessing.SOURCES key
    probe: dict[str, Any] | None = None  # the probe record (meta.json "probe") when one ran
    note: str = ""  # why nothing was probed although a setting was unknown ("" otherwise)


def unknown(sources: Mapping[str, str]) -> list[str]:
    """Return what the probe should measure: "image_size" and/or "normalisation" (mean and std
    together, when neither is known)."""
    todo = ["image_size"] if sources["image_size"] == "default" else []
    if sources["mean"] == "default" and sources["std"] == "default":
        todo.append("normalisation")
    return todo


def resolve(
    module: nn.Module,
    in_channels: int | None,
    declared: Mapping[str, Any] | None,
    typed: Mapping[str, Any] | None,
    *,
    ds: data.Dataset,
    labels: np.ndarray,
    n_classes: int,
    checkpoint_sha256: str,
    device: torch.device | str = "cpu",
    cache_dir: Path | None = None,
    enabled: bool = True,
    budget_s: float = BUDGET_S,
    log: Callable[[str], None] | None = None,
) -> Resolved:
    """Return the preprocessing for evaluating ``module`` on ``ds``: typed, read, declared,
    then probed (when ``enabled`` and something is unknown), then defaults.

    The probe sweeps what the *file* does not tell, whatever was typed, so its record can
    show that another setting scores far better than a typed one; the choice is made among
    the candidates that agree with the typed values. With everything typed nothing runs, but
    an earlier record of the same sweep is attached. labels: (len(ds.items),) the run's label
    of each dataset item. ``cache_dir`` keeps sweeps (the run store's ``.probes``): the same
    inputs reuse them, no inference.
    """
    say = log or (lambda msg: None)
    read = read_input(module, in_channels)
    prep, sources = preprocessing.resolve_with_sources(typed, declared, read=read)
    file_prep, file_sources = preprocessing.resolve_with_sources(None, declared, read=read)
    todo, file_todo = unknown(sources), unknown(file_sources)
    if not file_todo or not enabled:
        return Resolved(prep, sources)
    split = probe_split(ds.split_dirs)
    if split is None:
        note = (
            f"{' and '.join(t.replace('_', ' ') for t in todo)} not known and not probed: the "
            "dataset has only a test split, and choosing preprocessing by the accuracy being "
            "judged would flatter it. Defaults are used; set them, or add a train or val split."
        )
        return Resolved(prep, sources, note=note if todo else "")
    in_split = np.flatnonzero([it.split == split for it in ds.items])
    picked = in_split[stratified_sample(labels[in_split], SAMPLE_SIZE)]
    paths = [ds.abspath(ds.items[i]) for i in picked]
    sizes = (
        size_candidates(typical_size(paths), first=file_prep.image_size)
        if "image_size" in file_todo
        else [file_prep.image_size]
    )
    norms = (
        normalisations(prep.channels)
        if "normalisation" in file_todo
        else [("declared", file_prep.mean, file_prep.std)]
    )
    what = f"{checkpoint_sha256}|{ds.fingerprint}|{split}|{SAMPLE_SIZE}|{SEED}"
    sweep = Sweep(module, paths, labels[picked], prep, n_classes, device, budget_s, cache_dir, what)
    if not todo:  # everything typed: an earlier sweep is shown beside the run, none is run
        record = sweep.cached(sizes, norms)
        if record is None:
            return Resolved(prep, sources)
        reason = "every setting was typed; the probe's earlier candidates are kept for comparison"
        record = {"split": split, "seed": SEED, **record, "chosen": None, "reason": reason}
        return Resolved(prep, sources, probe=record)
    say(f"preprocessing: {' and '.join(todo)} unknown; probe on {len(paths)} {split} images")
    record = sweep.run(sizes, norms, say)

    def agrees(c: dict[str, Any]) -> bool:  # with what the run's settings already are
        return (
            c["accuracy"] is not None
            and ("image_size" in todo or c["image_size"] == prep.image_size)
            and (
                "normalisation" in todo
                or (c["mean"], c["std"]) == (list(prep.mean), list(prep.std))
            )
        )

    if not any(agrees(c) for c in record["candidates"]):  # a typed value outside the sweep
        extra = sweep.run(
            sizes if "image_size" in todo else [prep.image_size],
            norms if "normalisation" in todo else [("typed", prep.mean, prep.std)],
            say,
        )
        record = {**record, "candidates": record["candidates"] + extra["candidates"],
                  "skipped_sizes": record["skipped_sizes"] + extra["skipped_sizes"],
                  "seconds": round(record["seconds"] + extra["seconds"], 2)}  # fmt: skip
    chosen, reason = _choose(record["candidates"], prep, n_classes, len(paths), agrees)
    record = {"split": split, "seed": SEED, **record, "chosen": chosen, "reason": reason}
    if chosen is None:
        return Resolved(prep, sources, probe=record, note=reason)
    best = record["candidates"][chosen]
    probed: dict[str, Any] = {}
    if "image_size" in todo:
        probed["image_size"] = best["image_size"]
    if "normalisation" in todo:
        probed["mean"], probed["std"] = best["mean"], best["std"]
    prep, sources = preprocessing.resolve_with_sources(typed, declared, read=read, probed=probed)
    return Resolved(prep, sources, probe=record)


def _choose(
    candidates: list[dict[str, Any]],
    prep: Preprocessing,
    n_classes: int,
    n: int,
    allowed: Callable[[dict[str, Any]], bool],
) -> tuple[int | None, str]:
    """Return (index of the most accurate ``allowed`` candidate, why) -- ties go to the
    default setting, then to the better fit -- or (None, why) when none is clearly above
    chance."""
    ok = [i for i, c in enumerate(candidates) if allowed(c)]
    if not ok:
        return None, "the model ran on none of the candidate settings"

    def is_default(c: dict[str, Any]) -> bool:
        return (c["image_size"], tuple(c["mean"]), tuple(c["std"])) == (
            prep.image_size, tuple(prep.mean), tuple(prep.std),
        )  # fmt: skip

    best = max(
        ok,
        key=lambda i: (
            candidates[i]["accuracy"],
            is_default(candidates[i]),
            candidates[i]["fit"] if candidates[i]["fit"] is not None else -math.inf,
        ),
    )
    # Clearly above chance: 4 standard errors of a guesser's accuracy on n images (the best of
    # ~30 candidates of an untrained model reaches ~2.5), and at least 10% of the way to 100%.
    chance = 1.0 / max(n_classes, 1)
    floor = chance + max(4.0 * math.sqrt(chance * (1.0 - chance) / max(n, 1)), (1 - chance) / 10)
    acc = candidates[best]["accuracy"]
    if acc <= floor:
        return None, (
            f"no setting scored clearly above chance (best {acc:.0%}, chance {chance:.0%} on "
            f"{n} images): the defaults are kept"
        )
    return best, f"the most accurate of {len(ok)} settings ({acc:.0%} on {n} images)"


# --- how the CLI reports it ----------------------------------------------------------------


def summary(resolved: Resolved) -> str:
    """Return one line for the CLI's stderr: what the probe chose, on which split."""
    record = resolved.probe
    if record is None:
        return resolved.note
    tried = sum(c["accuracy"] is not None for c in record["candidates"])
    head = f"probe: {tried} settings on {record['n_images']} {record['split']} images"
    if record["chosen"] is None:
        return f"{head}; {record['reason']}"
    best = record["candidates"][record["chosen"]]
    return f"{head}; chose {candidate_label(best)} (accuracy {best['accuracy']:.1%})"
