"""One evaluation: checkpoint + dataset + preprocessing -> a stored run (cached by content)."""

from __future__ import annotations

import importlib.metadata
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core import data, inference, metrics, models, preprocessing, runs
from core.errors import ClassLensError

Log = Callable[[str], None]


def _class_mapping(ckpt_names: tuple[str, ...] | None, ds_names: tuple[str, ...]) -> list[str]:
    """Return the run's class names (checkpoint order when it names them)."""
    if ckpt_names is None:
        return list(ds_names)
    if len(ckpt_names) == len(ds_names) and set(ckpt_names) == set(ds_names):
        return list(ckpt_names)
    missing = sorted(set(ds_names) - set(ckpt_names))[:5]
    raise ClassLensError(
        f"the checkpoint names {len(ckpt_names)} classes but the dataset has {len(ds_names)} class "
        f"folders, and they differ (dataset folders not in the checkpoint: "
        f"{', '.join(missing) or '-'}). Rename the folders to the checkpoint's class names or "
        "pick the matching dataset."
    )


def _check_width(width: int, class_names: list[str], ds: data.Dataset) -> None:
    if width != len(class_names):
        shown = ", ".join(class_names[:8]) + (", ..." if len(class_names) > 8 else "")
        raise ClassLensError(
            f"checkpoint has {width} outputs but the dataset has {len(class_names)} classes "
            f"({shown}) in {ds.root}. Pick the dataset the model was trained for, or a "
            "checkpoint whose head matches it."
        )


def evaluate(
    checkpoint: str | Path,
    dataset: str | Path,
    *,
    arch: str | None = None,
    preprocessing_overrides: dict[str, Any] | None = None,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int | None = None,
    runs_dir: str | Path | None = None,
    trust_checkpoint: bool = False,
    progress: inference.Progress | None = None,
    log: Log | None = None,
) -> runs.Run:
    """Return the run for ``checkpoint`` on ``dataset``: from the store when it exists,
    else by running inference once and writing it atomically."""
    say = log or (lambda msg: None)
    if batch_size < 1:
        raise ClassLensError(f"--batch-size must be at least 1, got {batch_size}.")
    t0 = time.perf_counter()
    dev = inference.resolve_device(device)
    ckpt = models.load_checkpoint(checkpoint, arch=arch, trusted=trust_checkpoint)
    t_load = time.perf_counter()
    ds = data.scan(dataset)
    t_scan = time.perf_counter()
    class_names = _class_mapping(ckpt.class_names, ds.class_names)
    prep = preprocessing.resolve(
        preprocessing_overrides, ckpt.preprocessing, channels=ckpt.in_channels
    )
    rid = runs.run_id(
        checkpoint_sha256=ckpt.sha256,
        dataset_fingerprint=ds.fingerprint,
        preprocessing=prep.to_dict(),
        class_names=class_names,
    )
    store = runs.RunStore(runs_dir)
    cached = store.get(rid)
    if cached is not None:
        say(f"cached run {rid}: no inference needed")
        return cached
    # One evaluation per run id at a time, across threads and processes: whoever waited for
    # the lock then finds the run the first one stored and runs no inference.
    with store.lock(rid, on_wait=lambda: say(f"waiting for another evaluation of run {rid}")):
        cached = store.get(rid)
        if cached is not None:
            say(f"cached run {rid}: no inference needed")
            return cached

        width = inference.output_width(ckpt.module, prep, dev, batch_size=batch_size)
        _check_width(width, class_names, ds)
        to_run = [class_names.index(name) for name in ds.class_names]  # dataset idx -> run idx
        labels = np.array([to_run[it.label] for it in ds.items], dtype=np.int64)
        what = f"{ckpt.architecture}, {prep.image_size}px"
        say(f"evaluating {len(ds.items)} images ({what}) on {dev}")
        t_inf = time.perf_counter()
        pred = inference.predict(
            ckpt.module,
            [ds.abspath(it) for it in ds.items],
            labels,
            prep,
            device=dev,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress,
        )
        t_done = time.perf_counter()
        kept = [ds.items[i] for i in pred.index]
        skipped = list(ds.skipped) + [
            data.Skipped(ds.items[i].split, ds.items[i].path, why) for i, why in pred.failed.items()
        ]
        table = runs.predictions_table(
            split=[it.split for it in kept],
            path=[it.path for it in kept],
            y_true=labels[pred.index],
            y_pred=pred.y_pred,
            confidence=pred.confidence,
            loss=pred.loss,
            probs=pred.probs,
        )
        report = _metrics_json(class_names, ds, kept, labels[pred.index], pred, skipped)
        meta = {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "checkpoint": {
                "name": ckpt.path.name,
                "path": str(ckpt.path.resolve()),
                "sha256": ckpt.sha256,
                "format": ckpt.format,
                "trusted": trust_checkpoint,
            },
            "architecture": ckpt.architecture,
            "class_names": class_names,
            "preprocessing": prep.to_dict(),
            "dataset": {
                "root": str(ds.root.resolve()),
                "fingerprint": ds.fingerprint,
                "splits": {s: ds.count(s) for s in ds.split_dirs},
                # where each split's images live: prediction paths are relative to these
                "split_dirs": {s: str(d.resolve()) for s, d in ds.split_dirs.items()},
            },
            "skipped": [{"split": s.split, "path": s.path, "reason": s.reason} for s in skipped],
            "device": str(dev),
            "batch_size": batch_size,
            "timings": {
                "load_s": round(t_load - t0, 3),
                "scan_s": round(t_scan - t_load, 3),
                "inference_s": round(t_done - t_inf, 3),
                "images_per_s": round(len(ds.items) / max(t_done - t_inf, 1e-9), 1),
            },
            "versions": _versions(),
        }
        run = store.write(rid, table, meta, report)
        say(f"wrote run {rid} ({len(kept)} predictions, {len(skipped)} skipped)")
        return run


def _metrics_json(
    class_names: list[str],
    ds: data.Dataset,
    kept: list[data.Item],
    y_true: np.ndarray,
    pred: inference.Predictions,
    skipped: list[data.Skipped],
) -> dict[str, Any]:
    """Return metrics.json: the contract in DESIGN.md, one entry per split."""
    split_of = np.array([it.split for it in kept], dtype=object)
    splits: dict[str, Any] = {}
    for split in ds.split_dirs:
        mask = split_of == split
        splits[split] = metrics.split_report(
            y_true[mask],
            pred.y_pred[mask],
            class_names=class_names,
            probs=pred.probs[mask] if len(pred.probs) else None,
            skipped=[s.path for s in skipped if s.split == split],
        )
    return {"classes": class_names, "splits": splits}


def _versions() -> dict[str, str]:
    import torch

    try:  # from the package metadata: importing torchvision costs seconds
        tv = importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        tv = "not installed"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": tv,
        "classlens_format": str(runs.FORMAT_VERSION),
    }
