"""Scale-out under torchrun: contiguous shards without padding, atomic shard files, and a
2-process gloo run that merges into exactly the single-process run (or into nothing)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core.engine import distributed, evaluate, inference
from core.errors import ClassLensError
from tests.conftest import REPO, SORTED_CLASSES, cli_env, last_line, write_dataset


@pytest.mark.parametrize(
    ("n", "world"), [(0, 2), (1, 3), (7, 2), (10, 3), (10, 4), (12, 5), (100, 8)]
)
def test_shards_cover_every_position_exactly_once(n: int, world: int) -> None:
    shards = [distributed.shard(n, r, world) for r in range(world)]
    assert [p for s in shards for p in s] == list(range(n))  # in order, no padding, no repeat
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def _predictions(n: int, k: int = 3, failed: tuple[int, ...] = ()) -> inference.Predictions:
    rng = np.random.default_rng(n)
    index = np.array([i for i in range(n) if i not in failed], dtype=np.int64)
    probs = rng.dirichlet(np.ones(k), size=len(index)).astype(np.float32)
    return inference.Predictions(
        index=index,
        y_pred=probs.argmax(1).astype(np.int64),
        confidence=probs.max(1),
        loss=rng.uniform(0, 3, len(index)).astype(np.float32),
        probs=probs,
        failed={i: f"unreadable image ({i})" for i in failed},
        batch_size=4,
    )


def _take(pred: inference.Predictions, positions: range) -> inference.Predictions:
    rows = (pred.index >= positions.start) & (pred.index < positions.stop)
    return inference.Predictions(
        pred.index[rows], pred.y_pred[rows], pred.confidence[rows], pred.loss[rows],
        pred.probs[rows], {i: w for i, w in pred.failed.items() if i in positions}, 4,
    )  # fmt: skip


def test_shards_saved_and_merged_give_back_the_whole(tmp_path: Path) -> None:
    whole = _predictions(11, failed=(3, 4, 9))
    for rank in range(3):
        distributed.save_shard(tmp_path, rank, 3, _take(whole, distributed.shard(11, rank, 3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"rank-0000{r}-of-00003.npz" for r in range(3)
    ]  # no temporary file left behind

    merged = distributed.merge_shards(tmp_path, 3, 11)
    for name in ("index", "y_pred", "confidence", "loss", "probs"):
        np.testing.assert_array_equal(getattr(merged, name), getattr(whole, name))
    assert merged.failed == whole.failed and merged.batch_size == 4


def test_a_missing_or_wrong_shard_is_an_error(tmp_path: Path) -> None:
    whole = _predictions(6)
    distributed.save_shard(tmp_path, 0, 2, _take(whole, range(0, 3)))
    with pytest.raises(ClassLensError, match="shard of rank 1 of 2 is missing"):
        distributed.merge_shards(tmp_path, 2, 6)
    distributed.save_shard(tmp_path, 1, 2, _take(whole, range(2, 6)))  # overlaps rank 0
    with pytest.raises(ClassLensError, match=r"rank 1 covers 4 images, expected positions 3\.\.5"):
        distributed.merge_shards(tmp_path, 2, 6)


def test_not_launched_without_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.launched()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.launched()


# --- two real processes (gloo on CPU) ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master-addr=127.0.0.1", f"--master-port={_free_port()}",
        "-m", "core", "evaluate", "--device", "cpu", *(str(a) for a in args),
    ]  # fmt: skip
    return subprocess.run(
        cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_two_ranks_merge_into_the_single_process_run(
    tmp_path: Path, checkpoint: Path, runs_dir: Path
) -> None:
    # 15 images + 1 broken: an odd count, so the shards differ in size; the broken one is
    # in rank 0's half and must be listed as skipped exactly as in one process.
    data = write_dataset(tmp_path / "data", splits=("test",), per_class=5)
    (data / "test" / "bird" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    single = evaluate.evaluate(checkpoint, data, device="cpu", runs_dir=tmp_path / "single")

    proc = _torchrun("--checkpoint", checkpoint, "--data", data, "--batch-size", 3)
    assert proc.returncode == 0, proc.stderr
    merged_path = Path(last_line(proc.stdout))
    assert merged_path == runs_dir / single.run_id  # the same run id
    assert proc.stdout.count(str(merged_path)) == 1  # rank 1 printed nothing
    assert sorted(p.name for p in runs_dir.iterdir() if p.name.startswith(".shards")) == []

    a = pd.read_parquet(single.path / "predictions.parquet")
    b = pd.read_parquet(merged_path / "predictions.parquet")
    assert len(b) == 15
    cols = ["split", "path", "y_true", "y_pred"]
    pd.testing.assert_frame_equal(a[cols].astype(str), b[cols].astype(str))
    np.testing.assert_allclose(np.stack(b.probs), np.stack(a.probs), atol=1e-6)
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-5)
    meta = json.loads((merged_path / "meta.json").read_text())
    assert meta["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert meta["skipped"] == single.meta["skipped"] and len(meta["skipped"]) == 1
    assert json.loads((merged_path / "metrics.json").read_text()) == single.metrics


class FailsOnBrightImages(torch.nn.Module):
    """Scripted (so it loads in another process): raises on a batch of mostly bright images."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.mean() > 0.0):  # normalised: black is -1, white +1
            raise RuntimeError("bright image")
        return x.mean(dim=(2, 3)).repeat(1, 3)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_an_error_on_one_rank_stops_both_and_writes_nothing(tmp_path: Path, runs_dir: Path) -> None:
    data = tmp_path / "data"
    for label, name in enumerate(SORTED_CLASSES):  # bird, cat black; dog (rank 1's) white
        (data / name).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (16, 16), 255 if label == 2 else 0).save(data / name / f"{i}.png")
    ckpt = tmp_path / "bright.pt"
    torch.jit.script(FailsOnBrightImages()).save(str(ckpt))
    sidecar = {"preprocessing": {"image_size": 16, "channels": 1, "mean": [0.5], "std": [0.5]}}
    Path(f"{ckpt}.json").write_text(json.dumps(sidecar))

    proc = _torchrun("--checkpoint", ckpt, "--data", data, "--trust-checkpoint", timeout=90)
    assert proc.returncode != 0
    assert "error: inference failed on rank 1 of 2: " in proc.stderr, proc.stderr
    assert "bright image" in proc.stderr
    assert proc.stdout.strip() == ""
    assert [p.name for p in runs_dir.iterdir() if not p.name.startswith(".locks")] == []
