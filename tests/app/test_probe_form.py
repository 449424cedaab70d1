"""New run form: preprocessing fields say where their values come from, the probe fills what
the checkpoint does not tell, typed values win, and errors name the form's fields."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from core.engine import evaluate
from core.runs import Run, RunStore
from tests import digits64
from tests.app.conftest import open_page
from ui import jobs
from ui.state import RUN_KEY


@pytest.fixture
def ckpt64(digits64_checkpoint: Path) -> Path:
    """The sample digits CNN fine-tuned at 64 px, saved without metadata (tests/digits64.py),
    trained once per session (tests/conftest.py)."""
    return digits64_checkpoint


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stratified 40 train + 40 test images of the sample digits (tests/digits64.py): the
    probe runs on all 40 train images in a few seconds and still chooses 64 px, mean 0.5 (100%
    there; 48 px 80%, 96 px 45%, 224 px 17.5%), as on the whole sample."""
    return digits64.subset(tmp_path_factory.mktemp("digits") / "digits", 40, 40)


def _form(at, checkpoint: Path, dataset: Path):
    at.sidebar.radio(key="ck_src").set_value("Server path").run()
    at.sidebar.text_input(key="ck_path").input(str(checkpoint)).run()
    at.sidebar.radio(key="ds_src").set_value("Server folder").run()
    at.sidebar.text_input(key="ds_path").input(str(dataset)).run()
    return at


def _widget(items, prefix: str):
    return next(w for w in items if w.key and w.key.startswith(prefix))


def _button(at, label: str):
    return next(b for b in at.sidebar.button if b.label == label)


def _captions(at) -> str:
    return "\n".join(c.value for c in at.sidebar.caption)


@pytest.mark.slow  # probes and evaluates 80 images of the sample in the form (~10 s)
def test_probe_fills_the_unknown_fields_and_the_run_says_probed(
    sample_runs: dict[str, Run], ckpt64: Path, digits: Path, tmp_path: Path
) -> None:
    at = _form(open_page("overview", sample_runs["good"]), ckpt64, digits)
    assert not at.exception, at.exception
    # Nothing in the file says 224 px: the form says it is a default, not a known value.
    assert _widget(at.sidebar.number_input, "size_").value == 224
    assert "image size **default, not known**" in _captions(at)
    assert "1 channel(s) read from the file" in _captions(at)

    _button(at, "Probe preprocessing").click().run()
    assert not at.exception, at.exception
    assert _widget(at.sidebar.number_input, "size_").value == 64
    assert _widget(at.sidebar.text_input, "mean_").value == "0.5"
    assert "image size **probed on train** · mean/std **probed on train**" in _captions(at)
    table = at.sidebar.dataframe[0].value
    assert {32, 48, 64, 96} <= set(table["size"])  # every candidate with its accuracy
    chosen = table[table[""] == "✓"]
    assert chosen["size"].tolist() == [64]
    assert chosen["accuracy"].iloc[0] == table["accuracy"].max()
    assert not [b for b in at.sidebar.button if b.label == "Probe preprocessing"]

    _button(at, "Evaluate").click().run()
    deadline = time.monotonic() + 240
    for key in at.session_state[jobs.FOLLOW_KEY]:  # the job's own state, no page reruns
        while (job := jobs.get(key)) is not None and not job.finished:
            assert time.monotonic() < deadline, f"{job.phase}: {job.detail}"
            time.sleep(0.2)
    at.run()
    while at.session_state[RUN_KEY] == sample_runs["good"].run_id and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    assert not at.exception, at.exception
    run = RunStore().get(at.session_state[RUN_KEY])
    assert run is not None and run.meta["checkpoint"]["name"] == ckpt64.name
    assert run.meta["preprocessing_source"]["image_size"] == "probed"
    assert run.meta["probe"]["split"] == "train"
    text = "\n".join(md.value for md in at.markdown)
    assert "input: `64px (probed on train), 1 channel(s) (read), resize stretch (default)`" in text

    # The same accuracy as the run with the size typed (in a store of its own; the sweep the
    # form made, found by the same key: only inference runs).
    shutil.copytree(RunStore().root / ".probes", tmp_path / "typed" / ".probes")
    typed = evaluate.evaluate(
        ckpt64, digits, device="cpu", runs_dir=tmp_path / "typed",
        preprocessing_overrides={"image_size": 64},
    )  # fmt: skip
    assert typed.meta["preprocessing_source"]["image_size"] == "typed"
    for split in ("train", "test"):
        assert (
            typed.metrics["splits"][split]["accuracy"] == run.metrics["splits"][split]["accuracy"]
        )


@pytest.mark.slow  # the 64-px checkpoint (session fixture) probed in the form (~5 s)
def test_typed_fields_win_and_bad_values_name_the_field(
    sample_runs: dict[str, Run], ckpt64: Path, digits: Path
) -> None:
    at = _form(open_page("overview", sample_runs["good"]), ckpt64, digits)
    _button(at, "Probe preprocessing").click().run()
    _widget(at.sidebar.number_input, "size_").set_value(96).run()
    assert not at.exception, at.exception
    assert _widget(at.sidebar.number_input, "size_").value == 96  # not reset by the probe
    assert "image size typed" in _captions(at)
    assert "mean/std **probed on train**" in _captions(at)  # chosen among the 96 px ones
    _widget(at.sidebar.text_input, "mean_").input("abc").run()
    errors = [e.value for e in at.sidebar.error]
    assert any(e.startswith("**Mean** must be comma-separated numbers") for e in errors), errors
    _button(at, "Forget typed values").click().run()
    assert _widget(at.sidebar.number_input, "size_").value == 64
    assert not at.sidebar.error
