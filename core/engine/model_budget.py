"""Bound what a checkpoint can make the server allocate before its module is built.

An architecture's constructor arguments come from declared shapes: a head of [1_000_000, 1]
asks for a million classes, and building resnet18 for them allocates 2 GB before loading the
weights fails. Strict loading needs one number in the file per number of the module, so the
module is first counted on the meta device (no memory) and refused when it would hold more
than the file's tensors. The slack admits the one legitimate difference, a 3-channel first
convolution that loading narrows to the file's 1 channel (``archs.build``).

The file's numbers are the ones it stores, not the ones its tensors show: a ``torch.save``d
tensor expanded with stride 0 shows a million rows over one stored number, so a 2 KB file
could otherwise claim half a billion numbers (``stored_numbers``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from core.errors import ClassLensError

SLACK = 1_000_000  # numbers; or a tenth of the file's, whichever is larger


def is_allocation_failure(exc: BaseException) -> bool:
    """Return whether ``exc`` is an allocation that failed (Python's, torch's or onnxruntime's
    words for it): under a memory limit, the file asked for more than the limit."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or any(
        w in text for w in ("can't allocate", "cannot allocate", "failed to allocate", "bad_alloc")
    )


def stored_numbers(state_dict: Mapping[str, object]) -> int:
    """Return how many numbers ``state_dict``'s tensors really store: each tensor counts at most
    the elements of its storage, and all together at most twice the distinct storages' elements
    (tied weights legitimately share one storage; stride-0 or overlapping views add nothing)."""
    shown, storages = 0, {}
    for t in state_dict.values():
        if not isinstance(t, torch.Tensor):
            continue
        storage = t.untyped_storage()
        elements = storage.nbytes() // max(t.element_size(), 1)
        shown += min(t.numel(), elements)
        where = storage.data_ptr() or id(t)  # meta tensors store nothing and share address 0
        storages[(where, storage.nbytes())] = elements
    return min(shown, 2 * sum(storages.values()))


def check_build_size(arch: Any, kwargs: dict, state_dict: Mapping[str, object]) -> None:
    """Raise ClassLensError when ``arch.build(**kwargs)`` (an ``archs.Architecture``) would hold
    far more numbers than ``state_dict`` has; return quietly when it fits or cannot be counted
    without building it (regnet's builder cannot run on the meta device)."""
    from core.engine.archs import meta_build  # archs imports this module

    have = stored_numbers(state_dict)
    try:
        with meta_build():
            need = sum(t.numel() for t in arch.build(**kwargs).state_dict().values())
    except Exception:
        return
    if need > have + max(have // 10, SLACK):
        shown = ", ".join(f"{k}={v:,}" for k, v in kwargs.items())
        raise ClassLensError(
            f"the checkpoint's weights do not fit architecture {arch.name!r}: its shapes ask "
            f"for a model of {need:,} numbers ({shown}) but the file holds {have:,}, so it "
            "was not built. Check the file, or pass the right --arch."
        )
