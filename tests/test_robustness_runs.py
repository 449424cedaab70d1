"""Derived runs on the bundled sample (core/images/robustness.py): severity 0 is the clean run,
accuracy falls with noise and blur, a stored run is reused, the numbers equal a hand loop, and
the CLI prints what the stored runs hold."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_cli_error, cli_inprocess
from PIL import Image

from core.analysis import robustness as analysis
from core.engine import corruptions, inference, models
from core.engine.sample import CHECKPOINTS
from core.errors import ClassLensError
from core.images import robustness
from core.runs import Run, RunStore

pytestmark = pytest.mark.slow


@pytest.fixture
def good(sample_store: Path, tmp_path: Path) -> tuple[RunStore, Run]:
    """A private store holding a copy of the good sample run (the shared one is read-only)."""
    src = next(
        r
        for r in RunStore(sample_store).list()
        if r.meta["checkpoint"]["name"] == "good.safetensors"
    )
    shutil.copytree(src.path, tmp_path / "store" / src.run_id)
    store = RunStore(tmp_path / "store")
    run = store.get(src.run_id)
    assert run is not None
    return store, run


def _clean(run: Run, paths: list[str]):  # noqa: ANN202 - the clean rows of these paths
    df = run.predictions()
    rows = df[(df["split"] == "test") & df["path"].isin(paths)]
    return rows, run.probs()[rows.index.to_numpy()]


def test_severity_zero_reproduces_the_clean_run_for_every_corruption(good) -> None:  # noqa: ANN001
    store, run = good
    paths = robustness.sample_paths(run, "test", 120, seed=0)
    clean, clean_probs = _clean(run, paths)
    for name in corruptions.CORRUPTIONS:
        derived = robustness.corrupted_run(store, run, "test", name, 0, sample=120, seed=0)
        d = derived.predictions()
        assert d["path"].tolist() == clean["path"].tolist() == paths
        np.testing.assert_array_equal(d["y_true"], clean["y_true"])
        np.testing.assert_array_equal(d["y_pred"], clean["y_pred"], err_msg=name)
        np.testing.assert_array_equal(derived.probs(), clean_probs, err_msg=name)
        assert derived.meta["derived_from"] == run.run_id
        assert (derived.meta["corruption"], derived.meta["severity"]) == (name, 0)
        assert (derived.meta["sample"], derived.meta["seed"], derived.meta["split"]) == (
            120, 0, "test",
        )  # fmt: skip
    assert [r.run_id for r in store.list()] == [run.run_id]  # derived runs stay out of lists


def test_accuracy_never_rises_with_noise_or_blur_severity(good) -> None:  # noqa: ANN001
    store, run = good
    derived = [
        robustness.corrupted_run(store, run, "test", name, s)
        for name in ("gaussian_noise", "blur")
        for s in range(6)
    ]
    table = analysis.severity_table(analysis.from_runs(run, derived))
    clean = run.metrics["splits"]["test"]["accuracy"]
    for name in ("gaussian_noise", "blur"):
        acc = table[table["corruption"] == name].sort_values("severity")["accuracy"].to_numpy()
        assert acc[0] == pytest.approx(clean)  # the whole split at severity 0: the clean run
        assert np.all(np.diff(acc) <= 0), (name, acc.round(4).tolist())
        assert acc[-1] < acc[0] - 0.1, (name, acc.round(4).tolist())  # and it does hurt
    for r in derived:  # metrics.json of each derived run says the same accuracy
        row = table[
            (table["corruption"] == r.meta["corruption"])
            & (table["severity"] == r.meta["severity"])
        ]
        assert r.metrics["splits"]["test"]["accuracy"] == pytest.approx(
            float(row["accuracy"].iloc[0])
        )


def test_a_stored_derived_run_is_reused_and_two_sessions_compute_it_once(
    good,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    store, run = good
    calls: list[int] = []
    predict = inference.predict

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(len(args[1]))
        return predict(*args, **kwargs)

    monkeypatch.setattr(inference, "predict", spy)
    results: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                robustness.corrupted_run(store, run, "test", "jpeg", 4, sample=50, seed=2).run_id
            )
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [50] and len(set(results)) == 1 and len(results) == 2
    again = robustness.corrupted_run(store, run, "test", "jpeg", 4, sample=50, seed=2)
    assert calls == [50] and again.run_id == results[0]  # no inference the second time
    assert robustness.estimate(run, "test", 50, ["jpeg"], [4], seed=2) == (0, 0.0)


@pytest.mark.parametrize(("name", "severity"), [("gaussian_noise", 3), ("blur", 5), ("rotate", 4)])
def test_predictions_equal_a_hand_loop_over_the_corrupted_images(
    good, name: str, severity: int
) -> None:  # noqa: ANN001
    store, run = good
    derived = robustness.corrupted_run(store, run, "test", name, severity, sample=60, seed=5)
    d = derived.predictions()
    prep = run.meta["preprocessing"]
    mean, std, size = prep["mean"][0], prep["std"][0], prep["image_size"]
    folder = Path(run.meta["dataset"]["split_dirs"]["test"])
    pixels = []
    for rel in d["path"]:
        img = Image.open(folder / rel).convert("L")  # the model takes one channel
        img = corruptions.apply(img, name, severity, key=f"test/{rel}")
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        pixels.append((np.asarray(img, np.float32) / 255.0 - mean) / std)
    model = models.load_checkpoint(CHECKPOINTS["good"]).module.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(np.stack(pixels)[:, None]))
    probs = torch.softmax(logits, 1).numpy()
    np.testing.assert_array_equal(d["y_pred"].to_numpy(), probs.argmax(1))
    np.testing.assert_allclose(derived.probs(), probs, atol=1e-3)  # stored as float16
    acc = float((probs.argmax(1) == d["y_true"].to_numpy()).mean())
    assert derived.metrics["splits"]["test"]["accuracy"] == pytest.approx(acc)


def test_a_moved_checkpoint_is_a_clear_error_and_nothing_is_stored(good, tmp_path: Path) -> None:  # noqa: ANN001
    store, run = good
    meta = json.loads((run.path / "meta.json").read_text())
    meta["checkpoint"]["path"] = str(tmp_path / "moved" / "good.safetensors")
    (run.path / "meta.json").write_text(json.dumps(meta))
    moved = store.get(run.run_id)
    assert moved is not None
    with pytest.raises(
        ClassLensError, match="checkpoint not found.*moved or deleted.*evaluate it again"
    ):
        robustness.corrupted_run(store, moved, "test", "blur", 2, sample=20)
    assert store.list(derived=True) == [moved]


def test_the_cli_prints_the_stored_runs_numbers(good, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    store, run = good
    args = ("robustness", run.run_id, "--runs-dir", store.root, "--corruptions", "blur,hflip",
            "--severities", "1,5", "--sample", "40", "--seed", "1")  # fmt: skip
    proc = cli_inprocess(capsys, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["images"] == 40 and len(out["derived_runs"]) == 3  # blur 1, blur 5, hflip 1
    assert "hflip has only severity 1" not in proc.stderr  # it has severity 1 here
    for row, rid in zip(out["accuracy"], sorted(out["derived_runs"]), strict=True):
        derived = store.get(rid)
        assert derived is not None
        assert (row["corruption"], row["severity"]) == (
            derived.meta["corruption"],
            derived.meta["severity"],
        )
        assert row["accuracy"] == pytest.approx(derived.metrics["splits"]["test"]["accuracy"])
    clean_rows, _ = _clean(run, robustness.sample_paths(run, "test", 40, seed=1))
    clean = float((clean_rows["y_true"] == clean_rows["y_pred"]).mean())
    assert out["clean_accuracy"] == pytest.approx(clean)
    by_name = {r["corruption"]: r["rce"] for r in out["relative_corruption_error"]}
    blur = [r["accuracy"] for r in out["accuracy"] if r["corruption"] == "blur"]
    assert by_name["blur"] == pytest.approx(np.mean([(1 - a) - (1 - clean) for a in blur]))
    text = cli_inprocess(capsys, *args)
    assert text.returncode == 0, text.stderr
    assert text.stderr.startswith("0 images to evaluate")  # all three stored: nothing runs
    rows = {line.split()[0]: line.split()[1:] for line in text.stdout.splitlines()[2:]}
    blur_text = [float(v) for v in rows["blur"][:2]]
    assert blur_text == pytest.approx(blur, abs=5e-5)
    assert rows["hflip"][1] == "-" and float(rows["hflip"][-1]) == pytest.approx(
        by_name["hflip"], abs=5e-5
    )
    flip_only = cli_inprocess(capsys, *args[:5], "hflip", "--severities", "2,3")
    assert "note: hflip has only severity 1; skipped" in flip_only.stderr
    assert_cli_error(flip_only, "nothing to evaluate: no corruption has the severities")
    bad = cli_inprocess(
        capsys, "robustness", run.run_id, "--runs-dir", store.root, "--corruptions", "fog"
    )
    assert_cli_error(bad, "unknown corruption 'fog': use one of gaussian_noise")
    bad = cli_inprocess(
        capsys, "robustness", run.run_id, "--runs-dir", store.root, "--severities", "7"
    )
    assert_cli_error(bad, "severity 7 is out of range")
    bad = cli_inprocess(capsys, "robustness", "nope", "--runs-dir", store.root)
    assert_cli_error(bad, "no run 'nope'")


def test_the_child_process_variant_stores_the_same_runs(good, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from core.hosting.settings import HOSTED_JOB_MEMORY_MB
    from core.images import robustness_worker

    # under a hosted server's default memory cap (core.hosting.child_memory): unaffected
    monkeypatch.setenv("CLASSLENS_JOB_MEMORY_MB", str(HOSTED_JOB_MEMORY_MB))
    store, run = good
    stored = robustness.corrupted_run(store, run, "test", "contrast", 1, sample=30, seed=4)
    settings = [("contrast", 1), ("contrast", 2), ("jpeg", 3)]
    seen: list[tuple[int, int]] = []
    child = robustness_worker.corrupted_runs(
        store, run, "test", settings, sample=30, seed=4, progress=lambda d, t: seen.append((d, t))
    )
    assert [r.run_id for r in child] == [
        robustness.derived_id(run, "test", c, s, sample=30, seed=4) for c, s in settings
    ]
    assert child[0].run_id == stored.run_id
    assert seen[-1] == (60, 60)  # the two runs not stored yet, in one child
    assert (store.root / robustness_worker.STARTUP_FILE).is_file()  # the child's start-up
    assert robustness_worker.startup_s(store) > 0
    other = RunStore(tmp_path / "other")  # the same settings computed in this process
    shutil.copytree(run.path, other.root / run.run_id)
    here = robustness.corrupted_run(
        other, other.get(run.run_id), "test", "contrast", 2, sample=30, seed=4
    )
    np.testing.assert_array_equal(child[1].predictions()["y_pred"], here.predictions()["y_pred"])
    np.testing.assert_array_equal(child[1].probs(), here.probs())
    meta = json.loads((run.path / "meta.json").read_text())
    meta["checkpoint"]["sha256"] = "0" * 64  # as if the file had changed since
    (run.path / "meta.json").write_text(json.dumps(meta))
    changed = store.get(run.run_id)
    with pytest.raises(ClassLensError, match="changed since this run was evaluated"):
        robustness_worker.corrupted_run(store, changed, "test", "jpeg", 1, sample=10)


HOG = """
import json, time
print(json.dumps({"started": True}), flush=True)
held = []
for _ in range(100):  # bounded: 800 MB at most; the cap stops it long before
    held.append(b"x" * (8 << 20))
    time.sleep(0.02)
print(json.dumps({"runs": []}), flush=True)
"""


def test_a_robustness_child_past_the_memory_cap_is_one_clear_error(good, tmp_path, monkeypatch):  # noqa: ANN001
    from core.hosting import child_memory
    from core.images import robustness_worker

    store, run = good
    script = tmp_path / "hog.py"
    script.write_text(HOG)
    monkeypatch.setattr(robustness_worker, "WORKER", [sys.executable, str(script)])
    monkeypatch.setenv("CLASSLENS_JOB_MEMORY_MB", "64")
    kept = "the runs it finished before stay stored, none half-done"
    expected = child_memory.message("the robustness computation", 64, kept)
    with pytest.raises(ClassLensError) as caught:
        robustness_worker.corrupted_runs(store, run, "test", [("blur", 1)], sample=10)
    assert str(caught.value) == expected
    assert "used more than 64 MB" in expected and expected.endswith("CLASSLENS_JOB_MEMORY_MB.")
    assert store.list(derived=True) == [run]  # nothing stored
