"""Architecture registry: how a state_dict becomes a module, and which one it came from.

A registry dict maps a name to an :class:`Architecture`. The project's own nets and every
torchvision classification model (by its ``get_model`` name) are registered; ``num_classes``
(and the input channels, where the net allows it) are read from the weights, never guessed.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache

import torch
from torch import nn
from torch.utils._device import DeviceContext

from core import paths
from core.engine import nets
from core.engine.model_budget import check_build_size
from core.errors import ClassLensError

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Architecture:
    """One buildable architecture."""

    name: str  # the registry name users pass as --arch
    source: str  # "classlens" or "torchvision": where the builder lives
    build: Callable[..., nn.Module]  # keyword arguments come from `kwargs_from`
    # Reads the constructor's keyword arguments (num_classes, ...) from a state_dict.
    kwargs_from: Callable[[StateDict], dict]


def in_channels_of(module: nn.Module) -> int | None:
    """Return the input channels of the module's first convolution, or None."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            return int(layer.in_channels)
    # TorchScript and torch.export modules hide their layer classes; their first 4-D weight
    # is still (out_channels, in_channels, kh, kw).
    for name, param in module.named_parameters():
        if name.endswith("weight") and param.ndim == 4:
            return int(param.shape[1])
    return None


def _cnn_kwargs(sd: StateDict) -> dict:
    return {
        "num_classes": int(sd["classifier.2.weight"].shape[0]),
        "in_channels": int(sd["features.0.weight"].shape[1]),
    }


def _wide_mlp_kwargs(sd: StateDict) -> dict:
    width, n_in = sd["features.1.weight"].shape
    channels = 1 if math.isqrt(n_in) ** 2 == n_in else 3
    return {
        "num_classes": int(sd["classifier.weight"].shape[0]),
        "in_channels": channels,
        "input_size": math.isqrt(n_in // channels),
        "width": int(width),
    }


def _torchvision_builder(name: str) -> Callable[..., nn.Module]:
    def build(**kwargs: int) -> nn.Module:
        import torchvision

        with warnings.catch_warnings():  # googlenet/inception warn about their init scheme
            warnings.simplefilter("ignore")
            kw = dict(kwargs)
            if name in ("googlenet", "inception_v3"):
                kw.setdefault("aux_logits", False)
                kw.setdefault("init_weights", False)
            return torchvision.models.get_model(name, weights=None, **kw)

    return build


@cache
def _head_keys(name: str) -> tuple[str, ...]:
    """Return the state_dict keys whose shape depends on num_classes (the head)."""
    arch = registry()[name]
    a, b = (_meta_signature(arch, {"num_classes": n}) for n in (7, 11))
    if a is None or b is None:
        return ()
    return tuple(k for k in a if a[k] != b.get(k))


def _torchvision_kwargs(name: str) -> Callable[[StateDict], dict]:
    def kwargs_from(sd: StateDict) -> dict:
        heads = [k for k in _head_keys(name) if k in sd]
        if not heads:
            raise KeyError(f"no head weights of {name} in the state_dict")
        return {"num_classes": int(sd[heads[0]].shape[0])}

    return kwargs_from


@lru_cache(maxsize=1)
def registry() -> dict[str, Architecture]:
    """Return every known architecture by name (the project's nets first)."""
    import torchvision.models

    reg = dict(OWN)
    for name in torchvision.models.list_models(module=torchvision.models):
        reg[name] = Architecture(
            name, "torchvision", _torchvision_builder(name), _torchvision_kwargs(name)
        )
    return reg


# The project's own nets: looked up without importing torchvision (seconds of start-up).
OWN = {
    "digits_cnn": Architecture("digits_cnn", "classlens", nets.DigitsCNN, _cnn_kwargs),
    "digits_wide_mlp": Architecture(
        "digits_wide_mlp", "classlens", nets.DigitsWideMLP, _wide_mlp_kwargs
    ),
}


def get(name: str) -> Architecture:
    """Return the architecture called ``name``; an unknown name lists the closest ones."""
    if name in OWN:
        return OWN[name]
    reg = registry()
    if name in reg:
        return reg[name]
    close = difflib.get_close_matches(name, list(reg), n=5, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "run `python -m core archs` for all."
    raise ClassLensError(f"unknown architecture {name!r}: {hint} Pass one of these to --arch.")


def build(name: str, state_dict: StateDict) -> nn.Module:
    """Return architecture ``name`` with ``state_dict`` loaded (strict), in eval mode."""
    arch = get(name)
    with weights_must_fit(
        f"architecture {name!r}",
        "Pass the right --arch, or leave it out to detect it from the weights.",
    ):
        kwargs = arch.kwargs_from(state_dict)
        check_build_size(arch, kwargs, state_dict)  # before allocating what shapes declare
        model = arch.build(**kwargs)
        fit_first_conv(model, state_dict)
        model.load_state_dict(state_dict, strict=True)
    return model.eval()


@contextlib.contextmanager
def weights_must_fit(what: str, fix: str) -> Iterator[None]:
    """Turn a failure to build ``what`` or load the weights into it (RuntimeError, KeyError,
    TypeError, ValueError) into a ClassLensError: "the checkpoint's weights do not fit <what>
    (<the error's first 240 characters>). <fix>"; a ClassLensError passes unchanged."""
    try:
        yield
    except ClassLensError:
        raise
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        first = " ".join(str(exc).split())[:240]
        raise ClassLensError(
            f"the checkpoint's weights do not fit {what} ({first}). {fix}"
        ) from None


def fit_first_conv(model: nn.Module, state_dict: StateDict) -> None:
    """Replace the model's first convolution when the weights take 1 input channel where the
    architecture takes 3 (a grayscale edit of a torchvision net); else leave it."""
    for name, layer in model.named_modules():
        if isinstance(layer, nn.Conv2d):
            weight = state_dict.get(f"{name}.weight")
            if weight is None or weight.ndim != 4 or layer.groups != 1:
                return
            if int(weight.shape[1]) == 1 and layer.in_channels == 3:
                parent, _, child = name.rpartition(".")
                conv = nn.Conv2d(
                    1, layer.out_channels, layer.kernel_size, layer.stride,  # type: ignore[arg-type]
                    layer.padding, layer.dilation, 1, layer.bias is not None,  # type: ignore[arg-type]
                    layer.padding_mode,
                )  # fmt: skip
                setattr(model.get_submodule(parent) if parent else model, child, conv)
                if hasattr(model, "transform_input"):  # inception's re-normalisation is RGB
                    model.transform_input = False  # type: ignore[assignment]
            return


def _signature(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# What a constructor does to its fresh tensors to initialise them: in place, so on the meta
# device it changes neither a shape nor anything else, yet each call there runs torch's Python
# reference kernels (most of a meta build's time: 6.4 -> 3.6 s CPU for torchvision's index).
_INIT_OPS = frozenset(
    [getattr(torch.Tensor, n) for n in ("normal_", "uniform_", "fill_", "zero_", "erfinv_",
                                        "mul_", "add_", "clamp_", "copy_", "exponential_",
                                        "random_", "bernoulli_", "log_normal_", "cauchy_")]
    + [getattr(nn.init, n) for n in ("uniform_", "normal_", "trunc_normal_", "constant_",
                                     "ones_", "zeros_", "eye_", "dirac_", "xavier_uniform_",
                                     "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
                                     "orthogonal_", "sparse_")]
)  # fmt: skip


class _MetaBuild(DeviceContext):
    """``torch.device("meta")`` (``torch.get_default_device()`` says meta) that skips the
    initialisers above on meta tensors: for building a module only to read its shapes."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _INIT_OPS and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return super().__torch_function__(func, types, args, kwargs)


def meta_build() -> contextlib.AbstractContextManager[object]:
    """Return a context in which modules are built on the meta device, shapes only (their
    initialisers skipped); the state_dict keys and shapes equal a real build's."""
    return _MetaBuild("meta")


def _meta_signature(arch: Architecture, kwargs: dict) -> dict[str, tuple[int, ...]] | None:
    try:
        with meta_build():
            return _signature(arch.build(**kwargs))
    except Exception:  # a few builders (regnet) compute on tensors and cannot run on meta
        return None


def _keys_hash(keys: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


# num_classes used for cached signatures: no layer of any registered net has this width, so
# the head's tensors are the ones whose first dimension equals it.
SIGNATURE_CLASSES = 1009


@lru_cache(maxsize=1)
def signatures() -> dict[str, dict[str, tuple[int, ...]]]:
    """Return {architecture: {state_dict key: shape}} of every registered torchvision model
    built with SIGNATURE_CLASSES outputs, cached on disk per torchvision version.

    Building every torchvision model (even on the meta device) takes seconds to a minute, so
    it is done once per version; the project's own nets are compared directly.
    """
    import torchvision

    path = paths.cache_dir() / f"arch-signatures-tv{torchvision.__version__}-v1.json"
    try:
        raw = json.loads(path.read_text())
        return {a: {k: tuple(v) for k, v in sig.items()} for a, sig in raw.items()}
    except (OSError, ValueError, AttributeError):
        pass
    index = {}
    for arch in registry().values():
        if arch.source == "classlens":
            continue
        sig = _meta_signature(arch, {"num_classes": SIGNATURE_CLASSES})
        if sig is not None:
            index[arch.name] = sig
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(index))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs time
    return index


def signature(name: str) -> dict[str, tuple[int, ...]] | None:
    """Return ``signatures()[name]`` built alone (one model on the meta device), so a named
    --arch never builds the whole index; None where signatures() has no entry for ``name``."""
    arch = registry().get(name)
    if arch is None or arch.source == "classlens":
        return None
    return _meta_signature(arch, {"num_classes": SIGNATURE_CLASSES})


@lru_cache(maxsize=1)
def _key_index() -> dict[str, str]:
    """Return {architecture: hash of its state_dict key names} (they do not depend on
    num_classes) for the torchvision models."""
    return {name: _keys_hash(sig) for name, sig in signatures().items()}


def _candidates(keys_hash: str) -> Iterator[Architecture]:
    """Yield the project's nets, then torchvision models whose key names match."""
    yield from OWN.values()
    index = _key_index()
    reg = registry()
    yield from (reg[name] for name, h in index.items() if h == keys_hash)


def detect(state_dict: StateDict) -> str:
    """Return the registry name whose keys and shapes match ``state_dict`` exactly."""
    wanted = {k: tuple(v.shape) for k, v in state_dict.items()}
    for arch in _candidates(_keys_hash(wanted)):
        try:
            kwargs = arch.kwargs_from(state_dict)
        except (KeyError, ValueError, IndexError):
            continue
        if _meta_signature(arch, kwargs) == wanted:
            return arch.name
    raise ClassLensError(
        "could not recognise the architecture from the checkpoint's weights "
        f"({len(wanted)} tensors, first {next(iter(wanted), '-')!r}). "
        "Pass --arch NAME (`python -m core archs` lists them)."
    )
