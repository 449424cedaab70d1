"""How images become model input: a frozen dataclass, resolved from user > checkpoint > defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import ClassLensError

RESIZE_MODES = ("stretch", "center_crop")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")  # PIL's filters (timm, Hugging Face use them)
# Who resizes: PIL (torchvision's and timm's transforms on PIL images), or transformers' default
# image-processor backend (torchvision on uint8 tensors, antialiased: +-1 grey level from PIL).
BACKENDS = ("pil", "hf_torchvision")
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
    interpolation: str = "bilinear"  # the resize filter; timm and Hugging Face models ask bicubic
    # center_crop only: None is the recipe above (round(size / 0.875)); a fraction is timm's
    # and Hugging Face's rule, shorter side floor(size / crop_pct) then crop.
    crop_pct: float | None = None
    backend: str = "pil"  # a BACKENDS name

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
        if self.interpolation not in INTERPOLATIONS:
            raise ClassLensError(
                f"unknown interpolation {self.interpolation!r}: use one of "
                f"{', '.join(INTERPOLATIONS)}."
            )
        if self.backend not in BACKENDS:
            raise ClassLensError(f"unknown backend {self.backend!r}: use one of {BACKENDS}.")
        if self.crop_pct is not None and not 0.05 <= self.crop_pct <= 1.0:
            raise ClassLensError(f"crop_pct must be in [0.05, 1], got {self.crop_pct}.")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (tuples become lists); interpolation and crop_pct only when
        not the defaults, so runs stored before they existed keep their run ids."""
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        for name, default in _QUIET_DEFAULTS.items():
            if d[name] == default:
                del d[name]
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
    return resolve_with_sources(user, checkpoint, read={"channels": channels})[0]


# Where a preprocessing setting came from (meta.json "preprocessing_source"):
SOURCES = {
    "typed": "typed by the user (a form field or a CLI flag)",
    "read": "read from the file's structure (its input shape, its first layer)",
    "declared": "declared in the checkpoint's metadata",
    "probed": "measured by the preprocessing probe (core.engine.probe)",
    "default": "a documented default: nothing known, not probed",
}


def resolve_with_sources(
    user: Mapping[str, Any] | None,
    checkpoint: Mapping[str, Any] | None,
    *,
    read: Mapping[str, Any] | None = None,
    probed: Mapping[str, Any] | None = None,
) -> tuple[Preprocessing, dict[str, str]]:
    """Return (preprocessing, {field: source}) with each field from the first of: typed
    ``user`` values, ``read`` from the file's structure, ``checkpoint`` metadata (declared),
    ``probed``, defaults for the channel count. Sources are SOURCES keys.

    Channels and a fixed input size are read before metadata: the weights and the input shape
    cannot be argued with (a model whose input is fixed at 48 px does not run at 224).
    """
    layers: list[tuple[str, dict[str, Any]]] = [
        (source, {k: v for k, v in (values or {}).items() if k in _FIELDS and v is not None})
        for source, values in (("typed", user), ("read", read), ("declared", checkpoint))
    ]
    layers.append(("probed", {k: v for k, v in (probed or {}).items() if v is not None}))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in _FIELDS:
        for source, given in layers:
            if name in given:
                values[name], sources[name] = given[name], source
                break
    ch = int(values.get("channels") or 3)
    base = {**_QUIET_DEFAULTS, "resize": "stretch", **default_for(ch), "channels": ch}
    for name in _FIELDS:
        if name not in values:
            values[name], sources[name] = base[name], "default"
    values["channels"] = ch
    # Metadata may describe another channel count than the first layer: the weights win.
    for name in ("mean", "std"):
        vals = tuple(float(v) for v in values[name])
        if len(vals) != ch and sources[name] != "typed":
            if len(vals) == 1:
                vals = vals * ch
            else:
                vals, sources[name] = tuple(default_for(ch)[name]), "default"
        values[name] = vals
    values["image_size"] = int(values["image_size"])
    for name in _QUIET_DEFAULTS:  # listed, as in to_dict, only when something set them
        if sources[name] == "default":
            del sources[name]
    return Preprocessing(**{k: values[k] for k in _FIELDS}), sources


_FIELDS = tuple(f.name for f in dataclasses.fields(Preprocessing))
_QUIET_DEFAULTS: dict[str, Any] = {"interpolation": "bilinear", "crop_pct": None, "backend": "pil"}
