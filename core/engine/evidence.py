"""Settings the weights do not hold, decided from evidence and recorded as the run's facts.

torchvision's inception_v3 and googlenet take ``transform_input``: True in its pretrained
weights (they re-normalise ImageNet-normalised input to [-1, 1] inside ``forward``), False when
built without weights. A fine-tune of the pretrained weights keeps True, but the flag is not in
the state_dict. The first batch-norm's running statistics remember the inputs it was trained
on: the first convolution is run on a few dataset images both ways, and the way whose output
statistics match the stored ones wins (the two differ ~5x in variance).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.engine.data import decode
from core.engine.preprocessing import Preprocessing

PROBE_IMAGES = 16  # dataset images decoded to judge (spread over the dataset)
DECISIVE = 2.0  # the losing hypothesis must mismatch this many times more than the winner


def first_conv_bn(module: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d] | None:
    """Return the (conv, bn) pair of an inception_v3/googlenet stem, else None."""
    stem = getattr(module, "Conv2d_1a_3x3", None) or getattr(module, "conv1", None)
    conv, bn = getattr(stem, "conv", None), getattr(stem, "bn", None)
    if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and conv.in_channels == 3:
        return conv, bn
    return None


def torchvision_transform_input(x: torch.Tensor) -> torch.Tensor:
    """Return torchvision's ``_transform_input`` of ImageNet-normalised ``x`` (B, 3, H, W)."""
    ch0 = x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
    ch1 = x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
    ch2 = x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
    return torch.cat((ch0, ch1, ch2), 1)


def _mismatch(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> float:
    """Return how far the conv's output statistics on ``x`` are from the bn's running ones
    (mean squared log variance ratio plus the squared standardised mean difference)."""
    with torch.inference_mode():
        y = conv(x).double()
    mean, var = y.mean((0, 2, 3)), y.var((0, 2, 3))
    # inception/googlenet batch-norms track running stats (torchvision builds them so)
    run_mean, run_var = bn.running_mean.double(), bn.running_var.double()  # type: ignore[union-attr]
    eps = float(bn.eps)
    log_ratio = torch.log((var + eps) / (run_var + eps))
    shift = (mean - run_mean) ** 2 / (run_var + eps)
    return float((log_ratio**2).mean() + shift.clamp(max=100).mean())


def _sample(paths: Sequence[Path], n: int) -> list[Path]:
    if len(paths) <= n:
        return list(paths)
    return [paths[i] for i in np.linspace(0, len(paths) - 1, n).round().astype(int)]


def _inputs(paths: Sequence[Path], prep: Preprocessing) -> torch.Tensor | None:
    arrays = []
    for path in _sample(paths, PROBE_IMAGES):
        try:
            arrays.append(decode(path, prep))
        except (OSError, ValueError):
            continue  # listed as unreadable by inference; no evidence here
    if not arrays:
        return None
    x = torch.from_numpy(np.stack(arrays)).float().div_(255.0)
    mean = torch.tensor(prep.mean).view(1, -1, 1, 1)
    std = torch.tensor(prep.std).view(1, -1, 1, 1)
    return (x - mean) / std


def decide_transform_input(
    module: nn.Module,
    prep: Preprocessing,
    paths: Sequence[Path],
    *,
    declared: bool | None = None,
) -> tuple[nn.Module, dict[str, Any]] | None:
    """Return (module with ``transform_input`` set, the fact recorded) for an inception_v3 or
    googlenet module, else None. ``declared`` (the checkpoint's metadata) wins over evidence.

    The module returned is a shallow copy: the given one (maybe shared by a cache) is unchanged.
    """
    if not isinstance(getattr(module, "transform_input", None), bool):
        return None
    pair = first_conv_bn(module)
    if declared is not None:
        value, why = bool(declared), "from the checkpoint's metadata"
    elif pair is None or prep.channels != 3:
        value, why = False, "no 3-channel first batch-norm to judge by: the default, False"
    else:
        x = _inputs(paths, prep)
        if x is None:
            value, why = False, "no readable image to judge by: the default, False"
        else:
            off = _mismatch(*pair, x)
            on = _mismatch(*pair, torchvision_transform_input(x))
            value = on < off
            worse, better = max(on, off), min(on, off)
            decisive = worse > DECISIVE * better and not math.isclose(worse, better)
            why = (
                f"the first batch-norm's running statistics match the first convolution's "
                f"output on {len(x)} dataset images {'with' if value else 'without'} it "
                f"(mismatch {better:.3g} vs {worse:.3g})"
            )
            if not decisive:
                value = False
                why = (
                    f"undecided by the first batch-norm's statistics on {len(x)} images "
                    f"(mismatch {off:.3g} without vs {on:.3g} with): the default, False"
                )
    if value == module.transform_input:
        out = module
    else:
        out = copy.copy(module)  # shares the layers; only the flag differs
        out.transform_input = value  # type: ignore[assignment]
    return out, {"value": value, "evidence": why}
