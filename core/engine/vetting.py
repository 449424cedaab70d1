"""A checkpoint read first in a memory-bounded child process, before the server loads it.

``core.engine.model_budget`` refuses what declared shapes would make a module allocate, but not
everything a file can ask for is a declared shape: an ONNX graph can build a huge tensor while
its outputs are counted (``ConstantOfShape``, ``Expand``), and an architecture whose builder
cannot be counted on the meta device is built for real. So the New run form has a file read
once in a child process under an address-space limit (``RLIMIT_AS``, set by the child after
its imports, so the limit is what loading may add: ``Settings.inspect_memory_mb``), and loads
it in the server only when that read succeeded. A refusal, an allocation that failed at the
limit, a child that died or one that ran past ``TIMEOUT_S`` is one clear message, remembered
per file content (a refused upload does not start a child on every rerun).

The child is a fork of the vetting server (``core.engine.vetting_server``): one process per
dashboard, started on the first read, that imported torch and the loaders once and forks a
fresh copy of itself per file (seconds saved on every upload after the first; it exits after
``SERVER_IDLE_S`` without a read, or when the dashboard's process ends). When no such server
can be had, each read is ``python -m core.engine.vetting '<json>'``, importing torch itself.

Either way the child prints one JSON object on stdout: ``{"ok": format}`` or
``{"error": message}``, and ``outcome`` turns what it printed and how it ended into the answer.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from core.errors import ClassLensError

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600  # a read that takes longer is refused: nothing legitimate is that slow
SERVER_IDLE_S = 300  # the vetting server exits after this long without a read (~0.4 GB PSS)
SERVER_FAILURES = 3  # the server failing to answer this many times in a row: children only
_REMEMBERED = 256  # refusals and passes kept, per (content, trusted, arch, limit)
_SEEN: OrderedDict[tuple, str | None] = OrderedDict()
_LOCK = threading.Lock()
_SERVER_LOCK = threading.Lock()  # starting, replacing and dropping the server
_server: subprocess.Popen[bytes] | None = None
_control: socket.socket | None = None  # requests to the server, each with its own reply socket
_failures = 0


def out_of_memory_message(name: str, memory_mb: int) -> str:
    """Return the refusal for a checkpoint whose reading needed more than ``memory_mb``."""
    return (
        f"reading {name} needed more than {memory_mb:,} MB, this server's limit for reading one "
        "checkpoint, so it was not loaded: the file asks for far more memory than it holds "
        "(a declared shape or a graph that builds huge tensors). Check the file; for a "
        "genuinely large model an administrator can raise CLASSLENS_INSPECT_MEMORY_MB."
    )


def timeout_message(name: str, timeout_s: float) -> str:
    """Return the refusal for a checkpoint whose reading took longer than ``timeout_s``."""
    return f"reading {name} took over {timeout_s:g} s, so it was not loaded."


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
    request = {"path": str(path), "trusted": trusted, "arch": arch, "memory_mb": memory_mb}
    reply = _served(request)
    if reply is None:  # no vetting server: a child of our own
        reply = _read_in_subprocess(request)
    error = reply.get("error")
    return error if isinstance(error, str) else None


def outcome(stdout: str, stderr: str, returncode: int, name: str, memory_mb: int) -> dict:
    """Return ``{"ok": format}`` or ``{"error": message}`` from what a child that read the file
    ``name`` printed and its exit status (negative: the signal that ended it)."""
    for line in reversed(stdout.splitlines()):
        try:
            msg = json.loads(line)
        except ValueError:
            continue  # a library printing to stdout
        if isinstance(msg, dict) and "ok" in msg:
            return {"ok": msg["ok"]}
        if isinstance(msg, dict) and isinstance(msg.get("error"), str):
            return {"error": msg["error"]}
    if returncode < 0 or "MemoryError" in stderr or "bad_alloc" in stderr:
        return {"error": out_of_memory_message(name, memory_mb)}  # killed, or died allocating
    tail = " ".join(stderr.strip().splitlines()[-1:])[:300] or f"exit {returncode}"
    return {"error": f"reading {name} stopped unexpectedly ({tail}), so it was not loaded."}


def _child_env() -> dict[str, str]:
    """Return the environment a child reads with: ours (the hosted settings among it), one
    OpenMP thread unless set."""
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def _read_in_subprocess(request: dict[str, Any]) -> dict:
    """Return the reply of ``python -m core.engine.vetting`` reading the file (a fresh child
    that imports torch itself: seconds)."""
    name = Path(request["path"]).name
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "core.engine.vetting", json.dumps(request)],
            cwd=REPO, env=_child_env(), capture_output=True, text=True, timeout=TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": timeout_message(name, TIMEOUT_S)}
    return outcome(proc.stdout, proc.stderr, proc.returncode, name, request["memory_mb"])


def _served(request: dict[str, Any]) -> dict | None:
    """Return the vetting server's reply for ``request``, or None when no server answered
    (none could start, or it failed twice: the caller then starts a child of its own).

    Each request travels with one end of a fresh socket pair for its reply, so sessions
    reading files at once each wait for their own answer. A server that had just exited
    (idle) or died is replaced once."""
    global _failures
    name = Path(request["path"]).name
    # The child reads with this process's environment now (the hosted settings are in it),
    # not the one the server started with.
    data = json.dumps({**request, "timeout_s": TIMEOUT_S, "env": _child_env()}).encode()
    for _ in range(2):
        control = _control_socket()
        if control is None:
            return None
        mine, theirs = socket.socketpair()
        with mine:
            try:
                try:
                    socket.send_fds(control, [data], [theirs.fileno()])
                finally:
                    theirs.close()
                mine.settimeout(TIMEOUT_S + 60)  # the server ends a read at TIMEOUT_S itself
                reply = _receive(mine)
            except TimeoutError:  # the server itself stopped answering: not used again
                _drop(control)
                return {"error": timeout_message(name, TIMEOUT_S)}
            except OSError:
                reply = None
        if reply is not None:
            with _SERVER_LOCK:
                _failures = 0
            return reply
        _drop(control)
    return None


def _receive(sock: socket.socket) -> dict | None:
    """Return the JSON object read from ``sock`` until the other end closed it, or None when
    it closed without one (the server had gone)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        return None
    return reply if isinstance(reply, dict) and ("ok" in reply or "error" in reply) else None


def _control_socket() -> socket.socket | None:
    """Return the socket to the running vetting server, started if need be; None when it
    cannot start or failed ``SERVER_FAILURES`` times in a row."""
    global _server, _control
    with _SERVER_LOCK:
        if _control is not None and _server is not None and _server.poll() is None:
            return _control
        _stop_server()
        if _failures >= SERVER_FAILURES:
            return None
        try:
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError:
            return None
        with theirs:
            fd = theirs.fileno()
            try:
                _server = subprocess.Popen(
                    [sys.executable, "-m", "core.engine.vetting_server", str(fd),
                     str(SERVER_IDLE_S)],
                    cwd=REPO, env=_child_env(), pass_fds=[fd], stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            except OSError:
                mine.close()
                return None
        _control = mine
        return mine


def _drop(control: socket.socket) -> None:
    """Count a failed request and stop the server it went to (the next one starts afresh)."""
    global _failures
    with _SERVER_LOCK:
        _failures += 1
        if _control is control:
            _stop_server()


def _stop_server() -> None:
    """Close the socket to the server and end it (its reads in progress finish on their own);
    the caller holds ``_SERVER_LOCK``."""
    global _server, _control
    if _control is not None:
        _control.close()  # the server exits when it reads the end of this socket
        _control = None
    if _server is not None:
        if _server.poll() is None:
            _server.kill()
        _server.wait()
        _server = None


def server_pid() -> int | None:
    """Return the running vetting server's process id, or None when there is none."""
    with _SERVER_LOCK:
        running = _control is not None and _server is not None and _server.poll() is None
        return _server.pid if running and _server is not None else None


def stop_server() -> None:
    """End the vetting server now, if one runs (the next read starts another)."""
    with _SERVER_LOCK:
        _stop_server()


def _limit_address_space(memory_mb: int) -> None:
    """Cap this process's address space at its present size plus ``memory_mb``."""
    import resource

    with open("/proc/self/status") as status:
        size_kb = next(int(ln.split()[1]) for ln in status if ln.startswith("VmSize:"))
    cap = size_kb * 1024 + memory_mb * 1024 * 1024
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard < 0 else min(cap, hard), hard))


def read_here(request: dict[str, Any]) -> int:
    """Load the checkpoint ``request`` describes in this process, under the memory limit it
    names, and print the JSON reply; the caller is a child that already imported torch and
    ``core.engine.models`` (the limit is what loading adds). Return the exit status."""
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


def main(argv: list[str]) -> int:
    """Load the checkpoint described by the JSON in ``argv[0]`` under the memory limit."""
    request = json.loads(argv[0])
    import torch  # noqa: F401  (imported before the limit: the limit is what loading adds)

    from core.engine import models  # noqa: F401

    return read_here(request)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
