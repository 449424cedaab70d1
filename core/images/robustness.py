"""Robustness: a run's checkpoint re-evaluated on corrupted copies of a split's images.

Each (split, corruption, severity, images) is a *derived run*: stored in the run store like
any run (atomic, under the store's per-id lock, so two sessions or threads compute it once)
with the id ``<run id>.<split>.<corruption>.s<severity>.<n<N>.seed<S> | all>`` and meta
``derived_from``, ``split``, ``corruption``, ``severity``, ``sample``, ``seed``. The store's
listing leaves derived runs out (core.runs.is_derived); ``RunStore.get`` reads them.

Same engine as the run: the checkpoint file, verified against the run's sha256 before it is
loaded (a trusted pickle is re-loaded only if the run trusted it and the bytes are the same),
the run's preprocessing, precision and output kind, and core.engine.inference.predict (GPU
when present). The corruption is applied to the decoded image before preprocessing
(core.engine.corruptions), so severity 0 reproduces the run's own predictions.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from core import runs
from core.analysis import metrics
from core.contracts import MetaJson
from core.engine import corruptions, data, inference, models
from core.engine.inference import Progress
from core.errors import ClassLensError
from core.images import gallery, gradcam

# Kept from the clean run's meta: what the model and its input were. Everything else
# (timings, skipped, warnings, slice, metadata) is this evaluation's own or does not apply.
_KEPT_META = (
    "checkpoint", "architecture", "class_names", "preprocessing", "preprocessing_source",
    "probe", "preprocessing_note", "dataset", "facts", "precision", "versions",
)  # fmt: skip


# A derived run's time per image over the clean run's recorded speed (decoding, corrupting, the
# forward pass, a model load per run): bench/robustness.py measured all nine corruptions of the
# sample's test split at x1.42 and x1.35 in two runs (CPU, 32 px images, a loaded 2-core box).
CORRUPT_COST = 1.5


def _check_run(run: runs.Run, split: str) -> pd.DataFrame:
    """Return the run's rows of ``split`` (the clean predictions), or raise why not."""
    if run.parent is not None:
        raise ClassLensError(
            "robustness re-evaluates a whole run, not a slice of it: clear the slice filter "
            "(Images: all) or pass the run itself."
        )
    if runs.is_derived(run.run_id):
        raise ClassLensError(
            f"run {run.run_id} is itself a corrupted copy of run {run.meta.get('derived_from')}; "
            "pass that run instead."
        )
    if split not in run.splits:
        raise ClassLensError(
            f"run {run.run_id} has no split {split!r} (it has {', '.join(run.splits)}); "
            "pick one of them."
        )
    df = run.predictions()
    return df[df["split"].to_numpy() == split]


def sample_paths(run: runs.Run, split: str, sample: int | None, seed: int = 0) -> list[str]:
    """Return the ``path`` values of the images to corrupt, in the run's row order.

    All of ``split`` when ``sample`` is None or at least its size; otherwise a stratified
    sample by true class: each class gets ``sample * n_class / n`` images rounded by largest
    remainder (ties to the lower class index), drawn without replacement with ``seed``.
    The same arguments give the same images for every corruption.
    """
    rows = _check_run(run, split)
    n = len(rows)
    if sample is None or sample >= n:
        return rows["path"].tolist()
    if isinstance(sample, bool) or int(sample) != sample or sample < 1:
        raise ClassLensError(
            f"sample size must be a whole number of images of at least 1, got {sample!r}; "
            "leave it empty to use every image of the split."
        )
    y = rows["y_true"].to_numpy()
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * sample / n
    take = np.floor(quota).astype(int)
    order = sorted(range(len(classes)), key=lambda i: (-(quota[i] - take[i]), classes[i]))
    for i in order[: sample - int(take.sum())]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(y == c), size=int(k), replace=False)
        for c, k in zip(classes, take, strict=True)
    ]
    picked = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, int)
    return rows["path"].to_numpy()[picked].tolist()


def _n_split(run: runs.Run, split: str) -> int:
    return len(_check_run(run, split))


def derived_id(
    run: runs.Run,
    split: str,
    corruption: str,
    severity: int,
    *,
    sample: int | None = None,
    seed: int = 0,
) -> str:
    """Return the id the derived run of these settings is stored under (see the module doc);
    a sample as large as the split is "all" (the same images)."""
    corruptions.check(corruption, severity)
    n = _n_split(run, split)
    images = "all" if sample is None or sample >= n else f"n{int(sample)}.seed{int(seed)}"
    return runs.DERIVED_SEP.join((run.run_id, split, corruption, f"s{severity}", images))


def cached(
    store: runs.RunStore,
    run: runs.Run,
    split: str,
    corruption: str,
    severity: int,
    *,
    sample: int | None = None,
    seed: int = 0,
) -> runs.Run | None:
    """Return the stored derived run of these settings, or None (nothing is computed)."""
    return store.get(derived_id(run, split, corruption, severity, sample=sample, seed=seed))


def load_model(meta: MetaJson) -> models.Checkpoint:
    """Return the run's checkpoint as evaluated, or raise a ClassLensError saying why not.

    The file must still hash to the run's sha256; the bytes hashed are the bytes loaded
    (core.images.gradcam.verified_copy), trusted only if the run was (never when hosted).
    """
    info = meta["checkpoint"]
    src = Path(info["path"])
    if src.is_dir():
        raise ClassLensError(
            f"the run's checkpoint is a folder ({src.name}); robustness re-loads single-file "
            "checkpoints only. Evaluate the model saved as one file (.safetensors, a state_dict)."
        )
    with tempfile.TemporaryDirectory(prefix="classlens-verified-") as tmp:
        verified = gradcam.verified_copy(src, info["sha256"], Path(tmp))
        ckpt = models.load_checkpoint(
            verified, arch=meta.get("architecture"), trusted=bool(info.get("trusted"))
        )
    ckpt = dataclasses.replace(ckpt, path=src)
    decided = meta.get("facts", {}).get("transform_input")
    if decided is not None:  # as evaluated (core.engine.evidence)
        module = copy.copy(ckpt.module)
        module.transform_input = bool(decided["value"])  # type: ignore[assignment]
        ckpt = dataclasses.replace(ckpt, module=module)
    return ckpt


def _device(meta: MetaJson) -> torch.device:
    """Return the device the run was evaluated on when this machine has it, else auto (GPU
    when present): on the same device, severity 0 repeats the run's numbers bit for bit, so a
    flip is the corruption's doing, not the device's rounding."""
    was = str(meta.get("device", "auto"))
    if was == "cpu" or (was.startswith("cuda") and torch.cuda.is_available()):
        return inference.resolve_device("cpu" if was == "cpu" else "cuda")
    return inference.resolve_device("auto")


def corrupted_run(
    store: runs.RunStore,
    run: runs.Run,
    split: str,
    corruption: str,
    severity: int,
    *,
    sample: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> runs.Run:
    """Return the derived run of ``run``'s checkpoint on ``split`` under ``corruption`` at
    ``severity``: from the store when it exists, else evaluated once and stored.

    sample/seed: the images (``sample_paths``). Its predictions have the clean run's ``path``
    and ``y_true`` for those images, in the clean run's order. Safe from several threads and
    processes at once (the store's lock per derived id). Raises ClassLensError on bad input:
    an unknown corruption or severity, a missing split, a checkpoint moved or changed, images
    gone from the dataset folder.
    """
    rid = derived_id(run, split, corruption, severity, sample=sample, seed=seed)
    hit = store.get(rid)
    if hit is not None:
        return hit
    with store.lock(rid):
        hit = store.get(rid)
        if hit is not None:
            return hit
        return _evaluate(store, rid, run, split, corruption, severity, sample, seed, progress)


def _evaluate(
    store: runs.RunStore,
    rid: str,
    run: runs.Run,
    split: str,
    corruption: str,
    severity: int,
    sample: int | None,
    seed: int,
    progress: Progress | None,
) -> runs.Run:
    rows = _check_run(run, split)
    chosen = set(sample_paths(run, split, sample, seed))
    rows = rows[rows["path"].isin(chosen)]
    paths = rows["path"].tolist()
    files = [gallery.image_path(run, split, p) for p in paths]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise ClassLensError(
            f"{len(missing)} of the {len(files)} images are no longer where the run found them "
            f"(first: {missing[0]}). Put the dataset back or evaluate it again."
        )
    t0 = time.perf_counter()
    ckpt = load_model(run.meta)
    t_load = time.perf_counter()
    y_true = rows["y_true"].to_numpy().astype(np.int64)
    device = _device(run.meta)
    pred = inference.predict(
        ckpt.module,
        files,
        y_true,
        gradcam.run_preprocessing(run.meta),
        device=device,
        # the run's own batch on CPU (the same sums, bit for bit); on CUDA the automatic size
        batch_size=run.meta.get("batch_size") if str(run.meta.get("device")) == "cpu" else None,
        progress=progress,
        precision=run.meta.get("precision", "fp32"),
        outputs=run.meta.get("facts", {}).get("outputs", {}).get("kind", "logits"),
        corrupt=corruptions.Corrupt(corruption, severity, tuple(f"{split}/{p}" for p in paths)),
    )
    inference_s = time.perf_counter() - t_load
    kept = pred.index
    names = run.class_names
    table = runs.predictions_table(
        split=[split] * len(kept),
        path=[paths[i] for i in kept],
        y_true=y_true[kept],
        y_pred=pred.y_pred,
        confidence=pred.confidence,
        loss=pred.loss,
        probs=pred.probs,
    )
    failed = [{"split": split, "path": paths[i], "reason": why} for i, why in pred.failed.items()]
    # As Run.subset: classes with no image here (or none in the dataset) are absent.
    present = set(np.unique(y_true[kept]).tolist())
    gone = set(run.meta.get("absent_classes", []))
    absent = [i for i, name in enumerate(names) if name in gone or i not in present]
    report = {
        "classes": names,
        "splits": {
            split: metrics.split_report(
                y_true[kept],
                pred.y_pred,
                class_names=names,
                probs=pred.probs if len(pred.probs) else None,
                skipped=[f["path"] for f in failed],
                absent=absent,
            )
        },
    }
    meta: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **{k: run.meta[k] for k in _KEPT_META if k in run.meta},  # type: ignore[literal-required]
        "absent_classes": [names[i] for i in absent],
        "derived_from": run.run_id,
        "split": split,
        "corruption": corruption,
        "severity": severity,
        "corruption_parameter": corruptions.parameter_text(corruption, severity),
        "sample": None if sample is None or sample >= len(_check_run(run, split)) else sample,
        "seed": seed,
        "skipped": failed,
        "warnings": [
            {"split": split, "path": paths[i], "reason": why} for i, why in pred.notes.items()
        ],
        "device": str(device),
        "batch_size": pred.batch_size,
        "timings": {
            "load_s": round(t_load - t0, 3),
            "inference_s": round(inference_s, 3),
            "images_per_s": round(len(files) / max(inference_s, 1e-9), 1),
        },
    }
    return store.write(rid, table, meta, report)


def corrupted_view(
    run: runs.Run, split: str, path: str, corruption: str, severity: int
) -> np.ndarray:
    """Return one image as the model saw it in the derived run: (size, size, 3) uint8, the
    run's decode (mode, resize) of the corrupted image, a 1-channel input repeated to 3.

    path: the image's ``path`` in the run's predictions. Raises ClassLensError for an unknown
    corruption or severity, OSError/ValueError when the file cannot be read.
    """
    corruptions.check(corruption, severity)
    key = f"{split}/{path}"
    arr = data.decode(
        gallery.image_path(run, split, path),
        gradcam.run_preprocessing(run.meta),
        corrupt=lambda img: corruptions.apply(img, corruption, severity, key=key),
    )
    hwc = arr.transpose(1, 2, 0)
    return np.repeat(hwc, 3, axis=2) if hwc.shape[2] == 1 else np.ascontiguousarray(hwc)


def estimate(
    run: runs.Run,
    split: str,
    sample: int | None,
    corruption_names: Iterable[str],
    severities: Iterable[int],
    *,
    seed: int = 0,
    store: runs.RunStore | None = None,
) -> tuple[int, float]:
    """Return (images to evaluate, seconds) for these settings before starting them.

    Counts only the (corruption, severity) pairs not stored yet (in ``store``, default the
    run's own) and skips severities above a corruption's top level (a flip has one). Seconds
    are from the run's own recorded throughput (meta timings: images per second, times
    ``CORRUPT_COST``, and the model's load time once per pair); 0 images take 0 seconds.
    """
    store = store or runs.RunStore(run.path.parent)
    n = len(sample_paths(run, split, sample, seed))
    levels = sorted(set(severities))
    todo = 0
    for name in corruption_names:
        for severity in levels:
            if severity > corruptions.CORRUPTIONS.get(name, math.inf):
                continue
            if cached(store, run, split, name, severity, sample=sample, seed=seed) is None:
                todo += 1
    timings = run.meta.get("timings", {})
    rate = float(timings.get("images_per_s") or 0.0)
    per_image = CORRUPT_COST / rate if rate > 0 else 0.0
    return todo * n, todo * (n * per_image + float(timings.get("load_s", 0.0)))
