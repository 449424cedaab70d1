"""timm checkpoints: a state_dict matched against timm's registry, built with random init
(``pretrained=False``: nothing is downloaded) and loaded with the file's weights only; the
preprocessing is read from the model's ``pretrained_cfg`` as timm's own eval transform uses it
(input size, mean/std, interpolation, crop_pct).

timm is imported only here and only when a checkpoint needs it (it costs seconds). Detection
builds candidate models on the meta device, narrowed by the first-conv and classifier key names
each model's pretrained_cfg declares, and caches their key/shape signatures on disk per timm
version (building all ~1,400 models takes minutes, so only the candidates are ever built).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import json
import os
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from core import paths
from core.engine import archs
from core.engine.model_budget import check_build_size
from core.engine.preprocessing import INTERPOLATIONS
from core.errors import ClassLensError

PREFIX = "timm:"  # --arch timm:<name>
OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
StateDict = Mapping[str, torch.Tensor]
ONNX_HINT = "or export the model to ONNX (README: Bring your own checkpoint)"


def installed() -> bool:
    """Return whether timm can be imported here (without importing it)."""
    return importlib.util.find_spec("timm") is not None


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Set HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE for the block: no library call may download."""
    old = {k: os.environ.get(k) for k in OFFLINE_ENV}
    os.environ.update(dict.fromkeys(OFFLINE_ENV, "1"))
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _timm() -> Any:
    if not installed():
        raise ClassLensError(
            "this checkpoint needs timm, which is not installed here: pip install timm, "
            f"{ONNX_HINT}."
        )
    with offline():
        import timm
        import timm.data  # noqa: F401  (resolve_data_config)
    return timm


def strip(name: str) -> str:
    """Return the timm model name of ``timm:<name>`` (or of a bare name)."""
    return name[len(PREFIX) :] if name.startswith(PREFIX) else name


def has(name: str) -> bool:
    """Return whether timm (when installed) has an architecture called ``name``."""
    if not installed():
        return False
    return strip(name) in _names()


@lru_cache(maxsize=1)
def _names() -> frozenset[str]:
    return frozenset(_timm().list_models())


def check_name(name: str) -> None:
    """Raise ClassLensError unless ``timm:<name>`` names a timm architecture."""
    bare = strip(name)
    if bare in _names():
        return
    close = difflib.get_close_matches(bare, sorted(_names()), n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(PREFIX + c for c in close)}?" if close else ""
    raise ClassLensError(
        f"timm has no architecture {bare!r} (timm {_timm().__version__}). {hint} Pass "
        f"--arch timm:NAME with a name from timm.list_models(), {ONNX_HINT}."
    )


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def _cfg_keys(name: str) -> tuple[list[str], list[str]]:
    """Return (first conv module names, classifier module names) from the pretrained_cfg."""
    cfg = _timm().models.get_pretrained_cfg(name)
    if cfg is None:
        return [], []
    return _as_list(cfg.first_conv), _as_list(cfg.classifier)


def _head(name: str, sd: StateDict) -> tuple[int, int]:
    """Return (num_classes, in_chans) read from the weights for timm model ``name``."""
    firsts, classifiers = _cfg_keys(name)
    head = next((f"{c}.weight" for c in classifiers if f"{c}.weight" in sd), None)
    if head is None:
        raise KeyError(f"no classifier weights ({', '.join(classifiers) or '?'}) of {name}")
    conv = next((f"{c}.weight" for c in firsts if f"{c}.weight" in sd), None)
    chans = int(sd[conv].shape[1]) if conv is not None and sd[conv].ndim == 4 else 3
    return int(sd[head].shape[0]), chans


def _create(name: str, num_classes: int, in_chans: int) -> nn.Module:
    with offline():
        return _timm().create_model(
            name, pretrained=False, num_classes=num_classes, in_chans=in_chans
        )


# --- detection ---------------------------------------------------------------------------------


def _index_path() -> Any:
    return paths.cache_dir() / f"timm-signatures-{_timm().__version__}-v1.json"


@lru_cache(maxsize=1)
def _index() -> dict[str, dict[str, list[int]] | None]:
    try:
        return dict(json.loads(_index_path().read_text()))
    except (OSError, ValueError, TypeError):
        return {}


def _save_index() -> None:
    path = _index_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_index()))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs time


def signature(name: str) -> dict[str, list[int]] | None:
    """Return {key: shape} of timm model ``name`` with SIGNATURE_CLASSES outputs and 3 input
    channels, built on the meta device (cached on disk per timm version), or None if it cannot
    be built there."""
    index = _index()
    if name not in index:
        try:
            with archs.meta_build():
                model = _create(name, archs.SIGNATURE_CLASSES, 3)
            index[name] = {k: list(v.shape) for k, v in model.state_dict().items()}
        except Exception:  # a few models compute on tensors while being built
            index[name] = None
    return index[name]


def candidates(sd: StateDict, hint: str = "") -> list[str]:
    """Return the timm models whose pretrained_cfg names a first conv and a classifier found in
    ``sd``, the names closest to ``hint`` (a file name) first."""
    timm = _timm()
    found = []
    for name in timm.list_models():
        firsts, classifiers = _cfg_keys(name)
        if any(f"{c}.weight" in sd for c in firsts) and any(
            f"{c}.weight" in sd for c in classifiers
        ):
            found.append(name)
    ratio = {n: difflib.SequenceMatcher(None, n, hint.lower()).ratio() for n in found}
    return sorted(found, key=lambda n: (-ratio[n], n))


def _matched(sig: Mapping[str, list[int]], sd: StateDict, n_classes: int) -> int:
    """Return how many of ``sd``'s tensors have their key and shape in ``sig`` (the head's
    SIGNATURE_CLASSES read as ``n_classes``, the input channels as the file's)."""
    count = 0
    for key, t in sd.items():
        want = sig.get(key)
        if want is None:
            continue
        want = [n_classes if d == archs.SIGNATURE_CLASSES else d for d in want]
        got = list(t.shape)
        if got == want or (len(got) == 4 and got[0] == want[0] and got[2:] == want[2:]):
            count += 1  # a first convolution may take 1 channel where the signature has 3
    return count


def detect(sd: StateDict, hint: str = "") -> str:
    """Return ``timm:<name>`` of the timm model whose keys and shapes match ``sd`` exactly, or
    raise ClassLensError naming the closest candidates and how many tensors each matched."""
    scored: list[tuple[int, str, int]] = []
    try:
        for name in candidates(sd, hint):
            sig = signature(name)
            if sig is None:
                continue
            try:
                n_classes, _ = _head(name, sd)
            except KeyError:
                continue
            hits = _matched(sig, sd, n_classes)
            if hits == len(sd) == len(sig):
                return PREFIX + name
            scored.append((hits, name, len(sig)))
    finally:
        _save_index()
    best = sorted(scored, key=lambda s: -s[0])[:3]
    near = "; closest timm models: " + ", ".join(
        f"{n} ({h}/{t} tensors)" for h, n, t in best
    ) if best else ""  # fmt: skip
    raise ClassLensError(
        f"could not match the checkpoint's {len(sd)} tensors to a torchvision or timm "
        f"architecture{near}. Pass --arch timm:NAME if it is a timm model, {ONNX_HINT}."
    )


# --- building ----------------------------------------------------------------------------------


def build(name: str, sd: StateDict) -> tuple[nn.Module, dict[str, Any]]:
    """Return (module in eval mode with ``sd`` loaded strictly, facts) for ``timm:<name>``; the
    module carries ``classlens_read``, the preprocessing timm's eval transform would use."""
    bare = strip(name)
    check_name(bare)
    with archs.weights_must_fit(
        f"timm architecture {bare!r}",
        f"Pass the right --arch timm:NAME, leave --arch out to detect it, {ONNX_HINT}.",
    ):
        n_classes, chans = _head(bare, sd)
        kwargs = {"num_classes": n_classes, "in_chans": chans}
        arch = archs.Architecture(bare, "timm", lambda **kw: _create(bare, **kw), lambda _: kwargs)
        check_build_size(arch, kwargs, sd)  # before allocating what the shapes declare
        model = _create(bare, n_classes, chans)
        model.load_state_dict(sd, strict=True)
    read, words = read_preprocessing(model)
    vars(model)["classlens_read"] = read  # a plain attribute (core.engine.probe reads it)
    timm = _timm()
    facts = {
        "weights": {
            "architecture": PREFIX + bare,
            "built": f"timm {timm.__version__} create_model(pretrained=False), weights from the "
            "file",
        },
        "preprocessing": words,
    }
    return model.eval(), facts


def read_preprocessing(model: nn.Module) -> tuple[dict[str, Any], str]:
    """Return (preprocessing fields, a sentence) from timm's ``resolve_data_config`` of the model:
    what ``create_transform(**resolve_data_config({}, model=model))`` does at eval."""
    cfg = _timm().data.resolve_data_config({}, model=model)
    chans, h, w = cfg["input_size"]
    interp = str(cfg.get("interpolation") or "bilinear")
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    read: dict[str, Any] = {
        "channels": int(chans),
        "mean": tuple(float(v) for v in cfg["mean"]),
        "std": tuple(float(v) for v in cfg["std"]),
        "resize": "center_crop",
        "crop_pct": crop_pct,
    }
    notes = []
    if h == w:
        read["image_size"] = int(h)
    else:
        notes = [f"its {h}x{w} input is not square: the size is left to you or the probe"]
    if interp in INTERPOLATIONS:
        read["interpolation"] = interp
    else:
        notes.append(f"its interpolation {interp!r} is not one ClassLens has: bilinear used")
    if cfg.get("crop_mode", "center") not in (None, "center"):
        notes.append(f"its crop_mode {cfg['crop_mode']!r} is not reproduced: center crop used")
    words = (
        f"read from timm's pretrained_cfg of {_arch_of(model)}: "
        f"{h}x{w} px, {interp} resize of the shorter side to floor(size / {crop_pct}) then "
        f"center crop, mean {list(read['mean'])}, std {list(read['std'])}"
    )
    return read, "; ".join([words, *notes])


def _arch_of(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None)
    return str(cfg.get("architecture", "?")) if isinstance(cfg, dict) else "?"
