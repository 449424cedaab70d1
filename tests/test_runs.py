"""Runs: content ids, caching without inference, the files' contract, damage and crashes."""

from __future__ import annotations

import json
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import (
    CLI_TIMEOUT,
    REPO,
    assert_cli_error,
    assert_cli_run,
    cli,
    cli_cmd,
    cli_env,
    cli_inprocess,
    last_line,
    write_dataset,
)
from sklearn.metrics import precision_recall_fscore_support

from core import runs
from core.analysis import metrics
from core.engine import evaluate, inference
from core.runs import RunStore

# --- run ids ----------------------------------------------------------------------------------

BASE_ID = {
    "checkpoint_sha256": "a" * 64,
    "dataset_fingerprint": "f" * 32,
    "preprocessing": {"image_size": 16, "channels": 1, "mean": [0.5], "std": [0.5]},
    "class_names": ("bird", "cat", "dog"),
}
CHANGES = {
    "checkpoint_sha256": "b" * 64,
    "dataset_fingerprint": "e" * 32,
    "preprocessing": {**BASE_ID["preprocessing"], "image_size": 17},
    "class_names": ("bird", "dog", "cat"),  # same names, other order: other labels
}


def test_run_id_is_stable() -> None:
    rid = runs.run_id(**BASE_ID)
    assert re.fullmatch(r"[0-9a-f]{16}", rid)
    assert runs.run_id(**{**BASE_ID, "class_names": list(BASE_ID["class_names"])}) == rid
    shuffled = dict(reversed(list(BASE_ID["preprocessing"].items())))  # key order is no input
    assert runs.run_id(**{**BASE_ID, "preprocessing": shuffled}) == rid


@pytest.mark.parametrize("field", list(CHANGES))
def test_run_id_changes_with_each_input(field: str) -> None:
    assert runs.run_id(**{**BASE_ID, field: CHANGES[field]}) != runs.run_id(**BASE_ID)


def test_run_id_changes_with_the_format_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = runs.run_id(**BASE_ID)
    monkeypatch.setattr(runs, "FORMAT_VERSION", runs.FORMAT_VERSION + 1)
    assert runs.run_id(**BASE_ID) != before


# --- caching ----------------------------------------------------------------------------------


@pytest.fixture
def predict_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count calls to core.engine.inference.predict (one entry per call, the number of images)."""
    calls: list[int] = []
    real = inference.predict

    def counting(module: object, paths: list, *args: object, **kwargs: object) -> object:
        calls.append(len(paths))
        return real(module, paths, *args, **kwargs)

    monkeypatch.setattr(inference, "predict", counting)
    return calls


def test_same_inputs_return_the_stored_run_without_inference(
    checkpoint: Path, dataset: Path, runs_dir: Path, predict_calls: list[int]
) -> None:
    messages: list[str] = []

    first = evaluate.evaluate(checkpoint, dataset, device="cpu")
    assert predict_calls == [24]
    second = evaluate.evaluate(checkpoint, dataset, device="cpu", log=messages.append)

    assert predict_calls == [24]  # still one call
    assert second.path == first.path and second.path.parent == runs_dir
    assert second.run_id == first.run_id and second.metrics == first.metrics
    assert any("cached" in m for m in messages)
    # Options that do not change predictions do not change the run.
    third = evaluate.evaluate(checkpoint, dataset, device="cpu", batch_size=5, num_workers=0)
    assert (third.path, predict_calls) == (first.path, [24])


def test_changed_inputs_make_a_new_run(
    checkpoint: Path, dataset: Path, predict_calls: list[int]
) -> None:
    first = evaluate.evaluate(checkpoint, dataset, device="cpu")
    bigger = evaluate.evaluate(
        checkpoint, dataset, device="cpu", preprocessing_overrides={"image_size": 20}
    )
    (dataset / "test" / "cat" / "000.png").unlink()
    fewer = evaluate.evaluate(checkpoint, dataset, device="cpu")

    assert len({first.path, bigger.path, fewer.path}) == 3
    assert predict_calls == [24, 24, 23]
    listed = RunStore().list()
    assert {r.run_id for r in listed} == {first.run_id, bigger.run_id, fewer.run_id}
    created = [r.meta["created"] for r in listed]
    assert created == sorted(created, reverse=True)  # newest first


@pytest.mark.slow
def test_cli_twice_prints_the_same_run_and_lists_it(
    checkpoint: Path, dataset: Path, runs_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["evaluate", "--checkpoint", checkpoint, "--data", dataset, "--device", "cpu"]

    first = cli_inprocess(capsys, *args)  # this process; the second call is a fresh one
    run = assert_cli_run(first, runs_dir)
    assert re.search(r"evaluating 24/24", first.stderr)
    second = cli(*args)
    listing = cli_inprocess(capsys, "runs")  # the listing's process is not the point

    assert assert_cli_run(second, runs_dir) == run
    assert last_line(second.stdout) == last_line(first.stdout) == str(run)
    assert "cached" in second.stderr
    assert "evaluating 24/24" not in second.stderr  # no progress: no inference
    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines()]
    assert rows[0][:3] == ["run", "checkpoint", "split"]
    test_m = json.loads((run / "metrics.json").read_text())["splits"]["test"]
    assert [run.name, "model.safetensors", "test", "12", f"{test_m['accuracy']:.4f}"] in [
        r[:5] for r in rows[1:]
    ]
    assert {r[0] for r in rows[1:]} == {run.name}


# --- the files of a run -----------------------------------------------------------------------


def test_predictions_parquet_columns_and_rows(checkpoint: Path, dataset: Path) -> None:
    run = evaluate.evaluate(checkpoint, dataset, device="cpu")

    table = pq.read_table(run.path / "predictions.parquet")
    assert table.column_names == [
        "split",
        "path",
        "y_true",
        "y_pred",
        "confidence",
        "loss",
        "probs",
    ]
    assert table.num_rows == 24 == run.meta["n_predictions"]
    df = run.predictions()
    probs = run.probs()
    assert probs.shape == (24, 3) and probs.dtype == np.float32
    assert (df.split.value_counts().to_dict()) == {"train": 12, "test": 12}
    assert set(df.path[df.split == "test"]) == {
        f"{c}/{i:03d}.png" for c in ("bird", "cat", "dog") for i in range(4)
    }
    # probs are stored float16 (11 significant bits); confidence and loss stay float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=2e-3)
    np.testing.assert_array_equal(df.y_pred, probs.argmax(axis=1))
    np.testing.assert_allclose(df.confidence, probs.max(axis=1), rtol=2**-11)
    true_prob = probs[np.arange(24), df.y_true.to_numpy()]
    np.testing.assert_allclose(df.loss, -np.log(true_prob), rtol=1e-4, atol=1e-3)
    # y_true is the class folder's index in class_names.
    names = np.array(run.class_names)
    assert (names[df.y_true] == df.path.str.split("/").str[0]).all()


def test_predictions_match_the_model_run_by_hand(
    checkpoint: Path, dataset: Path, model: torch.nn.Module
) -> None:
    run = evaluate.evaluate(checkpoint, dataset, device="cpu")
    df = run.predictions()
    row = df[(df.split == "test") & (df.path == "cat/002.png")].index[0]

    from PIL import Image

    img = np.asarray(Image.open(dataset / "test" / "cat" / "002.png"), dtype=np.float32) / 255.0
    x = torch.from_numpy((img - 0.5) / 0.5)[None, None]
    with torch.inference_mode():
        expected = torch.softmax(model(x), dim=1)[0].numpy()

    np.testing.assert_allclose(run.probs()[row], expected, rtol=2**-11, atol=6e-8)  # float16


def test_metrics_json_matches_a_recomputation_and_sklearn(checkpoint: Path, dataset: Path) -> None:
    run = evaluate.evaluate(checkpoint, dataset, device="cpu")
    stored = json.loads((run.path / "metrics.json").read_text())
    df, probs = run.predictions(), run.probs()

    assert stored["classes"] == ["bird", "cat", "dog"] == run.meta["class_names"]
    assert list(stored["splits"]) == ["train", "test"]
    for split, report in stored["splits"].items():
        mask = (df.split == split).to_numpy()
        y_true, y_pred = df.y_true[mask].to_numpy(), df.y_pred[mask].to_numpy()
        again = metrics.split_report(
            y_true, y_pred, class_names=stored["classes"], probs=probs[mask], skipped=[]
        )
        assert json.loads(json.dumps(again)) == report

        p, r, f, s = precision_recall_fscore_support(
            y_true, y_pred, labels=[0, 1, 2], zero_division=0
        )
        got = report["per_class"]
        assert [c["class"] for c in got] == stored["classes"]
        np.testing.assert_allclose([c["precision"] for c in got], p, atol=1e-12)
        np.testing.assert_allclose([c["recall"] for c in got], r, atol=1e-12)
        np.testing.assert_allclose([c["f1"] for c in got], f, atol=1e-12)
        assert [c["support"] for c in got] == s.tolist() == [4, 4, 4]


# --- damage -----------------------------------------------------------------------------------


def _truncate_predictions(run_path: Path) -> None:
    parquet = run_path / "predictions.parquet"
    parquet.write_bytes(parquet.read_bytes()[: parquet.stat().st_size // 2])


def _delete_metrics(run_path: Path) -> None:
    (run_path / "metrics.json").unlink()


def _garble_meta(run_path: Path) -> None:
    (run_path / "meta.json").write_text("{")


@pytest.mark.parametrize("damage", [_truncate_predictions, _delete_metrics, _garble_meta])
def test_damaged_run_is_dropped_and_recomputed(
    damage: Callable[[Path], None], checkpoint: Path, dataset: Path, predict_calls: list[int]
) -> None:
    run = evaluate.evaluate(checkpoint, dataset, device="cpu")
    damage(run.path)
    store = RunStore()

    assert store.list() == []  # never shown
    assert store.get(run.run_id) is None
    assert not run.path.exists()  # get() removes it

    again = evaluate.evaluate(checkpoint, dataset, device="cpu")
    assert again.path == run.path and predict_calls == [24, 24]
    assert store.get(run.run_id) is not None
    assert again.metrics == run.metrics


def test_write_replaces_a_damaged_folder_of_the_same_id(checkpoint: Path, dataset: Path) -> None:
    run = evaluate.evaluate(checkpoint, dataset, device="cpu")
    table = pq.read_table(run.path / "predictions.parquet")
    _truncate_predictions(run.path)

    rewritten = RunStore().write(run.run_id, table, {"created": "now"}, run.metrics)

    assert rewritten.path == run.path
    assert rewritten.meta["n_predictions"] == 24
    assert RunStore().get(run.run_id) is not None


def test_list_skips_hidden_temporary_folders(checkpoint: Path, dataset: Path) -> None:
    run = evaluate.evaluate(checkpoint, dataset, device="cpu")
    store = RunStore()
    shutil.copytree(run.path, store.root / f".tmp-{run.run_id}-999999-abcdef12")
    shutil.copytree(run.path, store.root / f".trash-{run.run_id}-abcdef12")

    listed = store.list()

    assert [r.path for r in listed] == [run.path]
    assert listed[0].run_id == run.run_id


def test_write_cleans_temporary_folders_of_dead_writers(checkpoint: Path, dataset: Path) -> None:
    run = evaluate.evaluate(checkpoint, dataset, device="cpu")
    store = RunStore()
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = store.root / f".tmp-{run.run_id}-{dead.pid}-abcdef12"
    leftover.mkdir()
    (leftover / "predictions.parquet").write_bytes(b"half")
    shutil.rmtree(run.path)

    evaluate.evaluate(checkpoint, dataset, device="cpu")

    assert not leftover.exists()
    # .locks holds the run-id lock files (empty, kept): only the run itself is visible
    assert [p.name for p in store.root.iterdir() if p.name != ".locks"] == [run.run_id]


# --- a crash midway ---------------------------------------------------------------------------


def _lines(stream: IO[str], out: queue.Queue) -> None:
    for line in stream:
        out.put(line)
    out.put(None)


@pytest.mark.slow
def test_killed_evaluation_leaves_no_run(
    tmp_path: Path, checkpoint: Path, runs_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    big = write_dataset(tmp_path / "big", splits=None, per_class=200, size=8)
    # Batch size 1 at 96 px: a few seconds of inference, so the kill lands midway.
    args = ["evaluate", "--checkpoint", checkpoint, "--data", big, "--device", "cpu"]
    args += ["--image-size", "96", "--batch-size", "1", "--workers", "0"]
    proc = subprocess.Popen(
        cli_cmd(args),
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, lines), daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + CLI_TIMEOUT
    try:
        while not any(re.match(r"evaluating \d+/600 ", line) for line in seen):
            left = deadline - time.monotonic()
            assert left > 0, f"no progress line in {CLI_TIMEOUT}s: {seen}"
            line = lines.get(timeout=left)
            assert line is not None, f"the CLI ended before any progress: {seen}"
            seen.append(line)
        proc.kill()  # SIGKILL: no handler, no cleanup
    finally:
        proc.kill()
        proc.wait(timeout=CLI_TIMEOUT)
    out = proc.stdout.read()
    proc.stdout.close()

    assert proc.returncode == -9, "the evaluation finished before it could be killed"
    assert out.strip() == ""
    leftovers = list(runs_dir.iterdir()) if runs_dir.exists() else []
    assert all(p.name.startswith((".tmp-", ".locks")) for p in leftovers), leftovers
    assert RunStore().list() == []
    listing = cli_inprocess(capsys, "runs")  # the killed process was the point, not this one
    assert (listing.returncode, listing.stdout) == (0, "")
    assert f"no runs in {runs_dir}" in listing.stderr

    # The same evaluation afterwards completes and stores a valid run (fast: bigger batches).
    args[args.index("--batch-size") + 1] = "64"
    done = cli_inprocess(capsys, *args)

    run_path = assert_cli_run(done, runs_dir)
    run = RunStore().get(run_path.name)
    assert run is not None and run.metrics["splits"]["test"]["n"] == 600
    assert [p.name for p in runs_dir.iterdir() if not p.name.startswith(".")] == [run_path.name]


# --- bad CLI input ----------------------------------------------------------------------------


def test_cli_mean_must_match_the_channel_count(
    checkpoint: Path, dataset: Path, capsys: pytest.CaptureFixture
) -> None:
    proc = cli_inprocess(
        capsys, "evaluate", "--checkpoint", checkpoint, "--data", dataset, "--mean", "1,2"
    )
    assert_cli_error(proc, r"--mean has 2 value\(s\) but the model takes 1 channel\(s\)")


def test_cli_std_must_be_positive(
    checkpoint: Path, dataset: Path, capsys: pytest.CaptureFixture
) -> None:
    proc = cli_inprocess(
        capsys, "evaluate", "--checkpoint", checkpoint, "--data", dataset, "--std", "0"
    )
    assert_cli_error(proc, r"--std values must be positive, got \[0\.0\]")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_cli_device_cuda_without_a_gpu(
    checkpoint: Path, dataset: Path, capsys: pytest.CaptureFixture
) -> None:
    proc = cli_inprocess(
        capsys, "evaluate", "--checkpoint", checkpoint, "--data", dataset, "--device", "cuda"
    )
    assert_cli_error(
        proc, r"--device cuda was asked for but no CUDA GPU is visible; use auto or cpu"
    )


@pytest.mark.parametrize(
    ("option", "wording"),
    [
        (["--batch-size", "0"], r"--batch-size must be at least 1, got 0"),
        (["--device", "tpu"], r"unknown device 'tpu': use auto, cpu or cuda"),
        (["--image-size", "0"], r"image size must be between 1 and 4096, got 0"),
    ],
    ids=["batch-size-0", "device-tpu", "image-size-0"],
)
def test_cli_other_bad_options(
    option: list[str],
    wording: str,
    checkpoint: Path,
    dataset: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    args = ["evaluate", "--checkpoint", checkpoint, "--data", dataset, *option]
    assert_cli_error(cli_inprocess(capsys, *args), wording)


def test_cli_mean_that_is_not_numbers_is_a_usage_error(
    checkpoint: Path, dataset: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["evaluate", "--checkpoint", checkpoint, "--data", dataset, "--mean", "a,b"]
    with pytest.raises(SystemExit) as exc:  # argparse exits 2 itself
        cli_inprocess(capsys, *args)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.startswith("error: argument --mean: expected comma-separated numbers like")
    assert err.count("\n") == 1
