"""State_dicts saved through wrappers and edits, mapped onto a registry architecture.

What analysts' files look like beside a plain ``model.state_dict()``: a key prefix from a
wrapper (Lightning's ``model.``, ``backbone.``, ``module.``/``_orig_mod.`` in any order and
depth), a replaced head (``fc = Sequential(Dropout, Linear)``, a separate ``head.`` Linear), a
1-channel first convolution, inception/googlenet auxiliary heads. An architecture fits when
every tensor of its trunk (all but the head) is found under one prefix with its shape (the
first convolution may take 1 channel), and what is left is one Linear-like layer (weight, and
bias or none) shaped like its head, plus auxiliary heads, which evaluation never runs. Nothing
is guessed: a head of two layers (its activation is not in the weights) is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from core.engine import archs, nets
from core.errors import ClassLensError

StateDict = Mapping[str, torch.Tensor]
# Sub-modules evaluation never runs (eval-mode forward ignores them), per architecture.
AUX_HEADS = {"inception_v3": ("AuxLogits.",), "googlenet": ("aux1.", "aux2.")}
# Wrapper state that is not the model (a weighted loss registers its class weights).
NOT_MODEL = ("criterion.", "loss.", "loss_fn.", "loss_func.", "train_loss.", "val_loss.")
ANCHORS = 3  # trunk keys used to find the prefix


@dataclass
class Fit:
    """How well one architecture explains a state_dict."""

    arch: str
    prefix: str  # stripped from the trunk's keys
    matched: int  # trunk tensors found with their shapes
    total: int  # trunk tensors of the architecture
    state_dict: dict[str, torch.Tensor] | None = None  # the architecture's own keys, when it fits
    notes: list[str] = field(default_factory=list)  # what was adapted, for the run's facts
    why_not: str = ""  # when the trunk matched but the rest is not a head


def _own_signatures() -> dict[str, dict[str, tuple[int, ...]]]:
    model = nets.DigitsCNN(num_classes=archs.SIGNATURE_CLASSES, in_channels=3)
    return {"digits_cnn": {k: tuple(v.shape) for k, v in model.state_dict().items()}}


def _prefixes(sd: StateDict, trunk: list[str]) -> set[str]:
    found = set()
    for anchor in [k for k in trunk if not k.endswith("num_batches_tracked")][:ANCHORS]:
        for key in sd:
            if key == anchor:
                found.add("")
            elif key.endswith("." + anchor):
                found.add(key[: -len(anchor)])
    return found


def _same(shape: tuple[int, ...], want: tuple[int, ...], first_conv: bool) -> bool:
    if shape == want:
        return True
    # a grayscale edit of the first convolution: (out, 1, kh, kw) where the net has 3
    return first_conv and len(want) == 4 and shape == (want[0], 1, *want[2:]) and want[1] == 3


def _trunk_match(
    sd: StateDict, sig: Mapping[str, tuple[int, ...]], trunk: list[str], prefix: str
) -> tuple[int, dict[str, torch.Tensor], bool]:
    """Return (tensors matched, {arch key: tensor}, whether the first conv is 1-channel)."""
    first_conv = next((k for k in trunk if len(sig[k]) == 4), None)
    out: dict[str, torch.Tensor] = {}
    gray = False
    for key in trunk:
        t = sd.get(prefix + key)
        if t is None and key.endswith("num_batches_tracked"):
            t = torch.tensor(0)  # only used when training with momentum=None
        if t is None or not _same(tuple(t.shape), sig[key], key == first_conv):
            continue
        gray |= tuple(t.shape) != sig[key]
        out[key] = t
    return len(out), out, gray


def _head(
    rest: dict[str, torch.Tensor], sig: Mapping[str, tuple[int, ...]], heads: list[str]
) -> tuple[dict[str, torch.Tensor] | None, str, str]:
    """Return ({arch head key: tensor}, where the head was, why not) from the leftover tensors."""
    weights = [k for k in heads if k.endswith("weight")]
    if len(weights) != 1 or len(heads) > 2:
        return None, "", "its head has more than one layer"
    w_key = weights[0]
    b_key = next((k for k in heads if k.endswith("bias")), None)
    parents = sorted({k.rpartition(".")[0] for k in rest})
    if not rest:
        return None, "", "the weights hold no classification head (a headless backbone)"
    if len(parents) != 1:
        shown = ", ".join(parents[:4])
        why = f"the head spans several layers ({shown}) whose activations are not in the weights"
        return None, "", why
    parent = parents[0]
    w, b = rest.get(f"{parent}.weight"), rest.get(f"{parent}.bias")
    if w is None or len(rest) != (1 if b is None else 2):
        return None, "", f"the head {parent} is not one Linear layer"
    want = sig[w_key]
    if tuple(w.shape[1:]) != tuple(want[1:]) or (b is not None and b.shape != (w.shape[0],)):
        return None, "", f"the head {parent} has shape {tuple(w.shape)}, expected (n, {want[1:]})"
    head = {w_key: w}
    if b_key is not None:
        head[b_key] = b if b is not None else torch.zeros(w.shape[0], dtype=w.dtype)
        if b is None:
            parent += " (no bias: a zero bias is the same layer)"
    elif b is not None:
        return None, "", f"the head {parent} has a bias the architecture's head has not"
    return head, parent, ""


def _fit(arch: str, sig: Mapping[str, tuple[int, ...]], sd: StateDict) -> Fit | None:
    heads = [k for k, shape in sig.items() if shape and shape[0] == archs.SIGNATURE_CLASSES]
    trunk = [k for k in sig if k not in heads]
    best: Fit | None = None
    for prefix in _prefixes(sd, trunk):
        matched, mapped, gray = _trunk_match(sd, sig, trunk, prefix)
        if best is None or matched > best.matched:
            best = Fit(arch, prefix, matched, len(trunk))
            if matched == len(trunk):
                best.state_dict, best.notes = mapped, []
                if gray:
                    best.notes.append("first convolution takes 1 channel")
                used = {prefix + k for k in trunk}
                aux = tuple(prefix + a for a in AUX_HEADS.get(arch, ()))
                extra = tuple(prefix + a for a in NOT_MODEL) + NOT_MODEL
                rest = {
                    k: v
                    for k, v in sd.items()
                    if k not in used and not k.startswith(aux) and not k.startswith(extra)
                }
                if any(k.startswith(aux) for k in sd):
                    best.notes.append("auxiliary head left out (evaluation never runs it)")
                if any(k.startswith(extra) and k not in used for k in sd):
                    best.notes.append("loss-function tensors left out")
                head, parent, why = _head(rest, sig, heads)
                if head is None:
                    best.state_dict, best.why_not = None, why
                else:
                    best.state_dict.update(head)
                    if prefix:
                        best.notes.insert(0, f"key prefix {prefix!r} removed")
                    own_head = heads[0].rpartition(".")[0]
                    if parent.removeprefix(prefix) != own_head:
                        best.notes.append(f"head {parent} used as {own_head}")
    return best


def fit(
    sd: StateDict, *, only: str | None = None
) -> tuple[str, dict[str, torch.Tensor], list[str]]:
    """Return (architecture, its state_dict, notes) for weights saved through a wrapper or
    with an edited head; raise ClassLensError naming the closest architectures otherwise.

    ``only`` restricts the search to one architecture (the user's --arch).
    """
    fits: list[Fit] = []
    own = _own_signatures()

    def torchvision() -> dict[str, dict[str, tuple[int, ...]]]:
        if only is None:
            return archs.signatures()
        sig = archs.signature(only)  # one model, not the whole index
        return {} if sig is None else {only: sig}

    # The project's nets first: the torchvision signatures cost a minute the first time.
    for sigs in (lambda: own, torchvision):
        group = sigs()
        if only is not None:
            group = {only: group[only]} if only in group else {}
        found = [f for f in (_fit(a, s, sd) for a, s in group.items()) if f is not None]
        fits += found
        complete = [f for f in found if f.state_dict is not None]
        if complete:
            best = max(complete, key=lambda f: f.total)  # the largest trunk explained wins
            return best.arch, best.state_dict or {}, best.notes
        if only in own:
            break
    raise ClassLensError(_refusal(sd, fits))


def _refusal(sd: StateDict, fits: list[Fit]) -> str:
    close = sorted(fits, key=lambda f: (f.matched / max(f.total, 1), f.matched), reverse=True)
    shown = []
    for f in [f for f in close if f.matched][:3]:
        where = f", prefix {f.prefix!r}" if f.prefix else ""
        but = f"; {f.why_not}" if f.why_not else ""
        shown.append(f"{f.arch} ({f.matched} of {f.total} trunk tensors matched{where}{but})")
    closest = f" Closest: {', '.join(shown)}." if shown else " No known architecture is close."
    return (
        "could not recognise the architecture from the checkpoint's weights "
        f"({len(sd)} tensors, first {next(iter(sd), '-')!r}).{closest} For a custom or edited "
        "model, export it to ONNX (torch.onnx.export(model, example, 'm.onnx', dynamo=False)) "
        "and evaluate the .onnx file; or pass --arch NAME (`python -m core archs` lists them)."
    )


def describe(notes: list[str], arch: str) -> dict[str, Any]:
    """Return the run fact for an adapted state_dict."""
    return {"architecture": arch, "adapted": notes}
