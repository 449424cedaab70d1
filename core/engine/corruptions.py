"""Ordinary image corruptions at integer severities (the ImageNet-C idea, Hendrycks & Dietterich,
ICLR 2019), applied to a decoded image before the run's preprocessing: what a worse camera,
a darker room or a lossy upload would have given the model.

Severity 0 is the identity (the same pixels, byte for byte); 1..5 get steadily worse
(``hflip`` has one level: 1). Every parameter is in ``SEVERITIES``, one row per corruption.
Spatial parameters (blur sigma, rotation) and the downscale factor are relative to the image,
so a 32 px digit and a 500 px photo are hurt alike once resized to the model's input.
Noise is seeded from the image's key (``split/path``) and the corruption name, not from the
severity: every severity adds the same noise pattern scaled up, so reruns are identical and
a step up in severity only ever adds noise (the accuracy curve compares severities, not draws).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from core.errors import ClassLensError

# Parameters per severity 1..5 (index 0 is severity 1), in ImageNet-C's spirit, scaled for
# small images (the sample's 32 px digits still change at severity 1).
SEVERITIES: dict[str, tuple[float, ...]] = {
    # std of additive Gaussian noise, in units of the full pixel range (255): ImageNet-C's values
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    # Gaussian blur sigma as a fraction of the image's shorter side: 32 px digits 0.8 .. 2.2 px
    # (below ~0.6 px PIL's blur barely changes them); 224 px 5.6 .. 16 px, harsher than
    # ImageNet-C's 1 .. 6 px, whose relative sizes leave small images almost untouched
    "blur": (0.025, 0.035, 0.045, 0.055, 0.07),
    # added to every pixel, in units of the pixel range, clipped
    "brightness_up": (0.1, 0.2, 0.3, 0.4, 0.5),
    # subtracted from every pixel, in units of the pixel range, clipped
    "brightness_down": (0.1, 0.2, 0.3, 0.4, 0.5),
    # distance to the image's mean grey level kept (1 = unchanged): ImageNet-C's values
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    # JPEG quality of a re-encode (lower is worse)
    "jpeg": (30, 20, 15, 10, 5),
    # side kept before scaling back up (box filter down, bilinear up)
    "downscale": (0.75, 0.6, 0.5, 0.4, 0.3),
    # degrees counter-clockwise about the centre, corners filled black
    "rotate": (5, 10, 15, 22.5, 30),
    # one level: mirrored left to right
    "hflip": (1,),
}
CORRUPTIONS: dict[str, int] = {name: len(levels) for name, levels in SEVERITIES.items()}
_LABELS = {
    "gaussian_noise": "Gaussian noise",
    "blur": "Gaussian blur",
    "brightness_up": "Brighter",
    "brightness_down": "Darker",
    "contrast": "Lower contrast",
    "jpeg": "JPEG compression",
    "downscale": "Downscale then upscale",
    "rotate": "Rotation",
    "hflip": "Horizontal flip",
}


def corruption_label(name: str) -> str:
    """Return the corruption's name in words ("Gaussian noise")."""
    check(name, 0)
    return _LABELS[name]


def parameter_text(name: str, severity: int) -> str:
    """Return what ``severity`` of ``name`` does, in words ("sigma 0.18 of the range")."""
    check(name, severity)
    if severity == 0:
        return "none (the clean image)"
    v = SEVERITIES[name][severity - 1]
    return {
        "gaussian_noise": f"noise std {v:g} of the pixel range",
        "blur": f"blur sigma {v:g} of the shorter side",
        "brightness_up": f"+{v:g} of the pixel range",
        "brightness_down": f"-{v:g} of the pixel range",
        "contrast": f"contrast x{v:g}",
        "jpeg": f"JPEG quality {v:g}",
        "downscale": f"down to {v:g} of the size and back",
        "rotate": f"rotated {v:g} degrees",
        "hflip": "mirrored",
    }[name]


def check(name: str, severity: int) -> None:
    """Raise a ClassLensError saying how to fix an unknown corruption or severity."""
    if name not in CORRUPTIONS:
        raise ClassLensError(f"unknown corruption {name!r}: use one of {', '.join(CORRUPTIONS)}.")
    top = CORRUPTIONS[name]
    if (
        isinstance(severity, bool)
        or not isinstance(severity, (int, np.integer))
        or not (0 <= severity <= top)
    ):
        raise ClassLensError(
            f"severity {severity!r} is out of range for {name}: use a whole number from 0 to "
            f"{top}" + (" (a flip has one level)." if top == 1 else ".")
        )


def noise_seed(key: str, name: str) -> int:
    """Return the noise seed for one image: a hash of its key (``split/path``) and ``name``."""
    return int.from_bytes(hashlib.sha256(f"{name}\0{key}".encode()).digest()[:8], "little")


def apply(img: Image.Image, name: str, severity: int, *, key: str) -> Image.Image:
    """Return ``img`` ("L" or "RGB", 8-bit) corrupted by ``name`` at ``severity``.

    key: the image's identity (``split/path``), seeding the noise. Severity 0 returns a copy
    with the same pixels. Raises ClassLensError for an unknown name or severity.
    """
    check(name, severity)
    if img.mode not in ("L", "RGB"):
        raise ValueError(f"corruptions take 8-bit L or RGB images, got mode {img.mode}")
    if severity == 0:
        return img.copy()
    v = SEVERITIES[name][severity - 1]
    return _APPLY[name](img, float(v), key)


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


def _image(arr: np.ndarray, mode: str) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode=mode)


def _noise(img: Image.Image, v: float, key: str) -> Image.Image:
    x = _pixels(img)
    rng = np.random.default_rng(noise_seed(key, "gaussian_noise"))
    return _image(x + rng.standard_normal(x.shape) * (v * 255.0), img.mode)


def _blur(img: Image.Image, v: float, key: str) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius=v * min(img.size)))


def _brightness(sign: float):  # noqa: ANN202 - one of _APPLY's functions
    def shift(img: Image.Image, v: float, key: str) -> Image.Image:
        return _image(_pixels(img) + sign * v * 255.0, img.mode)

    return shift


def _contrast(img: Image.Image, v: float, key: str) -> Image.Image:
    x = _pixels(img)
    mean = x.mean(axis=(0, 1), keepdims=True)
    return _image((x - mean) * v + mean, img.mode)


def _jpeg(img: Image.Image, v: float, key: str) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(v))
    with Image.open(io.BytesIO(buf.getvalue())) as out:
        out.load()
        return out.convert(img.mode)


def _downscale(img: Image.Image, v: float, key: str) -> Image.Image:
    w, h = img.size
    small = img.resize((max(1, round(w * v)), max(1, round(h * v))), Image.Resampling.BOX)
    return small.resize((w, h), Image.Resampling.BILINEAR)


def _rotate(img: Image.Image, v: float, key: str) -> Image.Image:
    return img.rotate(v, resample=Image.Resampling.BILINEAR, fillcolor=0)


def _hflip(img: Image.Image, v: float, key: str) -> Image.Image:
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


_APPLY = {
    "gaussian_noise": _noise,
    "blur": _blur,
    "brightness_up": _brightness(1.0),
    "brightness_down": _brightness(-1.0),
    "contrast": _contrast,
    "jpeg": _jpeg,
    "downscale": _downscale,
    "rotate": _rotate,
    "hflip": _hflip,
}


@dataclass(frozen=True)
class Corrupt:
    """A picklable per-image corruption for a DataLoader: ``corrupt(img, i)`` corrupts the
    i-th image of the list whose keys (``split/path``) are ``keys``."""

    name: str
    severity: int
    keys: tuple[str, ...]  # one per input path, in order: seeds the noise

    def __post_init__(self) -> None:
        check(self.name, self.severity)

    def __call__(self, img: Image.Image, i: int) -> Image.Image:
        return apply(img, self.name, self.severity, key=self.keys[i])
