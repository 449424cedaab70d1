"""The sidebar's New run form: errors as users meet them, and an evaluation that opens."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from core.engine.sample import CHECKPOINTS
from core.runs import Run
from tests.app.conftest import open_page
from ui.state import RUN_KEY


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - the attack: unpickling would create the marker
        return (Path.touch, (self.marker,))


def _server_form(at, checkpoint: Path, dataset: Path | None = None):
    at.sidebar.radio(key="ck_src").set_value("Server path").run()
    at.sidebar.text_input(key="ck_path").input(str(checkpoint)).run()
    if dataset is not None:
        at.sidebar.radio(key="ds_src").set_value("Server folder").run()
        at.sidebar.text_input(key="ds_path").input(str(dataset)).run()
    return at


def _errors(at) -> list[str]:
    return [e.value for e in at.sidebar.error] + [e.value for e in at.error]


def _until(at, done, seconds: float = 120):
    deadline = time.monotonic() + seconds  # bounded: the job runs in a background thread
    while not done(at) and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    return at


def test_missing_checkpoint_path_is_a_clear_error(
    sample_runs: dict[str, Run], tmp_path: Path
) -> None:
    at = _server_form(open_page("overview", sample_runs["good"]), tmp_path / "nope.pt")
    assert not at.exception
    assert any("checkpoint not found" in e for e in _errors(at))
    assert at.title[0].value == "Overview", "the rest of the app keeps working"


def test_malicious_pickle_is_refused_and_never_runs(
    sample_runs: dict[str, Run], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Evil(marker)}, evil)
    at = _server_form(open_page("overview", sample_runs["good"]), evil)
    assert not at.exception
    assert any("is not a safe checkpoint" in e for e in _errors(at))
    assert not marker.exists()


@pytest.mark.slow  # starts a real evaluation in a child process
def test_wrong_dataset_folder_is_reported_by_the_job(
    sample_runs: dict[str, Run], tmp_path: Path
) -> None:
    at = _server_form(open_page("overview", sample_runs["good"]), CHECKPOINTS["good"], tmp_path)
    at.sidebar.button[0].click().run()
    at = _until(at, lambda a: any("no class folders" in e for e in _errors(a)))
    assert any("no class folders" in e for e in _errors(at)), _errors(at)
    assert not at.exception


@pytest.mark.slow  # starts a real evaluation in a child process
def test_class_count_mismatch_names_both_numbers(
    sample_runs: dict[str, Run], tmp_path: Path
) -> None:
    data = tmp_path / "three"
    for c in ("a", "b", "c"):
        (data / c).mkdir(parents=True)
        src = next((CHECKPOINTS["good"].parents[1] / "digits" / "test" / "0").glob("*.png"))
        (data / c / "x.png").write_bytes(src.read_bytes())
    ckpt = tmp_path / "unnamed.safetensors"
    from safetensors.torch import save_file

    save_file(load_file(str(CHECKPOINTS["good"])), str(ckpt))  # no class names in metadata
    at = _server_form(open_page("overview", sample_runs["good"]), ckpt, data)
    at.sidebar.button[0].click().run()
    at = _until(at, lambda a: bool(_errors(a)))
    assert any("10 outputs but the dataset has 3 classes" in e for e in _errors(at)), _errors(at)


@pytest.mark.slow  # starts a real evaluation in a child process
def test_a_server_checkpoint_is_evaluated_and_opened(
    sample_runs: dict[str, Run], tmp_path: Path
) -> None:
    ckpt = tmp_path / "copy_of_good.pt"
    with safe_open(str(CHECKPOINTS["good"]), framework="pt") as f:
        meta = json.loads(f.metadata()["classlens"])
    torch.save({"state_dict": load_file(str(CHECKPOINTS["good"])), **meta}, ckpt)
    at = _server_form(open_page("overview", sample_runs["good"]), ckpt)
    assert (
        at.sidebar.number_input(key=next(k for k in _keys(at) if k.startswith("size_"))).value == 32
    )
    at.sidebar.button[0].click().run()
    at = _until(at, lambda a: a.session_state[RUN_KEY] != sample_runs["good"].run_id)
    assert not at.exception
    new = at.session_state[RUN_KEY]
    assert new != sample_runs["good"].run_id
    assert at.query_params["run"] == [new] or at.query_params["run"] == new


def _keys(at) -> list[str]:
    return [w.key for w in at.sidebar.number_input if w.key]
