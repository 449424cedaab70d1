"""How images become model input: a frozen dataclass, resolved from user > checkpoint > defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import ClassLensError

RESIZE_MODES = ("stretch", "center_crop")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Everything that turns an image file into the tensor the model was trained on."""

    image_size: int = 224  # side of the square input
    channels: int = 3  # 1 = grayscale models, 3 = RGB; images are converted to this
    mean: tuple[float, ...] = IMAGENET_MEAN  # one value per channel, in [0, 1] pixel units
    std: tuple[float, ...] = IMAGENET_STD
    # "stretch": resize to size x size; "center_crop": shorter side to size/0.875, then crop
    # (the torchvision ImageNet recipe).
    resize: str = "stretch"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ClassLensError(f"channels must be 1 or 3, got {self.channels}.")
        if not 1 <= self.image_size <= 4096:
            raise ClassLensError(f"image size must be between 1 and 4096, got {self.image_size}.")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) != self.channels:
                raise ClassLensError(
                    f"--{name} has {len(values)} value(s) but the model takes {self.channels} "
                    f"channel(s): pass {self.channels} comma-separated value(s)."
                )
        if any(s <= 0 for s in self.std):
            raise ClassLensError(f"--std values must be positive, got {list(self.std)}.")
        if self.resize not in RESIZE_MODES:
            raise ClassLensError(
                f"unknown resize mode {self.resize!r}: use one of {', '.join(RESIZE_MODES)}."
            )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


def default_for(channels: int) -> dict[str, Any]:
    """Return the documented defaults for a model with ``channels`` input channels."""
    if channels == 1:
        return {"image_size": 224, "channels": 1, "mean": (0.5,), "std": (0.5,)}
    return {"image_size": 224, "channels": 3, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}


def resolve(
    user: Mapping[str, Any] | None,
    checkpoint: Mapping[str, Any] | None,
    *,
    channels: int | None,
) -> Preprocessing:
    """Return the preprocessing from, in order: explicit user values, checkpoint metadata,
    defaults for the model's channel count (read from its first layer when possible)."""
    user = {k: v for k, v in (user or {}).items() if v is not None}
    meta = {k: v for k, v in (checkpoint or {}).items() if k in _FIELDS and v is not None}
    ch = user.get("channels") or channels or meta.get("channels") or 3
    base = {"resize": "stretch", **default_for(int(ch))}
    merged: dict[str, Any] = {**base, **meta, **user, "channels": int(ch)}
    # Metadata may describe another channel count than the first layer: the weights win.
    for name in ("mean", "std"):
        values = tuple(float(v) for v in merged[name])
        if len(values) != merged["channels"] and name not in user:
            values = (
                tuple(default_for(merged["channels"])[name])
                if len(values) != 1
                else values * merged["channels"]
            )
        merged[name] = values
    merged["image_size"] = int(merged["image_size"])
    return Preprocessing(**{k: merged[k] for k in _FIELDS})


_FIELDS = tuple(f.name for f in dataclasses.fields(Preprocessing))
