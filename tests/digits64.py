"""A checkpoint with no metadata, trained at 64 px on the sample digits: the probe's test case.

The sample's *good* CNN (trained at 32 px) is fine-tuned on every training image stretched to
64 px and normalised with mean 0.5 / std 0.5, then saved as a bare state_dict (.safetensors
without metadata): nothing in the file says 64 px. Deterministic (seeded, one thread) and a few
seconds on a CPU; its accuracy is ~97% at 64 px and far lower at 32, 96 or 224.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.engine import data, evaluate, probe
from core.engine.nets import DigitsCNN
from core.engine.preprocessing import Preprocessing
from core.engine.sample import CHECKPOINTS, DATASET
from core.runs import Run, RunStore

SIZE, MEAN, STD = 64, 0.5, 0.5
EPOCHS, BATCH, LR = 3, 64, 3e-3


def build(folder: Path) -> Path:
    """Return the path of the 64-px checkpoint written into ``folder``."""
    ds = data.scan(DATASET)
    prep = Preprocessing(image_size=SIZE, channels=1, mean=(MEAN,), std=(STD,))
    train = [it for it in ds.items if it.split == "train"]
    x = torch.stack([torch.from_numpy(data.decode(ds.abspath(it), prep)) for it in train])
    x = (x.float() / 255.0 - MEAN) / STD
    y = torch.tensor([it.label for it in train])
    torch.manual_seed(0)
    model = DigitsCNN(10, 1)
    model.load_state_dict(load_file(str(CHECKPOINTS["good"])))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    steps = EPOCHS * -(-len(y) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(y), generator=gen).split(BATCH):
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "digits_64px.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@dataclass(frozen=True)
class Evaluated:
    """The 64-px checkpoint evaluated on the whole sample, once per test session (read-only).

    ``probed``: nothing typed, the probe chose 64 px (its store's ``.probes`` holds the sweep);
    ``typed``: the image size typed (64), in a store of its own, inference run again there;
    ``log``: what the probed evaluation said (``evaluate(log=)``), the sweep's lines included.
    """

    probed: Run
    typed: Run
    log: list[str]

    def seed_probes(self, store: Path) -> None:
        """Copy the probed run's sweep into ``store``'s ``.probes``: an evaluation of this
        checkpoint on the sample there finds the same sweep (same key: the file's unknowns,
        the sample and the candidates) and runs no probe; its inference still runs."""
        shutil.copytree(self.probed.path.parent / ".probes", store / ".probes", dirs_exist_ok=True)


def evaluated(folder: Path, checkpoint: Path) -> Evaluated:
    """Return the shared evaluations of ``checkpoint`` kept in ``folder``, made when absent.

    The caller holds a lock across processes (tests/conftest.py): ``done.json`` is written
    last, so a folder without it is an interrupted attempt, made again from scratch."""
    done = folder / "done.json"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        said: list[str] = []
        probed = evaluate.evaluate(
            checkpoint, DATASET, device="cpu", runs_dir=folder / "probed", log=said.append
        )
        # the same sweep (same key) for the typed run: only the normalisation is still probed
        shutil.copytree(folder / "probed" / ".probes", folder / "typed" / ".probes")
        typed = evaluate.evaluate(
            checkpoint, DATASET, device="cpu", runs_dir=folder / "typed",
            preprocessing_overrides={"image_size": SIZE},
        )  # fmt: skip
        ids = {"probed": probed.run_id, "typed": typed.run_id, "log": said}
        done.write_text(json.dumps(ids))
    ids = json.loads(done.read_text())
    probed_run = RunStore(folder / "probed").get(ids["probed"])
    typed_run = RunStore(folder / "typed").get(ids["typed"])
    assert probed_run is not None and typed_run is not None, folder
    return Evaluated(probed_run, typed_run, list(ids["log"]))


def subset(folder: Path, n_train: int, n_test: int) -> Path:
    """Return a copy of a stratified sample of the digits (``n_train`` train and ``n_test``
    test images, seeded: core.engine.probe.stratified_sample) written into ``folder``."""
    ds = data.scan(DATASET)
    for split, n in (("train", n_train), ("test", n_test)):
        items = [it for it in ds.items if it.split == split]
        for i in probe.stratified_sample([it.label for it in items], n):
            target = folder / split / items[i].path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ds.abspath(items[i]), target)
    return folder
