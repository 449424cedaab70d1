"""Checkpoints: recognise the format by content, load it safely, read its metadata.

Safe formats (`.safetensors`, a state_dict saved with ``torch.save``, ONNX) never run code
from the file: state_dicts load only through ``torch.load(..., weights_only=True)``, ONNX graphs
are checked by ``core.engine.onnx_model``. Code-bearing formats (TorchScript, ``torch.export``
``.pt2``, whole pickled modules) load only when the caller passes ``trusted=True``, and never
when ``core.hosting.settings.current()`` is hosted. Formats live in a registry, tried in order by
``sniff``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.engine import archs
from core.engine.onnx_model import looks_like_onnx
from core.errors import ClassLensError
from core.hosting import settings

NESTED_KEYS = ("state_dict", "model_state_dict", "model", "weights", "net")
PREFIXES = (
    "module.",
    "_orig_mod.",
)  # DataParallel / DistributedDataParallel, torch.compile
META_ALIASES = {
    "architecture": ("architecture", "arch"),
    "class_names": ("class_names", "classes", "id2label"),
}


@dataclass(frozen=True)
class Checkpoint:
    """A loaded model and what its file says about itself."""

    path: Path
    sha256: str  # of the file's bytes: part of the run id
    format: str  # a FORMATS name
    module: nn.Module  # on CPU, in eval mode
    architecture: str  # registry name, or the format name for code-bearing formats
    class_names: tuple[str, ...] | None  # from metadata, if any
    preprocessing: dict[str, Any] = field(default_factory=dict)  # partial, from metadata
    in_channels: int | None = None  # from the first convolution, when visible
    # True when built from a state_dict: the module's layers are ours to hook (Grad-CAM).
    native: bool = True
    # What loading decided or read beyond the weights (e.g. transform_input), for the run.
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckpointFormat:
    """One checkpoint format: how to recognise it and how to load it."""

    name: str
    code_bearing: bool  # True: loading runs code from the file, so it needs trust
    sniff: Callable[[Path, bytes, list[str]], bool]  # (path, first bytes, zip names)
    # (path, arch, sidecar metadata) -> Checkpoint without its sha256
    load: Callable[[Path, str | None, dict[str, Any]], Checkpoint]
    what: str  # for messages


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- metadata ------------------------------------------------------------------------------


def _sidecar(path: Path) -> dict[str, Any]:
    for side in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if side.is_file() and side != path:
            try:
                return dict(json.loads(side.read_text()))
            except (ValueError, TypeError) as exc:
                raise ClassLensError(
                    f"the metadata file {side.name} is not valid JSON ({exc}). Fix or remove it."
                ) from None
    return {}


def _normalise_meta(raw: dict[str, Any]) -> dict[str, Any]:
    """Return {architecture, class_names, preprocessing} from the many spellings in the wild."""
    if isinstance(raw.get("classlens"), str):
        raw = {**raw, **json.loads(raw["classlens"])}
    meta: dict[str, Any] = {}
    for name, aliases in META_ALIASES.items():
        for alias in aliases:
            if raw.get(alias) is not None:
                value = raw[alias]
                meta[name] = (
                    json.loads(value)
                    if isinstance(value, str) and name != "architecture"
                    else value
                )
                break
    prep = raw.get("preprocessing")
    if isinstance(prep, str):
        prep = json.loads(prep)
    if isinstance(prep, dict):
        meta["preprocessing"] = prep
    if "class_names" in meta:
        meta["class_names"] = _class_names(meta["class_names"])
    if isinstance(raw.get("transform_input"), bool):  # torchvision inception/googlenet
        meta["transform_input"] = raw["transform_input"]
    return meta


def _class_names(value: Any) -> tuple[str, ...]:
    """Return class names in output order from a list, or from an ``id2label`` mapping
    (Hugging Face: ``{"0": "cat", "1": "dog"}``, keys the output indices)."""
    if isinstance(value, dict):
        try:
            by_index = {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError):
            by_index = {}
        if sorted(by_index) != list(range(len(value))):
            raise ClassLensError(
                f"the checkpoint's id2label has keys {list(value)[:6]}; expected the output "
                "indices 0..n-1. Fix the metadata, or remove it to use the dataset's folders."
            )
        return tuple(by_index[i] for i in range(len(by_index)))
    if isinstance(value, (list, tuple)):
        return tuple(str(c) for c in value)
    raise ClassLensError(
        f"the checkpoint's class names are a {type(value).__name__}; expected a list of names "
        "or an id2label mapping. Fix the metadata, or remove it to use the dataset's folders."
    )


# --- state_dicts -----------------------------------------------------------------------------


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


def _split_state_dict(obj: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return (state_dict, metadata beside it) from a loaded torch.save payload."""
    if _is_tensor_dict(obj):
        return obj, {}
    if isinstance(obj, dict):
        for key in NESTED_KEYS:
            if _is_tensor_dict(obj.get(key)):
                return obj[key], {k: v for k, v in obj.items() if k != key}
    raise ClassLensError(
        "the file holds no state_dict (expected a dict of tensors, or one under "
        f"{'/'.join(NESTED_KEYS)}). Save the model with torch.save(model.state_dict(), path)."
    )


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DataParallel/torch.compile prefixes, nested in any order and depth."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in PREFIXES:
            if sd and all(k.startswith(prefix) for k in sd):
                sd, stripped = {k[len(prefix) :]: v for k, v in sd.items()}, True
    return sd


def _from_state_dict(
    path: Path,
    fmt: str,
    sd: dict[str, torch.Tensor],
    meta: dict[str, Any],
    arch: str | None,
) -> Checkpoint:
    sd = _strip_prefixes(sd)
    facts: dict[str, Any] = {k: meta[k] for k in ("transform_input",) if k in meta}
    name, module, adapted = _build(sd, arch or meta.get("architecture"), path.stem, facts)
    if adapted is not None:
        facts["weights"] = {"architecture": name, "adapted": adapted}
    return Checkpoint(
        path=path,
        sha256="",
        format=fmt,
        module=module,
        architecture=name,
        class_names=meta.get("class_names"),
        preprocessing=dict(meta.get("preprocessing") or {}),
        in_channels=archs.in_channels_of(module) or _mlp_channels(module),
        facts=facts,
    )


def _build(
    sd: dict[str, torch.Tensor], name: str | None, hint: str = "", facts: dict | None = None
) -> tuple[str, nn.Module, list[str] | None]:
    """Return (architecture, module, what was adapted or None) for a state_dict: an exact
    match first, else through a wrapper's prefix or an edited head (core.engine.adapt), else
    a timm model (core.engine.timm_models, which adds what it read to ``facts``)."""
    from core.engine import adapt, timm_models

    facts = {} if facts is None else facts
    if name is not None and (
        name.startswith(timm_models.PREFIX)
        or (name not in archs.OWN and name not in archs.registry() and timm_models.has(name))
    ):  # --arch timm:NAME, or timm's train.py "arch" metadata
        return _timm_build(name, sd, facts)
    try:
        exact = name or archs.detect(sd)
        return exact, archs.build(exact, sd), None
    except ClassLensError as exc:
        try:
            found, mapped, notes = adapt.fit(sd, only=name)
        except ClassLensError as refusal:
            if name is not None:
                if timm_models.has(name):  # timm reuses torchvision's names (resnet50)
                    with contextlib.suppress(ClassLensError):
                        return _timm_build(name, sd, facts)
                raise exc from None  # the named architecture's own message
            if not timm_models.installed():
                raise
            try:
                found = timm_models.detect(sd, hint)
            except ClassLensError as timm_refusal:
                raise ClassLensError(f"{refusal} timm: {timm_refusal}") from None
            return _timm_build(found, sd, facts)
        return found, archs.build(found, mapped), notes


def _timm_build(name: str, sd: dict[str, torch.Tensor], facts: dict) -> tuple[str, nn.Module, None]:
    from core.engine import timm_models

    module, read = timm_models.build(name, sd)
    facts.update(read)
    return timm_models.PREFIX + timm_models.strip(name), module, None


def _merge(embedded: dict[str, Any], sidecar: dict[str, Any]) -> dict[str, Any]:
    prep = {**embedded.get("preprocessing", {}), **sidecar.get("preprocessing", {})}
    return {**embedded, **sidecar, "preprocessing": prep}


def _mlp_channels(module: nn.Module) -> int | None:
    first = next((m for m in module.modules() if isinstance(m, nn.Linear)), None)
    if first is None:
        return None
    return 1 if math.isqrt(first.in_features) ** 2 == first.in_features else 3


def _load_safetensors(path: Path, arch: str | None, sidecar: dict[str, Any]) -> Checkpoint:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
        sd = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    meta = _merge(_normalise_meta(dict(raw)), sidecar)
    return _from_state_dict(path, "safetensors", sd, meta, arch)


def safe_metadata_globals() -> list[Any]:
    """Return the reviewed types allowed beside tensors in ``weights_only`` loading: numpy
    scalars and dtypes (``best_acc = np.float64(...)``), ``argparse.Namespace`` (training
    scripts' ``args``), frozenset. Each only stores values; none can call anything else, and
    the unpickler still refuses every other global (tests/test_compat.py smuggles a call).
    """
    import argparse

    import numpy as np

    numeric = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
               np.uint32, np.uint64, np.float16, np.float32, np.float64]  # fmt: skip
    scalar = getattr(getattr(np, "_core", None), "multiarray", None) or np.core.multiarray  # type: ignore[attr-defined]
    return [
        scalar.scalar,
        (scalar.scalar, "numpy.core.multiarray.scalar"),  # as numpy 1.x pickles name it
        np.dtype,
        *{type(np.dtype(t)) for t in numeric},
        argparse.Namespace,
        frozenset,
    ]


@lru_cache(maxsize=1)
def _allow_safe_metadata() -> None:
    # Process-wide, once: the safe_globals context manager is not thread-safe (two dashboard
    # sessions loading at once would see each other's list vanish).
    torch.serialization.add_safe_globals(safe_metadata_globals())


def _load_torch_state_dict(path: Path, arch: str | None, sidecar: dict[str, Any]) -> Checkpoint:
    try:
        _allow_safe_metadata()
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError and friends: see _unsafe_pickle_error
        raise _unsafe_pickle_error(path, exc) from None
    sd, beside = _split_state_dict(obj)
    meta = _merge(_normalise_meta(beside), sidecar)
    return _from_state_dict(path, "state_dict", sd, meta, arch)


def _unsafe_pickle_error(path: Path, exc: Exception) -> ClassLensError:
    text = str(exc)
    if "Weights only load failed" not in text and "Unsupported global" not in text:
        return _damaged(path, exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    what = f" (it references {found.group(1)})" if found else ""
    if found and found.group(1).startswith("__main__."):
        return ClassLensError(
            f"{path.name} is a whole pickled model whose class {found.group(1)[9:]} was defined "
            "in the script that saved it (__main__), so it cannot be rebuilt here, trusted or "
            "not. In that script save the weights instead: torch.save(model.state_dict(), path) "
            "(with --arch for a torchvision model), or export it to ONNX."
        )
    return ClassLensError(
        f"{path.name} is not a safe checkpoint: it contains pickled Python objects{what} that "
        "would run code when loaded. Save a state_dict or .safetensors instead, or, only if you "
        "trust the file, pass --trust-checkpoint."
    )


def _load_pickled(path: Path, arch: str | None, sidecar: dict[str, Any]) -> Checkpoint:
    """Trusted only: a whole pickled module, one under a key beside metadata (Ultralytics'
    ``{"model": module, ...}``), or anything torch.load can unpickle."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except (AttributeError, ModuleNotFoundError) as exc:
        raise _class_not_here(path, exc) from None
    if isinstance(obj, nn.Module):
        return _code_bearing(path, "pickled_module", obj.float().eval(), sidecar)
    if isinstance(obj, dict) and not _is_tensor_dict(obj):
        key = next((k for k in NESTED_KEYS if isinstance(obj.get(k), nn.Module)), None)
        if key is not None:
            beside = {k: v for k, v in obj.items() if k != key and not isinstance(v, nn.Module)}
            meta = _merge(_normalise_meta(beside), sidecar)
            return _code_bearing(path, "pickled_module", obj[key].float().eval(), meta)
    sd, beside = _split_state_dict(obj)
    return _from_state_dict(path, "state_dict", sd, _merge(_normalise_meta(beside), sidecar), arch)


def _class_not_here(path: Path, exc: Exception) -> ClassLensError:
    """Return the error for a pickled model whose class cannot be imported here."""
    text = str(exc)
    found = re.search(r"attribute '(\w+)' on <module '[\w.]*__main__'", text)
    if found or "__main__" in text:
        name = found.group(1) if found else "its model class"
        where = f"{name} was defined in the script that saved it (__main__)"
    else:
        missing = re.search(r"No module named '([\w.]+)'", text)
        where = f"its class comes from {missing.group(1) if missing else 'a module'} "
        where += "that is not installed here"
    return ClassLensError(
        f"{path.name} is a whole pickled model, and {where}, so it cannot be rebuilt here. "
        "In that script save the weights instead: torch.save(model.state_dict(), path) "
        "(with --arch for a torchvision model), or export it to ONNX."
    )


def _load_torchscript(path: Path, arch: str | None, sidecar: dict[str, Any]) -> Checkpoint:
    module = torch.jit.load(str(path), map_location="cpu").eval()
    return _code_bearing(path, "torchscript", module, sidecar)


def _load_export(path: Path, arch: str | None, sidecar: dict[str, Any]) -> Checkpoint:
    module = torch.export.load(str(path)).module()
    shape = _export_input_shape(module)
    if shape is None or not isinstance(shape[0], int):
        return _code_bearing(path, "torch_export", module, sidecar)
    # Exported with a fixed batch size (torch.export's default): it takes only that many
    # images at once, so batches are split and padded to it.
    h, w = shape[2], shape[3]
    fixed = FixedBatch(module, shape[0], h if isinstance(h, int) and h == w else None)
    ckpt = _code_bearing(path, "torch_export", fixed, sidecar)
    facts = {"fixed_batch": f"{shape[0]} (batches split and padded to it)"}
    return dataclasses.replace(ckpt, facts={**ckpt.facts, **facts})


def _export_input_shape(module: nn.Module) -> tuple[Any, ...] | None:
    """Return the shape of a torch.export module's 4-D image input (SymInts where dynamic)."""
    for node in getattr(module, "graph", torch.fx.Graph()).nodes:
        shape = getattr(node.meta.get("val"), "shape", None) if node.op == "placeholder" else None
        if shape is not None and len(shape) == 4:
            return tuple(shape)
    return None


class FixedBatch(nn.Module):
    """A model that takes batches of exactly ``batch`` images, run on any batch size."""

    def __init__(self, inner: nn.Module, batch: int, image_size: int | None) -> None:
        super().__init__()
        self.inner, self.batch = inner, batch
        self.fixed_image_size = image_size  # the exported input's side, read by core.engine.probe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from core.engine.onnx_model import in_fixed_batches

        return in_fixed_batches(self.inner, x, self.batch)


def _code_bearing(path: Path, fmt: str, module: nn.Module, meta: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        path=path,
        sha256="",
        format=fmt,
        module=module,
        architecture=fmt,
        class_names=meta.get("class_names"),
        preprocessing=dict(meta.get("preprocessing") or {}),
        in_channels=archs.in_channels_of(module),
        native=False,
    )


def _load_onnx(path: Path, arch: str | None, sidecar: dict[str, Any]) -> Checkpoint:
    """Safe: the graph is checked (no external data, no custom operators) before it runs."""
    from core.engine import onnx_model

    raw: dict[str, Any] = {}
    module, facts = onnx_model.load(path, raw)
    meta = _merge(_normalise_meta(raw), sidecar)
    prep = dict(meta.get("preprocessing") or {})
    if facts["image_size"] and "image_size" not in prep:
        prep["image_size"] = facts["image_size"]  # a fixed input size is the only one it takes
    channels = facts["in_channels"] or prep.get("channels")
    onnx_model.count_outputs(module, channels or 3, int(prep.get("image_size") or 224))
    read = {"input_layout": "NHWC (transposed from NCHW)"} if module.channels_last_input else {}
    if facts["fixed_batch"]:
        read["fixed_batch"] = f"{facts['fixed_batch']} (batches split and padded to it)"
    if facts["external_data"]:
        read["external_data"] = facts["external_data"]  # file name -> sha256, in the run id
    return Checkpoint(
        path=path,
        sha256="",
        format="onnx",
        module=module,
        architecture=str(meta.get("architecture") or "onnx"),
        class_names=meta.get("class_names"),
        preprocessing=prep,
        in_channels=channels,
        native=False,
        facts=read,
    )


# --- sniffing ------------------------------------------------------------------------------


def _is_safetensors(path: Path, head: bytes, names: list[str]) -> bool:
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= 100_000_000 and head[8:9] == b"{"


def _zip_has(part: str) -> Callable[[Path, bytes, list[str]], bool]:
    return lambda path, head, names: any(part in n for n in names)


def _is_torch_pickle(path: Path, head: bytes, names: list[str]) -> bool:
    # zip-based torch.save (any archive with data.pkl), or the legacy raw-pickle format
    return any(n.endswith("data.pkl") for n in names) or head[:1] == b"\x80"


FORMATS: tuple[CheckpointFormat, ...] = (
    CheckpointFormat("safetensors", False, _is_safetensors, _load_safetensors, "safetensors"),
    CheckpointFormat(
        "torchscript",
        True,
        _zip_has("/code/"),
        _load_torchscript,
        "a TorchScript archive",
    ),
    CheckpointFormat(
        "torch_export",
        True,
        _zip_has("archive_format"),
        _load_export,
        "a torch.export .pt2 archive",
    ),
    CheckpointFormat("state_dict", False, _is_torch_pickle, _load_torch_state_dict, "torch.save"),
    CheckpointFormat(
        "onnx", False, lambda p, head, names: looks_like_onnx(head), _load_onnx, "an ONNX model"
    ),
)


def _damaged(path: Path, exc: BaseException) -> ClassLensError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return ClassLensError(
        f"{path.name} is damaged or truncated and cannot be read ({first}). "
        "Copy or export the checkpoint again."
    )


def sniff(path: Path) -> CheckpointFormat:
    """Return the format of the file at ``path``, judged by its content, not its name."""
    with open(path, "rb") as f:
        head = f.read(64)
    names: list[str] = []
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise _damaged(path, exc) from None
    for fmt in FORMATS:
        if fmt.sniff(path, head, names):
            return fmt
    raise ClassLensError(
        f"{path.name} is not a checkpoint ClassLens can read: expected .safetensors, a "
        "torch.save state_dict (.pt/.pth/.ckpt), an ONNX model, TorchScript or a torch.export "
        ".pt2 archive (judged by the file's content, not its extension)."
    )


def content_sha256(ckpt: Checkpoint) -> str:
    """Return the sha256 that identifies what the checkpoint computes: the file's, or with
    external data (ONNX) the hash of the file's and every data file's."""
    extra = ckpt.facts.get("external_data")
    if not extra:
        return ckpt.sha256
    text = ckpt.sha256 + "".join(f":{name}={h}" for name, h in sorted(extra.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def load_checkpoint(
    path: str | Path, *, arch: str | None = None, trusted: bool = False
) -> Checkpoint:
    """Return the model in the checkpoint at ``path``, loaded without running its code unless
    ``trusted``; ``arch`` overrides the architecture named or detected."""
    path = Path(path)
    from core.engine import hf_models

    if hf_models.folder_of(path) is not None:  # safe: built from config.json, weights only
        try:
            return Checkpoint(**hf_models.load(path))
        except ClassLensError:
            raise
        except Exception as exc:
            raise _damaged(path, exc) from None
    if path.is_dir():
        raise ClassLensError(
            f"{path} is a folder; a Hugging Face model folder needs its config.json "
            "(model.save_pretrained(folder)). Otherwise pass the checkpoint file itself."
        )
    if not path.is_file():
        raise ClassLensError(
            f"checkpoint not found: {path}. Check the path passed to --checkpoint."
        )
    if path.stat().st_size == 0:
        raise ClassLensError(
            f"{path.name} is empty (0 bytes). Copy or export the checkpoint again."
        )
    fmt = sniff(path)
    if not settings.current().allow_code_checkpoints:
        # Hosted: whatever the caller (or a UI checkbox) asked, no file's code ever runs.
        if fmt.code_bearing:
            raise ClassLensError(
                f"{path.name} is {fmt.what}, which runs code from the file when loaded; this "
                "hosted ClassLens never loads such files, trusted or not. Export the weights "
                "as .safetensors, a torch.save state_dict or an ONNX model instead."
            )
        trusted = False
    if fmt.code_bearing and not trusted:
        raise ClassLensError(
            f"{path.name} is {fmt.what}, which runs code from the file when loaded. Refusing "
            "to load it; pass --trust-checkpoint only if you trust where it came from."
        )
    if arch is not None:  # an unknown --arch fails before any loading
        from core.engine import timm_models

        if arch.startswith(timm_models.PREFIX):
            timm_models.check_name(arch)
        else:
            try:
                archs.get(arch)
            except ClassLensError:
                if not timm_models.has(arch):  # a bare timm name (resnet10t) is fine too
                    raise
    load = _load_pickled if trusted and fmt.name == "state_dict" else fmt.load
    sidecar = _normalise_meta(_sidecar(path))
    try:
        ckpt = load(path, arch, sidecar)
    except ClassLensError:
        raise
    except Exception as exc:  # truncated zip/safetensors header, bad storage offsets...
        raise _damaged(path, exc) from None
    return dataclasses.replace(ckpt, sha256=sha256_file(path))
