"""Scale-out under torchrun: each rank evaluates one contiguous shard, rank 0 merges.

``torchrun --nproc_per_node=N -m core evaluate ...`` (and multi-node through torchrun's
rendezvous) starts N processes with RANK/WORLD_SIZE/LOCAL_RANK set. Unlike
DistributedSampler, shards are contiguous ranges without padding, so every image is
evaluated exactly once and concatenating the shards in rank order gives the single-process
order. Each rank stores its shard atomically under ``<runs_dir>/.shards-<run id>/`` (the run
store must be on a filesystem every node sees); rank 0 waits for all of them, merges them
into one run with the single-process run id and rows, and removes the shards.

Every step that can fail on one rank ends in a collective that tells every rank, so all of
them stop with the same error instead of waiting; a rank that dies or hangs makes the others
give up after ``timeout_s`` (torchrun also stops the other workers of a failed node). Only
rank 0 writes the run, through the run store's atomic rename, so a failure leaves no half run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from core import runs
from core.engine import data, evaluate, inference
from core.errors import ClassLensError

T = TypeVar("T")


def launched() -> bool:
    """Return True when this process is one of several started by torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def shard(n_items: int, rank: int, world_size: int) -> range:
    """Return the contiguous positions rank ``rank`` evaluates: sizes differ by at most one,
    no position is repeated or padded, and the ranges in rank order cover 0..n_items-1."""
    return range(rank * n_items // world_size, (rank + 1) * n_items // world_size)


def shard_dir(store: runs.RunStore, rid: str) -> Path:
    """Return the hidden folder where the ranks leave their shards of run ``rid``."""
    return store.root / f".shards-{rid}"


def _shard_file(folder: Path, rank: int, world_size: int) -> Path:
    return folder / f"rank-{rank:05d}-of-{world_size:05d}.npz"


def save_shard(folder: Path, rank: int, world_size: int, pred: inference.Predictions) -> Path:
    """Write one rank's predictions atomically (temporary name, then rename); return the file."""
    folder.mkdir(parents=True, exist_ok=True)
    final = _shard_file(folder, rank, world_size)
    tmp = final.with_name(f".tmp-{final.stem}-{os.getpid()}.npz")
    failed = sorted(pred.failed.items())
    with open(tmp, "wb") as f:
        np.savez(
            f,
            index=pred.index,
            y_pred=pred.y_pred,
            confidence=pred.confidence,
            loss=pred.loss,
            probs=pred.probs,
            failed_index=np.array([i for i, _ in failed], dtype=np.int64),
            failed_reason=np.array([why for _, why in failed], dtype=str),
            notes_index=np.array(sorted(pred.notes), dtype=np.int64),
            notes_reason=np.array([pred.notes[i] for i in sorted(pred.notes)], dtype=str),
            batch_size=np.array(pred.batch_size),
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return final


def merge_shards(folder: Path, world_size: int, n_items: int) -> inference.Predictions:
    """Return the predictions of all ranks' shards, in dataset order; raise ClassLensError if
    a shard is missing or does not cover exactly its rank's positions."""
    parts: list[dict[str, np.ndarray]] = []
    for rank in range(world_size):
        path = _shard_file(folder, rank, world_size)
        try:
            with np.load(path, allow_pickle=False) as z:
                parts.append({k: z[k] for k in z.files})
        except (OSError, ValueError) as exc:
            raise ClassLensError(
                f"shard of rank {rank} of {world_size} is missing or unreadable ({path}: {exc}); "
                "nothing was written. Run the evaluation again."
            ) from None
        want = shard(n_items, rank, world_size)
        got = np.concatenate([parts[-1]["index"], parts[-1]["failed_index"]])
        if len(got) != len(want) or set(got.tolist()) != set(want):
            raise ClassLensError(
                f"shard of rank {rank} covers {len(got)} images, expected positions "
                f"{want.start}..{want.stop - 1}; nothing was written. Run the evaluation again."
            )
    widths = {p["probs"].shape[1] for p in parts if len(p["probs"])}
    width = widths.pop() if widths else 0

    def cat(key: str, dtype: type) -> np.ndarray:
        arrays = [p[key] for p in parts if len(p[key])]
        return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)

    probs = [p["probs"] for p in parts if len(p["probs"])]
    failed = {
        int(i): str(why)
        for p in parts
        for i, why in zip(p["failed_index"], p["failed_reason"], strict=True)
    }
    return inference.Predictions(
        index=cat("index", np.int64),
        y_pred=cat("y_pred", np.int64),
        confidence=cat("confidence", np.float32),
        loss=cat("loss", np.float32),
        probs=np.concatenate(probs).astype(np.float32) if probs else np.zeros((0, width)),
        failed=failed,
        batch_size=int(parts[0]["batch_size"]),
        notes={  # shards written before notes existed have none
            int(i): str(why)
            for p in parts
            for i, why in zip(p.get("notes_index", ()), p.get("notes_reason", ()), strict=True)
        },
    )


def _together(step: str, fn: Callable[[], T]) -> tuple[T, list[Any]]:
    """Run ``fn`` on every rank; return its value here and every rank's (small) value.

    If it raised on any rank, every rank raises one ClassLensError naming the ranks and their
    errors, so no rank is left waiting for a rank that has given up.
    """
    try:
        value, error = fn(), None
    except ClassLensError as exc:
        value, error = None, str(exc)
    except Exception as exc:  # a bug or an I/O error: still stop every rank
        value, error = None, f"{type(exc).__name__}: {exc}"
    gathered: list[Any] = [None] * dist.get_world_size()
    try:
        dist.all_gather_object(gathered, (error, value if _small(value) else None))
    except (RuntimeError, dist.DistError) as exc:  # a rank died, or passed the timeout
        raise ClassLensError(
            f"lost the other ranks during {step} ({type(exc).__name__}: "
            f"{str(exc).strip()[:200]}); nothing was written. A rank died or took longer than "
            f"--dist-timeout{': ' + error if error else ''}."
        ) from None
    errors = [(r, e) for r, (e, _) in enumerate(gathered) if e]
    if errors:
        rank, first = errors[0]
        others = f" (and {len(errors) - 1} other rank(s))" if len(errors) > 1 else ""
        raise ClassLensError(f"{step} failed on rank {rank} of {len(gathered)}{others}: {first}")
    return value, [v for _, v in gathered]  # type: ignore[return-value]


def _small(value: object) -> bool:
    return isinstance(value, (int, float, str, tuple, type(None)))


def _device(device: str) -> torch.device:
    """Return this rank's device: cuda -> the GPU of LOCAL_RANK."""
    dev = inference.resolve_device(device)
    if dev.type != "cuda":
        return dev
    dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(dev)
    return dev


def evaluate_sharded(
    checkpoint: str | Path,
    dataset: str | Path,
    *,
    timeout_s: float = 1800.0,
    device: str = "auto",
    batch_size: int | None = None,
    num_workers: int | None = None,
    compile: bool = False,
    progress: inference.Progress | None = None,
    log: evaluate.Log | None = None,
    **plan_options: Any,
) -> runs.Run | None:
    """Return the run on rank 0 (None on the other ranks) of evaluating ``checkpoint`` on
    ``dataset`` across the torchrun ranks; options as ``core.engine.evaluate.evaluate``."""
    if batch_size is not None and batch_size < 1:
        raise ClassLensError(f"--batch-size must be at least 1, got {batch_size}.")
    dev = _device(device)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        timeout=timedelta(seconds=timeout_s),
        device_id=dev if dev.type == "cuda" else None,
    )
    try:
        return _evaluate(
            checkpoint, dataset, dev, backend,
            batch_size=batch_size, num_workers=num_workers, compile=compile,
            progress=progress, log=log, plan_options=plan_options,
        )  # fmt: skip
    finally:
        dist.destroy_process_group()


def _evaluate(
    checkpoint: str | Path,
    dataset: str | Path,
    dev: torch.device,
    backend: str,
    *,
    batch_size: int | None,
    num_workers: int | None,
    compile: bool,
    progress: inference.Progress | None,
    log: evaluate.Log | None,
    plan_options: dict[str, Any],
) -> runs.Run | None:
    rank, world = dist.get_rank(), dist.get_world_size()
    say = (log or (lambda msg: None)) if rank == 0 else (lambda msg: None)
    # Rank 0 scans once (the fingerprint reads every image's bytes) and hands the scan out.
    scanned, _ = _together("scanning the dataset", lambda: data.scan(dataset) if rank == 0 else 0)
    box: list[Any] = [scanned]
    dist.broadcast_object_list(box, src=0)
    ds: data.Dataset = box[0]
    job, _ = _together(
        "loading the checkpoint",
        lambda: evaluate.plan(checkpoint, ds, device=str(dev), **plan_options),
    )
    store, rid = job.store, job.rid
    folder = shard_dir(store, rid)
    with contextlib.ExitStack() as hold:
        if rank == 0:  # the run id's lock: no other evaluation of this run meanwhile
            hold.enter_context(store.lock(rid, on_wait=lambda: say(f"waiting for run {rid}")))
        box = [store.get(rid) is not None if rank == 0 else None]
        if rank == 0 and not box[0]:
            shutil.rmtree(folder, ignore_errors=True)  # a failed attempt's leftovers
        dist.broadcast_object_list(box, src=0)
        if box[0]:
            say(f"cached run {rid}: no inference needed")
            return store.get(rid) if rank == 0 else None
        try:
            return _compute_and_merge(
                job, folder, rank, world, backend,
                batch_size=batch_size, num_workers=num_workers, compile=compile,
                progress=progress if rank == 0 else None, say=say,
            )  # fmt: skip
        finally:
            if rank == 0:
                shutil.rmtree(folder, ignore_errors=True)


def _compute_and_merge(
    job: evaluate.Job,
    folder: Path,
    rank: int,
    world: int,
    backend: str,
    *,
    batch_size: int | None,
    num_workers: int | None,
    compile: bool,
    progress: inference.Progress | None,
    say: evaluate.Log,
) -> runs.Run | None:
    n = len(job.ds.items)
    mine = shard(n, rank, world)
    say(
        f"evaluating {n} images on {world} ranks ({backend}), {len(mine)} here "
        f"({job.ckpt.architecture}, {job.prep.image_size}px, {job.precision}) on {job.device}"
    )

    def work() -> float:
        nonlocal job  # check_model decides settings (outputs, transform_input) into the job
        job = evaluate.check_model(job, batch_size)
        t0 = time.perf_counter()
        pred = evaluate.run_inference(
            job, mine, batch_size=batch_size, num_workers=num_workers, compile=compile,
            progress=progress,
        )  # fmt: skip
        save_shard(folder, rank, world, pred)
        return time.perf_counter() - t0

    _, seconds = _together("inference", work)
    if rank != 0:
        return None
    pred = merge_shards(folder, world, n)
    run = evaluate.write_run(
        job,
        pred,
        inference_s=max(seconds),  # the slowest rank: the wall time of the whole pass
        device=f"{job.device.type} x{world}",
        extra={"compile": compile, "distributed": {"world_size": world, "backend": backend}},
    )
    say(f"wrote run {job.rid} ({len(pred.index)} predictions from {world} ranks)")
    return run
