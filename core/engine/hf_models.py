"""Hugging Face ``transformers`` image classifiers: a ``save_pretrained`` folder (config.json +
model.safetensors [+ preprocessor_config.json]), or a weights file with config.json beside it.

Built from the config with random init (``AutoModelForImageClassification.from_config``; never
``trust_remote_code``, nothing downloaded), then the file's weights loaded (safetensors, or
``pytorch_model.bin`` through ``torch.load(weights_only=True)``). ``id2label`` names the outputs;
the preprocessing is read from preprocessor_config.json as the image processor applies it.
transformers is imported only here and only when such a checkpoint is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.engine.model_budget import SLACK
from core.engine.timm_models import ONNX_HINT, offline
from core.errors import ClassLensError

WEIGHTS = ("model.safetensors", "pytorch_model.bin")
PREFIX = "hf:"
# PIL's resample numbers, as image processors store them.
RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def _config(folder: Path) -> dict[str, Any] | None:
    try:
        raw = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) and "model_type" in raw else None


def folder_of(path: Path) -> Path | None:
    """Return the folder of the Hugging Face model at ``path`` (a folder with config.json, or a
    weights file with config.json beside it naming a model type), else None."""
    folder = path if path.is_dir() else path.parent
    raw = _config(folder)
    if raw is None:
        return None
    if path.is_dir():
        return folder
    # A file: only when the config beside it is a classifier's (a stray config.json next to a
    # torchvision state_dict must not change how that file is read).
    names = [str(a) for a in raw.get("architectures") or []]
    return folder if any(a.endswith("ForImageClassification") for a in names) else None


def _weights_file(path: Path, folder: Path) -> Path:
    if path.is_file():
        return path
    for name in WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    sharded = any((folder / f"{n}.index.json").is_file() for n in WEIGHTS)
    why = (
        "its weights are split into shards; save with save_pretrained(folder, "
        "max_shard_size='20GB') for one file"
        if sharded
        else f"it holds no {' or '.join(WEIGHTS)}"
    )
    raise ClassLensError(f"the Hugging Face folder {folder.name} cannot be read: {why}.")


def sha256_of(path: Path) -> str:
    """Return the content sha256 of the Hugging Face model at ``path`` (folder or file)."""
    folder = folder_of(path)
    if folder is None:
        raise ClassLensError(f"{path} is not a Hugging Face model folder (no config.json).")
    return content_sha256(_weights_file(path, folder), folder)


JSON_NAMES = ("config.json", "preprocessor_config.json")
MAX_JSON_BYTES = 1 << 20


def store_upload(weights: Path, configs: dict[str, bytes]) -> Path:
    """Return the weights' path in a folder beside the stored upload ``weights`` that also holds
    the uploaded ``configs`` ({file name: bytes}: config.json, preprocessor_config.json),
    content-addressed, so the two files uploaded together are read as one model."""
    wrong = sorted(set(configs) - set(JSON_NAMES))
    if "config.json" not in configs or wrong:
        raise ClassLensError(
            f"a Hugging Face model is uploaded as its weights with config.json (and "
            f"preprocessor_config.json); {', '.join(wrong) or 'config.json is missing'} "
            "cannot be read with it. Upload those files together."
        )
    for name, data in configs.items():
        if len(data) > MAX_JSON_BYTES:
            raise ClassLensError(f"{name} is over 1 MB; a model's config is far smaller.")
        try:
            json.loads(data)
        except ValueError as exc:
            raise ClassLensError(f"{name} is not valid JSON ({exc}).") from None
    h = hashlib.sha256(weights.parent.name.encode())
    for name in sorted(configs):
        h.update(name.encode() + b"\0" + hashlib.sha256(configs[name]).digest())
    folder = weights.parent.parent / f"hf-{h.hexdigest()[:16]}"
    if not (folder / weights.name).is_file():
        tmp = folder.with_name(f".{folder.name}.{os.getpid()}.part")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copyfile(weights, tmp / weights.name)
        for name, data in configs.items():
            (tmp / name).write_bytes(data)
        try:
            os.replace(tmp, folder)
        except OSError:  # another session stored the same upload first
            shutil.rmtree(tmp, ignore_errors=True)
    return folder / weights.name


def content_sha256(weights: Path, folder: Path) -> str:
    """Return the sha256 over what decides the predictions: weights, config, preprocessor."""
    h = hashlib.sha256()
    for part in (weights, folder / "config.json", folder / "preprocessor_config.json"):
        h.update(part.name.encode() + b"\0")
        if part.is_file():
            with open(part, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


class LogitsOf(nn.Module):
    """A transformers classifier called with pixel values, returning its ``.logits``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(pixel_values=x).logits


def _staged(weights: Path, folder: Path, tmp: Path) -> Path:
    """Return a folder where transformers finds ``weights`` under its standard name: the model
    folder itself, or (a weights file named otherwise, e.g. two uploaded files) links in
    ``tmp``."""
    if weights.name in WEIGHTS:
        return folder
    standard = "model.safetensors" if _is_safetensors(weights) else "pytorch_model.bin"
    for src, name in ((weights, standard), (folder / "config.json", "config.json")):
        (tmp / name).symlink_to(src.resolve())
    return tmp


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(9)[8:9] == b"{"


def _build(folder: Path, raw: dict[str, Any], weights: Path) -> nn.Module:
    """Return the classifier built from config.json by transformers' own loader: local files
    only, no remote code, safetensors or ``torch.load(weights_only=True)``; it applies the
    library's key renamings. Missing, unexpected or mis-shaped weights are refused."""
    if raw.get("auto_map"):
        raise ClassLensError(
            "config.json asks for custom model code (auto_map); ClassLens never runs code from "
            f"a checkpoint: use an architecture that ships with transformers, {ONNX_HINT}."
        )
    try:
        with offline():
            from transformers import AutoConfig, AutoModelForImageClassification
            from transformers.models.auto.modeling_auto import (
                MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING,
            )
    except ImportError:
        raise ClassLensError(
            "this checkpoint needs Hugging Face transformers, which is not installed here: "
            f"pip install transformers, {ONNX_HINT}."
        ) from None
    import transformers

    kind = raw.get("model_type")
    try:
        with offline():
            config = AutoConfig.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=False
            )
    except (ValueError, KeyError, OSError) as exc:
        first = " ".join(str(exc).split())[:160]
        raise ClassLensError(
            f"transformers {transformers.__version__} does not know the model type {kind!r} in "
            f"config.json ({first}). Export the model to ONNX (README: Bring your own "
            "checkpoint)."
        ) from None
    if type(config) not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING:
        raise ClassLensError(
            f"config.json describes a {kind!r} model, which transformers "
            f"{transformers.__version__} has no image classifier for. Export the model to ONNX "
            "(README: Bring your own checkpoint)."
        )
    with torch.device("meta"), offline():
        shape_only = AutoModelForImageClassification.from_config(config)
    need = sum(t.numel() for t in shape_only.state_dict().values())
    have = weights.stat().st_size  # bytes: at least one per number
    if need > have + max(have // 10, SLACK):  # as core.engine.model_budget, before allocating
        raise ClassLensError(
            f"config.json asks for a model of {need:,} numbers but {weights.name} holds at most "
            f"{have:,}, so it was not built. Check that config.json belongs to these weights."
        )
    transformers.utils.logging.disable_progress_bar()  # stderr is the CLI's progress channel
    transformers.utils.logging.set_verbosity_error()  # its load report: refused below instead
    with tempfile.TemporaryDirectory() as tmp, offline():
        model, info = AutoModelForImageClassification.from_pretrained(
            str(_staged(weights, folder, Path(tmp))), config=config, local_files_only=True,
            trust_remote_code=False, weights_only=True, output_loading_info=True,
        )  # fmt: skip
    words = {"missing_keys": "missing", "unexpected_keys": "not in the model",
             "mismatched_keys": "of another shape"}  # fmt: skip
    wrong = {k: list(v)[:3] for k, v in info.items() if v and k != "error_msgs"}
    if wrong or info.get("error_msgs"):
        shown = "; ".join(f"{words.get(k, k)}: {v}" for k, v in wrong.items())
        raise ClassLensError(
            f"the weights do not fit {type(model).__name__} as config.json describes it "
            f"({shown or info['error_msgs'][0]}). Check that config.json belongs to these "
            f"weights, {ONNX_HINT}."
        )
    return model.float().eval()


def class_names(raw: dict[str, Any]) -> tuple[str, ...] | None:
    """Return id2label's names in output order, or None when they are transformers' defaults
    (``LABEL_0``...), which name nothing."""
    labels = raw.get("id2label") or {}
    try:
        names = tuple(str(labels[k]) for k in sorted(labels, key=int))
    except (TypeError, ValueError):
        return None
    if not names or all(n == f"LABEL_{i}" for i, n in enumerate(names)):
        return None
    return names


def read_preprocessing(folder: Path, raw: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Return (preprocessing fields, a sentence) from preprocessor_config.json, as the image
    processor applies it: ``size`` {height, width} is a stretch; ``shortest_edge`` with
    ``crop_pct`` (ConvNext) resizes the shorter side to floor(edge / crop_pct) and crops."""
    path = folder / "preprocessor_config.json"
    try:
        cfg = json.loads(path.read_text())
    except OSError:
        size = raw.get("image_size")  # ViT-like models take only the size they were built for
        known: dict[str, Any] = {"backend": "hf_torchvision", "resize": "stretch"}
        if isinstance(size, int):
            known["image_size"] = size
        return known, (
            "no preprocessor_config.json: image size from config.json's image_size "
            f"({size}), stretched as the torchvision backend does; mean/std from your input, "
            "the probe or defaults"
        )
    except ValueError as exc:
        raise ClassLensError(f"preprocessor_config.json is not valid JSON ({exc}).") from None
    read: dict[str, Any] = {"backend": "hf_torchvision"}  # AutoImageProcessor's default
    notes: list[str] = []
    if cfg.get("do_normalize", True) and cfg.get("image_mean") and cfg.get("image_std"):
        read["mean"] = tuple(float(v) for v in cfg["image_mean"])
        read["std"] = tuple(float(v) for v in cfg["image_std"])
    if abs(float(cfg.get("rescale_factor", 1 / 255)) * 255 - 1) > 1e-6 or not cfg.get(
        "do_rescale", True
    ):
        notes.append("its rescale_factor is not 1/255: ClassLens scales pixels by 1/255")
    interp = RESAMPLE.get(int(cfg.get("resample", 2)))
    if interp:
        read["interpolation"] = interp
    size = cfg.get("size") or {}
    if isinstance(size, int):
        size = {"height": size, "width": size}
    if "height" in size and size.get("height") == size.get("width"):
        read.update(image_size=int(size["height"]), resize="stretch")
        how = f"resized to {size['height']}x{size['width']}"
    elif "shortest_edge" in size and "crop_pct" in cfg and int(size["shortest_edge"]) < 384:
        edge, pct = int(size["shortest_edge"]), float(cfg["crop_pct"])
        read.update(image_size=edge, resize="center_crop", crop_pct=pct)
        how = f"shorter side to floor({edge} / {pct}), center crop {edge}"
    elif "shortest_edge" in size and "crop_pct" in cfg:
        edge = int(size["shortest_edge"])
        read.update(image_size=edge, resize="stretch")
        how = f"resized to {edge}x{edge}"
    else:
        how = "size not understood"
        notes.append(f"its size {size} is not one ClassLens reproduces: set the size yourself")
    if cfg.get("do_center_crop") and read.get("resize") == "stretch":
        notes.append("its extra center crop is not reproduced")
    words = (
        f"read from preprocessor_config.json ({cfg.get('image_processor_type', '?')}): {how}, "
        f"{interp or 'bilinear'} (torchvision backend, as AutoImageProcessor), mean "
        f"{list(read.get('mean', []))}, std {list(read.get('std', []))}"
    )
    return read, "; ".join([words, *notes])


def load(path: Path) -> dict[str, Any]:
    """Return the fields of a ``models.Checkpoint`` for the Hugging Face model at ``path``."""
    folder = folder_of(path)
    assert folder is not None
    raw = _config(folder) or {}
    weights = _weights_file(path, folder)
    from core.hosting import safety

    for part in (weights, folder / "config.json", folder / "preprocessor_config.json"):
        if part.exists():
            safety.check_server_path(part)  # the roots the folder itself is checked against
    try:
        model = _build(folder, raw, weights)
    except ClassLensError:
        raise
    except Exception as exc:  # the unpickler's refusal, a truncated file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ClassLensError(
            f"{weights.name} is not a safe weights file or is damaged ({first}). Save it with "
            "model.save_pretrained(folder) (safetensors)."
        ) from None
    read, words = read_preprocessing(folder, raw)
    wrapped = LogitsOf(model).eval()
    vars(wrapped)["classlens_read"] = read  # a plain attribute (core.engine.probe reads it)
    arch = PREFIX + type(model).__name__
    import transformers

    return {
        "path": weights,
        "sha256": content_sha256(weights, folder),
        "format": "huggingface",
        "module": wrapped,
        "architecture": arch,
        "class_names": class_names(raw),
        "in_channels": int(getattr(model.config, "num_channels", 3) or 3),
        "native": False,
        "facts": {
            "weights": {
                "architecture": arch,
                "built": f"transformers {transformers.__version__} from config.json (local files "
                "only, no remote code), weights from the file (safetensors / weights_only)",
            },
            "preprocessing": words,
        },
    }
