"""One evaluation: checkpoint + dataset + preprocessing -> a stored run (cached by content)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import runs
from core.analysis import metrics, provenance
from core.engine import data, evidence, inference, models, preprocessing, probe
from core.errors import ClassLensError

Log = Callable[[str], None]


def _class_mapping(ckpt_names: tuple[str, ...] | None, ds_names: tuple[str, ...]) -> list[str]:
    """Return the run's class names (checkpoint order when it names them)."""
    if ckpt_names is None:
        return list(ds_names)
    if len(set(ckpt_names)) == len(ckpt_names) and set(ds_names) <= set(ckpt_names):
        return list(ckpt_names)  # all of them, or a test set holding a subset (absent_classes)
    missing = sorted(set(ds_names) - set(ckpt_names))[:5]
    raise ClassLensError(
        f"the checkpoint names {len(ckpt_names)} classes but the dataset has {len(ds_names)} class "
        f"folders, and they differ (dataset folders not in the checkpoint: "
        f"{', '.join(missing) or '-'}). Rename the folders to the checkpoint's class names or "
        "pick the matching dataset."
    )


def absent_classes(class_names: list[str], ds_names: tuple[str, ...] | list[str]) -> list[str]:
    """Return the run's classes with no folder in the dataset (in run order): the checkpoint
    names them but the test set holds a subset, so they have no images to judge."""
    present = set(ds_names)
    return [name for name in class_names if name not in present]


def _check_width(width: int, class_names: list[str], ds: data.Dataset) -> None:
    if width != len(class_names):
        shown = ", ".join(class_names[:8]) + (", ..." if len(class_names) > 8 else "")
        raise ClassLensError(
            f"checkpoint has {width} outputs but the dataset has {len(class_names)} classes "
            f"({shown}) in {ds.root}. Pick the dataset the model was trained for, or a "
            "checkpoint whose head matches it."
        )


@dataclass(frozen=True)
class Job:
    """One evaluation, planned: everything known before inference, and the run's id."""

    ckpt: models.Checkpoint
    ds: data.Dataset
    prep: preprocessing.Preprocessing
    class_names: list[str]  # the run's label order
    labels: np.ndarray  # (n_items,) int64 true label of each dataset item, in run order
    rid: str
    store: runs.RunStore
    device: torch.device
    precision: str  # fp32 | bf16 | fp16 (not fp32: a different run id, see run_id_for)
    trust_checkpoint: bool
    seconds: dict[str, float]  # load_s, scan_s
    outputs: str = "logits"  # what the model returns (inference.OUTPUT_KINDS), by check_model
    # Decisions beyond the weights and their evidence (outputs, transform_input): meta "facts".
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Where each preprocessing setting came from, and the probe that measured some
    # (core.engine.probe)
    prep_sources: dict[str, str] = dataclasses.field(default_factory=dict)
    probe: dict[str, Any] | None = None
    prep_note: str = ""  # why an unknown setting was not probed ("" otherwise)


def run_id_for(base: str, precision: str) -> str:
    """Return the run id for ``precision``: the content id for fp32, a derived one otherwise.

    A reduced-precision forward pass can change predictions, so a bf16 run is stored apart
    from the fp32 one; fp32 keeps the plain content id whatever the device, batch size or
    torch.compile (those change nothing an analyst compares).
    """
    if precision == "fp32":
        return base
    return hashlib.sha256(f"{base}:{precision}".encode()).hexdigest()[:16]


def run_labels(
    ckpt_names: tuple[str, ...] | None, ds: data.Dataset
) -> tuple[list[str], np.ndarray]:
    """Return (the run's class names, (n_items,) int64 run label of each dataset item)."""
    class_names = _class_mapping(ckpt_names, ds.class_names)
    to_run = [class_names.index(name) for name in ds.class_names]  # dataset idx -> run idx
    return class_names, np.array([to_run[it.label] for it in ds.items], dtype=np.int64)


def plan(
    checkpoint: str | Path,
    dataset: str | Path | data.Dataset,
    *,
    arch: str | None = None,
    preprocessing_overrides: dict[str, Any] | None = None,
    device: str = "auto",
    runs_dir: str | Path | None = None,
    trust_checkpoint: bool = False,
    precision: str = "fp32",
    probe_preprocessing: bool = True,
    log: Log | None = None,
) -> Job:
    """Return the planned evaluation: checkpoint loaded, dataset scanned (or the given scan),
    preprocessing resolved (what is still unknown probed, see core.engine.probe, unless
    ``probe_preprocessing`` is False) and run id computed; raise ClassLensError on bad input."""
    t0 = time.perf_counter()
    inference.check_precision(precision)
    dev = inference.resolve_device(device)
    ckpt = models.load_checkpoint(checkpoint, arch=arch, trusted=trust_checkpoint)
    t_load = time.perf_counter()
    ds = dataset if isinstance(dataset, data.Dataset) else data.scan(dataset)
    t_scan = time.perf_counter()
    class_names, labels = run_labels(ckpt.class_names, ds)
    store = runs.RunStore(runs_dir)
    resolved = probe.resolve(
        ckpt.module, ckpt.in_channels, ckpt.preprocessing, preprocessing_overrides,
        ds=ds, labels=labels, n_classes=len(class_names), checkpoint_sha256=ckpt.sha256,
        device=dev, cache_dir=store.root / ".probes", enabled=probe_preprocessing, log=log,
    )  # fmt: skip
    prep = resolved.prep
    base = runs.run_id(
        checkpoint_sha256=models.content_sha256(ckpt),
        dataset_fingerprint=ds.fingerprint,
        preprocessing=prep.to_dict(),
        class_names=class_names,
    )
    seconds = {"load_s": t_load - t0, "scan_s": t_scan - t_load}
    return Job(
        ckpt, ds, prep, class_names, labels, run_id_for(base, precision),
        store, dev, precision, trust_checkpoint, seconds,
        prep_sources=resolved.sources, probe=resolved.probe, prep_note=resolved.note,
    )  # fmt: skip


def check_model(job: Job, batch_size: int | None) -> Job:
    """Return ``job`` ready for inference: settings the weights do not hold decided from
    evidence (transform_input, whether outputs are probabilities already) and recorded in its
    facts. Raise ClassLensError unless the model runs on this preprocessing with one output
    per class (and on batches, when ``batch_size`` is not 1)."""
    ckpt = job.ckpt
    facts = {**{k: v for k, v in ckpt.facts.items() if k != "transform_input"}, **job.facts}
    decided = evidence.decide_transform_input(
        ckpt.module,
        job.prep,
        [job.ds.abspath(it) for it in job.ds.items],
        declared=ckpt.facts.get("transform_input"),
    )
    if decided is not None:
        ckpt = dataclasses.replace(ckpt, module=decided[0])
        facts["transform_input"] = decided[1]
    width = inference.output_width(ckpt.module, job.prep, job.device, batch_size=batch_size or 2)
    _check_width(width, job.class_names, job.ds)
    kind, why = inference.output_kind(ckpt.module, job.prep, job.device)
    facts["outputs"] = {"kind": kind, "applied": inference.OUTPUT_KINDS[kind], "evidence": why}
    return dataclasses.replace(job, ckpt=ckpt, outputs=kind, facts=facts)


def run_inference(
    job: Job,
    positions: range,
    *,
    batch_size: int | None = None,
    num_workers: int | None = None,
    compile: bool = False,
    progress: inference.Progress | None = None,
) -> inference.Predictions:
    """Return the predictions for the dataset items at ``positions`` (a contiguous shard,
    or all of them); their ``index`` and ``failed`` keys are dataset item positions."""
    items = job.ds.items[positions.start : positions.stop]
    pred = inference.predict(
        job.ckpt.module,
        [job.ds.abspath(it) for it in items],
        job.labels[positions.start : positions.stop],
        job.prep,
        device=job.device,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
        precision=job.precision,
        compile=compile,
        outputs=job.outputs,
    )
    if positions.start == 0:
        return pred
    failed = {i + positions.start: why for i, why in pred.failed.items()}
    notes = {i + positions.start: why for i, why in pred.notes.items()}
    return dataclasses.replace(pred, index=pred.index + positions.start, failed=failed, notes=notes)


def evaluate(
    checkpoint: str | Path,
    dataset: str | Path,
    *,
    arch: str | None = None,
    preprocessing_overrides: dict[str, Any] | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    num_workers: int | None = None,
    runs_dir: str | Path | None = None,
    trust_checkpoint: bool = False,
    precision: str = "fp32",
    compile: bool = False,
    progress: inference.Progress | None = None,
    log: Log | None = None,
    probe_preprocessing: bool = True,
) -> runs.Run:
    """Return the run for ``checkpoint`` on ``dataset``: from the store when it exists,
    else by running inference once and writing it atomically.

    ``batch_size=None`` picks one (64 on CPU; on CUDA the largest that fits, from 512 down).
    ``precision`` bf16/fp16 runs the forward pass under autocast (a separate run, see
    ``run_id_for``); ``compile`` applies torch.compile (same run id, same results).
    """
    say = log or (lambda msg: None)
    if batch_size is not None and batch_size < 1:
        raise ClassLensError(f"--batch-size must be at least 1, got {batch_size}.")
    job = plan(
        checkpoint,
        dataset,
        arch=arch,
        preprocessing_overrides=preprocessing_overrides,
        device=device,
        runs_dir=runs_dir,
        trust_checkpoint=trust_checkpoint,
        precision=precision,
        probe_preprocessing=probe_preprocessing,
        log=say,
    )
    say_preprocessing(job, say)
    store, rid = job.store, job.rid
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

        job = check_model(job, batch_size)
        what = f"{job.ckpt.architecture}, {job.prep.image_size}px, {precision}"
        say(f"evaluating {len(job.ds.items)} images ({what}) on {job.device}")
        t_inf = time.perf_counter()
        pred = run_inference(
            job,
            range(len(job.ds.items)),
            batch_size=batch_size,
            num_workers=num_workers,
            compile=compile,
            progress=progress,
        )
        inference_s = time.perf_counter() - t_inf
        run = write_run(job, pred, inference_s=inference_s, extra={"compile": compile})
        n, skipped = run.meta["n_predictions"], len(run.meta["skipped"])
        for fact, value in run.meta["facts"].items():  # e.g. outputs: kind logits; applied ...
            if isinstance(value, dict):
                value = "; ".join(f"{k} {v}" for k, v in value.items())
            say(f"{fact}: {value}")
        if run.meta["absent_classes"]:
            say(absent_sentence(run.meta["absent_classes"], len(job.class_names)))
        if pred.notes:
            first = job.ds.items[min(pred.notes)]
            say(
                f"warning: {len(pred.notes)} image(s) {pred.notes[min(pred.notes)]} (first: "
                f"{first.split}/{first.path}); listed in the run's warnings"
            )
        say(f"wrote run {rid} ({n} predictions, {skipped} skipped)")
        return run


def absent_sentence(absent: list[str], n_classes: int) -> str:
    """Return the one line that says which of the checkpoint's classes the dataset lacks."""
    shown = ", ".join(absent[:8]) + (", ..." if len(absent) > 8 else "")
    return (
        f"note: {len(absent)} of the checkpoint's {n_classes} classes have no images in the "
        f"dataset ({shown}); their recall is absent (support 0) and macro averages are over "
        "the classes present"
    )


def say_preprocessing(job: Job, say: Log) -> None:
    """Log the preprocessing with each setting's source, and what the probe chose (or why
    nothing was probed)."""
    meta = {"preprocessing": job.prep.to_dict(), "preprocessing_source": job.prep_sources,
            "probe": job.probe}  # fmt: skip
    say(f"preprocessing: {provenance.input_text(meta)}; mean / std "
        f"{provenance.normalisation_text(meta)}")  # fmt: skip
    probed = "probed" in job.prep_sources.values()
    if job.probe is not None and (probed or job.prep_note):
        say(probe.summary(probe.Resolved(job.prep, job.prep_sources, job.probe, job.prep_note)))
    elif job.prep_note:
        say(f"warning: {job.prep_note}")


def write_run(
    job: Job,
    pred: inference.Predictions,
    *,
    inference_s: float,
    device: str | None = None,
    extra: dict[str, Any] | None = None,
) -> runs.Run:
    """Write the run of ``job`` from predictions over all its items; return it."""
    ds, labels = job.ds, job.labels
    kept = [ds.items[i] for i in pred.index]
    skipped = list(ds.skipped) + [
        data.Skipped(ds.items[i].split, ds.items[i].path, why)
        for i, why in sorted(pred.failed.items())
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
    absent = absent_classes(job.class_names, ds.class_names)
    report = _metrics_json(job.class_names, ds, kept, labels[pred.index], pred, skipped, absent)
    ckpt = job.ckpt
    meta = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "checkpoint": {
            "name": ckpt.path.name,
            "path": str(ckpt.path.resolve()),
            "sha256": ckpt.sha256,
            "format": ckpt.format,
            "trusted": job.trust_checkpoint,
        },
        "architecture": ckpt.architecture,
        "class_names": job.class_names,
        # the checkpoint's classes with no folder in the dataset: support 0, "absent" metrics
        "absent_classes": absent,
        "preprocessing": job.prep.to_dict(),
        # field -> declared | read | probed | typed | default (core.engine.preprocessing.SOURCES)
        "preprocessing_source": job.prep_sources,
        **({"probe": job.probe} if job.probe is not None else {}),
        **({"preprocessing_note": job.prep_note} if job.prep_note else {}),
        "dataset": {
            "root": str(ds.root.resolve()),
            "fingerprint": ds.fingerprint,
            "splits": {s: ds.count(s) for s in ds.split_dirs},
            # where each split's images live: prediction paths are relative to these
            "split_dirs": {s: str(d.resolve()) for s, d in ds.split_dirs.items()},
        },
        "skipped": [{"split": s.split, "path": s.path, "reason": s.reason} for s in skipped],
        # decoded but suspicious images (e.g. blank after conversion): evaluated, and listed
        "warnings": [
            {"split": ds.items[i].split, "path": ds.items[i].path, "reason": why}
            for i, why in sorted(pred.notes.items())
        ],
        # settings decided beyond the weights, each with its evidence (see check_model)
        "facts": job.facts,
        "device": device or str(job.device),
        "batch_size": pred.batch_size,
        # fp32 | bf16 | fp16: the forward pass's autocast dtype (probabilities are float32)
        "precision": job.precision,
        **(extra or {}),
        "timings": {
            "load_s": round(job.seconds["load_s"], 3),
            "scan_s": round(job.seconds["scan_s"], 3),
            "inference_s": round(inference_s, 3),
            "images_per_s": round(len(ds.items) / max(inference_s, 1e-9), 1),
        },
        "versions": _versions(),
    }
    return job.store.write(job.rid, table, meta, report)


def _metrics_json(
    class_names: list[str],
    ds: data.Dataset,
    kept: list[data.Item],
    y_true: np.ndarray,
    pred: inference.Predictions,
    skipped: list[data.Skipped],
    absent: list[str],
) -> dict[str, Any]:
    """Return metrics.json: the contract in DESIGN.md, one entry per split; classes in
    ``absent`` (no folder in the dataset) are marked so and left out of macro averages."""
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
            absent=[class_names.index(name) for name in absent],
        )
    return {"classes": class_names, "splits": splits}


def _versions() -> dict[str, str]:
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
