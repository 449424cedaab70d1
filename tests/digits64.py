"""A checkpoint with no metadata, trained at 64 px on the sample digits: the probe's test case.

The sample's *good* CNN (trained at 32 px) is fine-tuned on every training image stretched to
64 px and normalised with mean 0.5 / std 0.5, then saved as a bare state_dict (.safetensors
without metadata): nothing in the file says 64 px. Deterministic (seeded, one thread) and a few
seconds on a CPU; its accuracy is ~97% at 64 px and far lower at 32, 96 or 224.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.engine import data
from core.engine.nets import DigitsCNN
from core.engine.preprocessing import Preprocessing
from core.engine.sample import CHECKPOINTS, DATASET

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
