"""Preprocessing is declared, read, typed or probed, never silently guessed (core.engine.probe)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.analysis import provenance, tables
from core.engine import data, evaluate, models, probe
from core.engine.nets import DigitsCNN
from core.engine.preprocessing import resolve_with_sources
from core.engine.sample import CHECKPOINTS, DATASET
from tests import digits64
from tests.conftest import (
    assert_cli_run,
    cli_inprocess,
    last_line,
    make_model,
    save_safetensors,
    write_dataset,
)

# The tests that read the shared evaluations (digits64_runs) run in one xdist worker
# (--dist loadgroup; tests/conftest.py makes the group hold under pytest 9), so that the other
# never idles on its file lock while the first evaluates.
SHARED_RUNS = pytest.mark.xdist_group("digits64_runs")


@pytest.fixture
def ckpt64(digits64_checkpoint: Path) -> Path:
    """The sample digits CNN fine-tuned at 64 px, saved without metadata (tests/digits64.py),
    trained once per session (tests/conftest.py)."""
    return digits64_checkpoint


# --- the stratified sample --------------------------------------------------------------------


def test_stratified_sample_is_proportional_by_largest_remainder() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    picked = probe.stratified_sample(labels, 10)
    assert Counter(labels[picked].tolist()) == {0: 5, 1: 3, 2: 2}
    # 1 each first, then the 7 left shared by (49, 29, 19)/97: 3.54, 2.09, 1.37 -> 3, 2, 1
    # and the one left over goes to the largest remainder (class 0, .54)
    # n=9: 6 left over (49, 29, 19)/97: 3.03, 1.79, 1.18 -> 3, 1, 1 and the one left goes
    # to the largest remainder (class 1, .79): 4, 3, 2 -- Hamilton's method of 9 seats
    assert Counter(labels[probe.stratified_sample(labels, 9)].tolist()) == {0: 4, 1: 3, 2: 2}


def test_stratified_sample_keeps_every_class_and_is_seeded() -> None:
    labels = np.array([0] * 97 + [1] * 2 + [2])  # a rare class still gets an image
    picked = probe.stratified_sample(labels, 10)
    assert set(labels[picked]) == {0, 1, 2} and len(picked) == 10
    assert len(set(picked.tolist())) == 10 and list(picked) == sorted(picked)
    assert np.array_equal(picked, probe.stratified_sample(labels, 10))  # same seed, same sample
    others = [probe.stratified_sample(labels, 10, seed=s) for s in range(1, 6)]
    assert any(not np.array_equal(picked, o) for o in others)


def test_stratified_sample_small_cases() -> None:
    labels = np.array([3, 1, 2])
    assert probe.stratified_sample(labels, 10).tolist() == [0, 1, 2]  # fewer items than n
    many = np.repeat(np.arange(20), 5)
    picked = probe.stratified_sample(many, 8)  # fewer places than classes: one per class
    assert len(picked) == 8 and len(set(many[picked])) == 8


def test_probe_split_never_the_test_split_alone() -> None:
    assert probe.probe_split(["test", "train"]) == "train"
    assert probe.probe_split(["test", "val"]) == "val"
    assert probe.probe_split(["test"]) is None


# --- where each setting comes from -------------------------------------------------------------


def test_sources_declared_typed_read_default() -> None:
    declared = {"image_size": 32, "mean": [0.3], "std": [0.4], "resize": "stretch"}
    prep, src = resolve_with_sources(
        {"image_size": 40, "channels": None}, declared, read={"channels": 1}
    )
    assert (prep.image_size, prep.channels, prep.mean, prep.std) == (40, 1, (0.3,), (0.4,))
    assert src == {"image_size": "typed", "channels": "read", "mean": "declared",
                   "std": "declared", "resize": "declared"}  # fmt: skip
    prep, src = resolve_with_sources(None, None, read={"channels": 3, "image_size": 48})
    assert (prep.image_size, src["image_size"], src["channels"]) == (48, "read", "read")
    assert (src["mean"], src["std"], src["resize"]) == ("default", "default", "default")
    # probed fills only what nothing else gave
    prep, src = resolve_with_sources(None, {"mean": [0.5]}, probed={"image_size": 64, "mean": [0]})
    assert (prep.image_size, prep.mean, src["image_size"], src["mean"]) == (
        64, (0.5, 0.5, 0.5), "probed", "declared",
    )  # fmt: skip


def test_the_sample_checkpoints_are_declared_and_read() -> None:
    ckpt = models.load_checkpoint(CHECKPOINTS["good"])
    read = probe.read_input(ckpt.module, ckpt.in_channels)
    assert read == {"channels": 1}  # a global-pooling CNN fixes no input size
    _, src = resolve_with_sources(None, ckpt.preprocessing, read=read)
    assert src == {"image_size": "declared", "channels": "read", "mean": "declared",
                   "std": "declared", "resize": "declared"}  # fmt: skip
    mlp = models.load_checkpoint(CHECKPOINTS["overfit"])  # on flattened 32x32 pixels
    assert probe.read_input(mlp.module, mlp.in_channels) == {"channels": 1, "image_size": 32}


def test_a_pt2_with_a_fixed_48px_input_is_offered_48(tmp_path: Path) -> None:
    model = make_model(num_classes=3)
    path = tmp_path / "m48.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 48, 48),)), str(path))
    ckpt = models.load_checkpoint(path, trusted=True)
    assert probe.read_input(ckpt.module, ckpt.in_channels) == {"channels": 1, "image_size": 48}
    root = write_dataset(tmp_path / "data", splits=None)  # test only: nothing is probed
    job = evaluate.plan(path, root, trust_checkpoint=True, device="cpu")
    assert (job.prep.image_size, job.prep_sources["image_size"]) == (48, "read")
    assert job.probe is None and "only a test split" in job.prep_note


def test_only_a_test_split_is_not_probed_and_says_so(tmp_path: Path) -> None:
    ckpt = save_safetensors(make_model(), tmp_path / "bare.safetensors")  # no metadata
    root = write_dataset(tmp_path / "data", splits=None)
    said: list[str] = []
    run = evaluate.evaluate(ckpt, root, device="cpu", log=said.append)
    assert "probe" not in run.meta
    assert run.meta["preprocessing_source"]["image_size"] == "default"
    assert "only a test split" in run.meta["preprocessing_note"]
    assert any(s.startswith("warning: ") and "would flatter it" in s for s in said), said


@pytest.mark.slow  # trains/probes a model over the sample (~20 s)
def test_an_untrained_model_keeps_the_defaults(tmp_path: Path, dataset: Path) -> None:
    torch.manual_seed(0)
    ckpt = save_safetensors(DigitsCNN(3, 1).eval(), tmp_path / "untrained.safetensors")
    job = evaluate.plan(ckpt, dataset, device="cpu")
    assert job.probe is not None and job.probe["chosen"] is None
    assert "clearly above chance" in job.probe["reason"]
    assert (job.prep.image_size, job.prep_sources["image_size"]) == (224, "default")


# --- the probe on a model trained at 64 px -------------------------------------------------------


@SHARED_RUNS
@pytest.mark.slow  # the sample probed and evaluated twice at 64 px (session fixture, ~20 s)
def test_the_probe_chooses_64px_for_a_model_trained_at_64px(
    ckpt64: Path, digits64_runs: digits64.Evaluated, runs_dir: Path
) -> None:
    # evaluate(ckpt64, DATASET, device="cpu", log=said.append), nothing typed (tests/digits64.py)
    run, said = digits64_runs.probed, digits64_runs.log
    assert any(s.startswith("probing") for s in said), said  # the sweep ran there
    meta = run.meta
    assert meta["preprocessing"]["image_size"] == 64
    assert meta["preprocessing_source"] == {"image_size": "probed", "channels": "read",
                                            "mean": "probed", "std": "probed",
                                            "resize": "default"}  # fmt: skip
    record = meta["probe"]
    assert (record["split"], record["n_images"]) == ("train", 128)
    sizes = {c["image_size"] for c in record["candidates"]}
    assert {32, 48, 64, 96} <= sizes  # the native size (32) and common training sizes
    chosen = record["candidates"][record["chosen"]]
    assert chosen["image_size"] == 64
    best_other_size = max(c["accuracy"] for c in record["candidates"] if c["image_size"] != 64)
    assert chosen["accuracy"] > best_other_size
    assert any(s.startswith("probe:") and "chose 64 px" in s and "train" in s for s in said)

    # The chosen candidate's accuracy is the run's own on the same 128 train images.
    ds = data.scan(DATASET)
    train = [i for i, it in enumerate(ds.items) if it.split == "train"]
    labels = np.array([it.label for it in ds.items])
    sample = [ds.items[train[i]].path for i in probe.stratified_sample(labels[train], 128)]
    table = run.predictions()
    preds = table[table["split"] == "train"].set_index("path").loc[sample]
    assert float((preds["y_true"] == preds["y_pred"]).mean()) == pytest.approx(
        chosen["accuracy"], abs=1e-4
    )

    # The same run with the size typed (inference run again in a store of its own): the same
    # predictions, the source says "typed".
    typed = digits64_runs.typed
    assert typed.path.parent != run.path.parent
    assert typed.meta["preprocessing_source"]["image_size"] == "typed"
    assert typed.meta["preprocessing"] == meta["preprocessing"]
    for split in ("train", "test"):
        assert (
            typed.metrics["splits"][split]["accuracy"] == run.metrics["splits"][split]["accuracy"]
        )
    assert run.metrics["splits"]["test"]["accuracy"] > 0.9

    # The Overview facts say where each setting came from.
    facts = dict(tables.run_facts(meta)["Model"])
    assert facts["input"] == "64px (probed on train), 1 channel(s) (read), resize stretch (default)"
    assert facts["mean / std"] == "0.5 / 0.5 (probed on train)"

    # Evaluated again (in this test's copy of the store): the probe's record is reused and no
    # inference runs.
    shutil.copytree(run.path.parent, runs_dir)
    again: list[str] = []
    found = evaluate.evaluate(ckpt64, DATASET, device="cpu", log=again.append)
    assert found.path == runs_dir / run.run_id
    assert not any(s.startswith("probing") for s in again), again  # the sweep is cached
    assert any("cached run" in s for s in again)


@SHARED_RUNS
@pytest.mark.slow  # an evaluation of the sample at 32 px (the sweep shared, ~5 s)
def test_a_typed_wrong_size_gets_a_warning_naming_the_better_setting(
    ckpt64: Path, digits64_runs: digits64.Evaluated, runs_dir: Path
) -> None:
    digits64_runs.seed_probes(runs_dir)  # the sweep the probed run made: the same record
    run = evaluate.evaluate(
        ckpt64, DATASET, device="cpu", preprocessing_overrides={"image_size": 32}
    )
    assert run.meta["preprocessing_source"]["image_size"] == "typed"
    record = run.meta["probe"]
    # the normalisation is chosen among the 32 px candidates, unless none clears chance there
    if record["chosen"] is not None:
        assert record["candidates"][record["chosen"]]["image_size"] == 32
    # the sweep covers what the file does not tell, whatever was typed: 64 px is in it
    assert 64 in {c["image_size"] for c in record["candidates"]}
    warning = provenance.preprocessing_warning(run.meta, run.metrics)
    assert warning is not None and warning.startswith("train accuracy"), warning
    assert "with 64 px, mean 0.5, std 0.5 on 128 train images" in warning


# --- the warning -----------------------------------------------------------------------------


def _meta(size: int, sources: dict, candidates: list[dict] | None = None) -> dict:
    meta = {
        "class_names": [str(i) for i in range(10)],
        "preprocessing": {"image_size": size, "channels": 1, "mean": [0.5], "std": [0.5],
                          "resize": "stretch"},
        "preprocessing_source": sources,
    }  # fmt: skip
    if candidates is not None:
        meta["probe"] = {"split": "train", "n_images": 128, "candidates": candidates, "chosen": 0}
    return meta


def _metrics(**acc: float) -> dict:
    return {
        "classes": [str(i) for i in range(10)],
        "splits": {s: {"n": 100, "accuracy": a} for s, a in acc.items()},
    }


TYPED = {"image_size": "typed", "channels": "read", "mean": "probed", "std": "probed",
         "resize": "default"}  # fmt: skip
CANDS = [
    {"image_size": 224, "mean": [0.5], "std": [0.5], "accuracy": 0.21},
    {"image_size": 64, "mean": [0.5], "std": [0.5], "accuracy": 0.93},
    {"image_size": 32, "mean": [0.5], "std": [0.5], "accuracy": 0.55},
]


def test_warning_names_the_far_better_candidate() -> None:
    # 10 classes: chance 10%, "near chance" up to 32.5%; the train accuracy is compared
    # with the candidates (they were scored on train images).
    text = provenance.preprocessing_warning(_meta(224, TYPED, CANDS), _metrics(train=0.2, test=0.9))
    assert text is not None
    assert "train accuracy 20.0% is near chance (10%)" in text
    assert "93.0% with 64 px, mean 0.5, std 0.5 on 128 train images" in text


@pytest.mark.parametrize(
    ("meta", "metrics"),
    [
        (_meta(224, TYPED, CANDS), _metrics(train=0.34)),  # above "near chance" (32.5%)
        (_meta(224, TYPED, CANDS[:1]), _metrics(train=0.2)),  # no other candidate
        # the better one is only 19 points better: not "far"
        (_meta(224, TYPED, [{**CANDS[1], "accuracy": 0.39}]), _metrics(train=0.2)),
        (_meta(64, TYPED, CANDS[1:2]), _metrics(train=0.2)),  # the best IS the run's setting
    ],
    ids=["not-near-chance", "no-candidate", "not-far-better", "same-setting"],
)
def test_no_warning_without_both_conditions(meta: dict, metrics: dict) -> None:
    assert provenance.preprocessing_warning(meta, metrics) is None


def test_warning_on_unprobed_defaults_near_chance() -> None:
    defaults = dict.fromkeys(("image_size", "mean", "std", "resize"), "default")
    text = provenance.preprocessing_warning(_meta(224, defaults), _metrics(test=0.12))
    assert text is not None and "image size, mean, std are defaults" in text
    assert provenance.preprocessing_warning(_meta(224, defaults), _metrics(test=0.8)) is None
    declared = dict.fromkeys(defaults, "declared")  # known settings: no such warning
    assert provenance.preprocessing_warning(_meta(224, declared), _metrics(test=0.12)) is None


def test_run_facts_of_a_run_without_provenance_are_unchanged() -> None:
    meta = _meta(32, {})
    del meta["preprocessing_source"]
    facts = dict(tables.run_facts(meta)["Model"])
    assert facts["input"] == "32px, 1 channel(s), resize stretch"
    assert facts["mean / std"] == "0.5 / 0.5"
    mixed = _meta(32, {**TYPED, "mean": "typed"})
    assert dict(tables.run_facts(mixed)["Model"])["mean / std"] == "0.5 (typed) / 0.5 (probed)"


# --- the CLI -------------------------------------------------------------------------------------


@SHARED_RUNS
@pytest.mark.slow  # an evaluation of the sample at 64 px (the sweep shared, ~5 s)
def test_cli_probes_and_typed_flags_win(
    ckpt64: Path, digits64_runs: digits64.Evaluated, runs_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    digits64_runs.seed_probes(runs_dir)  # the sweep the probed run made: the same record
    proc = cli_inprocess(capsys, "evaluate", "--checkpoint", ckpt64, "--data", DATASET,
                         "--device", "cpu")  # fmt: skip
    run = assert_cli_run(proc, runs_dir)
    said = [s for s in proc.stderr.splitlines() if s.startswith("probe:")]
    assert len(said) == 1 and "chose 64 px" in said[0] and "128 train images" in said[0]
    assert "64px (probed on train)" in proc.stderr
    meta = json.loads((run / "meta.json").read_text())
    assert meta["preprocessing_source"]["image_size"] == "probed"

    typed = cli_inprocess(
        capsys, "evaluate", "--checkpoint", ckpt64, "--data", DATASET, "--device", "cpu",
        "--image-size", 64, "--mean", 0.5, "--std", 0.5,
    )  # fmt: skip
    assert not any(s.startswith("probe") for s in typed.stderr.splitlines()), typed.stderr
    assert "64px (typed)" in typed.stderr
    # the same preprocessing: the same run id, found in the store (provenance is not part of it)
    assert last_line(typed.stdout) == str(run)
    acc = json.loads((run / "metrics.json").read_text())["splits"]["test"]["accuracy"]
    assert acc > 0.9
    assert pd.read_parquet(run / "predictions.parquet").shape[0] == 1257 + 546
