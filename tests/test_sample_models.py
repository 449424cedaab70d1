"""The bundled sample: each checkpoint, evaluated through the CLI, meets its promised figures."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, recall_score

from core.engine.sample import CHECKPOINTS, DATASET
from core.runs import RunStore

ROOT = Path(__file__).resolve().parents[1]
# One worker runs them all under `--dist loadgroup`: the CLI fixture runs once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sample_models")]


@pytest.fixture(scope="module")
def sample_runs(tmp_path_factory: pytest.TempPathFactory, sample_store: Path) -> dict[str, Path]:
    """Return {name: run dir} as the CLI prints it for every sample checkpoint, over a copy of
    the session's evaluated sample store (evaluated once per session by the same
    ``evaluate`` the CLI calls). The CLI must resolve the very inputs that made each run (the
    run id hashes checkpoint, data and preprocessing) and print that run's folder.

    The CLI's ``main`` runs in this process (three interpreter start-ups are not the point);
    the last test below starts the real ``python -m core`` on this store."""
    from core.__main__ import main

    base = tmp_path_factory.mktemp("sample")
    shutil.copytree(sample_store, base / "runs")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLASSLENS_RUNS_DIR", str(base / "runs"))
        mp.setenv("CLASSLENS_CACHE_DIR", str(base / "cache"))
        for name, ckpt in CHECKPOINTS.items():
            argv = ["evaluate", "--checkpoint", str(ckpt), "--data", str(DATASET),
                    "--device", "cpu"]  # fmt: skip
            stdout, stderr = io.StringIO(), io.StringIO()
            with redirect_stdout(stdout), redirect_stderr(stderr):
                code = main(argv)
            assert code == 0, stderr.getvalue()
            out[name] = Path(stdout.getvalue().strip().splitlines()[-1])
            assert out[name].parent == base / "runs", stdout.getvalue()
            assert (sample_store / out[name].name).is_dir(), (
                f"{name}: not the stored run\n{stderr.getvalue()}"
            )
    return out


def _split(run_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    run = RunStore(run_dir.parent).get(run_dir.name)
    assert run is not None
    df = run.predictions()
    df = df[df.split == split]
    return df.y_true.to_numpy(), df.y_pred.to_numpy()


def test_good_model_is_at_least_97_percent_on_test(sample_runs: dict[str, Path]) -> None:
    y_true, y_pred = _split(sample_runs["good"], "test")
    assert accuracy_score(y_true, y_pred) >= 0.97


def test_overfit_model_memorises_train_and_drops_8_points(sample_runs: dict[str, Path]) -> None:
    train = accuracy_score(*_split(sample_runs["overfit"], "train"))
    test = accuracy_score(*_split(sample_runs["overfit"], "test"))
    assert train >= 0.99
    assert train - test >= 0.08, f"train {train:.3f} vs test {test:.3f}"


def test_imbalanced_model_hides_one_digit_behind_high_accuracy(
    sample_runs: dict[str, Path],
) -> None:
    figures = json.loads((ROOT / "sample_data" / "figures.json").read_text())
    digit = str(figures["checkpoints"]["imbalanced"]["rare_class"])
    y_true, y_pred = _split(sample_runs["imbalanced"], "test")
    recalls = recall_score(y_true, y_pred, average=None, labels=range(10), zero_division=0)
    assert accuracy_score(y_true, y_pred) >= 0.88
    assert recalls[int(digit)] < 0.30
    assert sorted(recalls)[1] >= 0.80, "only the one digit should fail"


def test_metrics_json_matches_the_run_predictions(sample_runs: dict[str, Path]) -> None:
    for run_dir in sample_runs.values():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        for split in ("train", "test"):
            y_true, y_pred = _split(run_dir, split)
            assert metrics["splits"][split]["n"] == len(y_true)
            assert metrics["splits"][split]["accuracy"] == pytest.approx(
                accuracy_score(y_true, y_pred), abs=1e-12
            )


def test_second_cli_call_returns_the_same_run_without_inference(
    sample_runs: dict[str, Path],
) -> None:
    run_dir = sample_runs["good"]
    before = (run_dir / "predictions.parquet").stat().st_mtime_ns
    env = {**os.environ, "CLASSLENS_RUNS_DIR": str(run_dir.parent)}
    env["CLASSLENS_CACHE_DIR"] = str(run_dir.parent.parent / "cache")
    proc = subprocess.run(
        [sys.executable, "-m", "core", "evaluate", "--checkpoint", str(CHECKPOINTS["good"]),
         "--data", str(DATASET)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(run_dir)
    assert "no inference" in proc.stderr
    assert "evaluating" not in proc.stderr
    assert (run_dir / "predictions.parquet").stat().st_mtime_ns == before
