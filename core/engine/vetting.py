"""A checkpoint read first in a memory-bounded child process, before the server loads it.

``core.engine.model_budget`` refuses what declared shapes would make a module allocate, but not
everything a file can ask for is a declared shape: an ONNX graph can build a huge tensor while
its outputs are counted (``ConstantOfShape``, ``Expand``), and an architecture whose builder
cannot be counted on the meta device is built for real. So the New run form has a file read
once by ``python -m core.engine.vetting '<json>'`` under an address-space limit
(``RLIMIT_AS``, set by the child after its imports, so the limit is what loading may add:
``Settings.inspect_memory_mb``), and loads it in the server only when that read succeeded.
A refusal, an allocation that failed at the limit or a child that died is one clear message,
remembered per file content (a refused upload does not start a child on every rerun).

The child prints one JSON object on stdout: ``{"ok": format}`` or ``{"error": message}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import OrderedDict
from pathlib import Path

from core.errors import ClassLensError

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600  # a read that takes longer is refused: nothing legitimate is that slow
_REMEMBERED = 256  # refusals and passes kept, per (content, trusted, arch, limit)
_SEEN: OrderedDict[tuple, str | None] = OrderedDict()
_LOCK = threading.Lock()


def out_of_memory_message(name: str, memory_mb: int) -> str:
    """Return the refusal for a checkpoint whose reading needed more than ``memory_mb``."""
    return (
        f"reading {name} needed more than {memory_mb:,} MB, this server's limit for reading one "
        "checkpoint, so it was not loaded: the file asks for far more memory than it holds "
        "(a declared shape or a graph that builds huge tensors). Check the file; for a "
        "genuinely large model an administrator can raise CLASSLENS_INSPECT_MEMORY_MB."
    )


def vet(path: Path, sha256: str, *, trusted: bool, arch: str | None, memory_mb: int) -> None:
    """Raise ClassLensError unless the checkpoint at ``path`` loads in a child process within
    ``memory_mb`` more megabytes than the child's imports; remembered per content."""
    key = (sha256, trusted, arch, memory_mb)
    with _LOCK:
        if key in _SEEN:
            _SEEN.move_to_end(key)
            error = _SEEN[key]
            if error is not None:
                raise ClassLensError(error)
            return
    error = _read_in_child(path, trusted=trusted, arch=arch, memory_mb=memory_mb)
    with _LOCK:
        _SEEN[key] = error
        while len(_SEEN) > _REMEMBERED:
            _SEEN.popitem(last=False)
    if error is not None:
        raise ClassLensError(error)


def _read_in_child(path: Path, *, trusted: bool, arch: str | None, memory_mb: int) -> str | None:
    """Return None when the child read the file, else the message to show."""
    request = json.dumps(
        {"path": str(path), "trusted": trusted, "arch": arch, "memory_mb": memory_mb}
    )
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "core.engine.vetting", request],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"reading {path.name} took over {TIMEOUT_S} s, so it was not loaded."
    for line in reversed(proc.stdout.splitlines()):
        try:
            msg = json.loads(line)
        except ValueError:
            continue  # a library printing to stdout
        if isinstance(msg, dict) and "ok" in msg:
            return None
        if isinstance(msg, dict) and isinstance(msg.get("error"), str):
            return msg["error"]
    if proc.returncode < 0 or "MemoryError" in proc.stderr or "bad_alloc" in proc.stderr:
        return out_of_memory_message(path.name, memory_mb)  # killed, or died allocating
    tail = " ".join(proc.stderr.strip().splitlines()[-1:])[:300] or f"exit {proc.returncode}"
    return f"reading {path.name} stopped unexpectedly ({tail}), so it was not loaded."


def _limit_address_space(memory_mb: int) -> None:
    """Cap this process's address space at its present size plus ``memory_mb``."""
    import resource

    with open("/proc/self/status") as status:
        size_kb = next(int(ln.split()[1]) for ln in status if ln.startswith("VmSize:"))
    cap = size_kb * 1024 + memory_mb * 1024 * 1024
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard < 0 else min(cap, hard), hard))


def main(argv: list[str]) -> int:
    """Load the checkpoint described by the JSON in ``argv[0]`` under the memory limit."""
    request = json.loads(argv[0])
    import torch  # noqa: F401  (imported before the limit: the limit is what loading adds)

    from core.engine import models
    from core.engine.model_budget import is_allocation_failure

    path, memory_mb = Path(request["path"]), int(request["memory_mb"])
    try:
        _limit_address_space(memory_mb)
        ckpt = models.load_checkpoint(path, trusted=request["trusted"], arch=request["arch"])
    except Exception as exc:
        cause = exc.__cause__ or exc.__context__
        if is_allocation_failure(exc) or (cause is not None and is_allocation_failure(cause)):
            print(json.dumps({"error": out_of_memory_message(path.name, memory_mb)}), flush=True)
        elif isinstance(exc, ClassLensError):
            print(json.dumps({"error": str(exc)}), flush=True)
        else:
            print(json.dumps({"error": f"unexpected {type(exc).__name__}: {exc}"}), flush=True)
        return 0
    print(json.dumps({"ok": ckpt.format}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
