"""Several sessions asking for the same run at once compute it once (the run-id lock).

The test holds the run's lock itself while the contenders start, waits (bounded) until every
one of them reports that it is waiting, then lets go: exactly one must run inference and the
others must read the run it stored. Without the lock, each contender would infer.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from core import runs
from core.engine import data, evaluate, inference, models, preprocessing
from tests.conftest import REPO, assert_cli_run, cli_cmd, cli_env

THREADS = 6
WAIT_S = 60  # every wait below is bounded by this


def _run_id(checkpoint: Path, dataset: Path) -> str:
    """Return the run id ``evaluate`` will compute, from the same inputs (independently)."""
    ckpt = models.load_checkpoint(checkpoint)
    ds = data.scan(dataset)
    prep = preprocessing.resolve(None, ckpt.preprocessing, channels=ckpt.in_channels)
    names = list(ckpt.class_names or ds.class_names)
    return runs.run_id(
        checkpoint_sha256=ckpt.sha256,
        dataset_fingerprint=ds.fingerprint,
        preprocessing=prep.to_dict(),
        class_names=names,
    )


def _until(condition, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_lock_excludes_other_threads_until_released(runs_dir: Path) -> None:
    store = runs.RunStore(runs_dir)
    inside: list[str] = []
    waited = threading.Event()

    def second_holder() -> None:
        with store.lock("abc", on_wait=waited.set):
            inside.append("second")

    with store.lock("abc"):
        t = threading.Thread(target=second_holder)
        t.start()
        assert waited.wait(WAIT_S), "the second holder never reported waiting"
        time.sleep(0.2)
        assert inside == []  # still blocked while we hold it
    t.join(WAIT_S)
    assert inside == ["second"]
    assert (runs_dir / ".locks" / "abc.lock").is_file()
    with store.lock("other", on_wait=lambda: pytest.fail("an unrelated id must not wait")):
        pass


def test_threads_asking_at_once_infer_once(
    runs_dir: Path, checkpoint: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_predict = inference.predict

    def counting_predict(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(inference, "predict", counting_predict)
    rid = _run_id(checkpoint, dataset)
    logs: list[str] = []
    results: list[runs.Run] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            run = evaluate.evaluate(checkpoint, dataset, runs_dir=runs_dir, log=logs.append)
            results.append(run)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(THREADS)]
    with runs.RunStore(runs_dir).lock(rid):  # everyone must queue behind us
        for t in threads:
            t.start()
        _until(lambda: sum("waiting for another" in m for m in logs) == THREADS, "all waiting")
    for t in threads:
        t.join(WAIT_S)
    assert not errors, errors
    assert len(calls) == 1, f"inference ran {len(calls)} times"
    assert sum(m.startswith("evaluating") for m in logs) == 1
    assert sum(m.startswith("cached run") for m in logs) == THREADS - 1
    assert {r.run_id for r in results} == {rid}
    assert len(results) == THREADS
    assert [p.name for p in runs_dir.iterdir() if not p.name.startswith(".")] == [rid]


@pytest.mark.slow
def test_two_processes_asking_at_once_infer_once(
    runs_dir: Path, checkpoint: Path, dataset: Path
) -> None:
    rid = _run_id(checkpoint, dataset)
    args = ["evaluate", "--checkpoint", checkpoint, "--data", dataset, "--device", "cpu"]
    procs: list[subprocess.Popen] = []
    try:
        with runs.RunStore(runs_dir).lock(rid):
            for i in range(2):
                procs.append(
                    subprocess.Popen(
                        cli_cmd(args),
                        cwd=REPO,
                        env=cli_env(),
                        stdout=subprocess.PIPE,
                        stderr=open(runs_dir.parent / f"err{i}.txt", "w"),  # noqa: SIM115
                        text=True,
                    )
                )
            errs = [runs_dir.parent / f"err{i}.txt" for i in range(2)]
            _until(
                lambda: (
                    all("waiting for another" in e.read_text() for e in errs)
                    or any(p.poll() is not None for p in procs)
                ),
                "both processes waiting",
            )
        outs = [p.communicate(timeout=WAIT_S)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    stderr = [e.read_text() for e in errs]
    paths = [
        assert_cli_run(subprocess.CompletedProcess([], p.returncode, o, e), runs_dir)
        for p, o, e in zip(procs, outs, stderr, strict=True)
    ]
    assert all("waiting for another" in e for e in stderr), stderr
    inferred = [len(re.findall(r"^evaluating \d+ images", e, re.M)) for e in stderr]
    assert sum(inferred) == 1, stderr
    assert sum("cached run" in e for e in stderr) == 1, stderr
    assert paths[0] == paths[1] == runs_dir / rid
