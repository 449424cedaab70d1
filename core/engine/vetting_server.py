"""The vetting server: one process per dashboard that imported torch and the checkpoint loaders
once, and forks a fresh copy of itself for every file ``core.engine.vetting`` has read.

``python -m core.engine.vetting_server FD IDLE_S``: FD is this process's end of a
``SOCK_SEQPACKET`` socket pair whose other end the dashboard keeps. Each message on it is one
request (JSON: path, trusted, arch, memory_mb, timeout_s, env) carrying one file descriptor,
the socket its reply goes to. The server itself only receives, forks and imports, in one
thread (no thread of the multi-threaded dashboard is ever forked, and none runs here):

- per request, a *monitor* forked from the server, which forks the *reader*, the one process
  that opens the file: it takes the request's environment (the dashboard's hosted settings),
  caps its address space at its size plus ``memory_mb`` and loads the checkpoint
  (``vetting.read_here``; a trusted pickle's code runs there and nowhere else);
- the monitor collects the reader's output, ends it at ``timeout_s``, and writes
  ``vetting.outcome`` (``{"ok"}`` / ``{"error"}``, the same words as a child started by
  ``python -m core.engine.vetting``) to the reply socket. A reader killed at the limit or dying
  is thus answered by a process that did not die with it.

A reader that had to import torchvision or onnx (seconds each) says so; its monitor passes the
names (only those: ``LEARNED``) back on a pipe with its "done", and the server imports them
when no read has run for ``QUIET_S``, so later readers inherit them. The server exits when the
dashboard closes its end (the dashboard ended) or after ``IDLE_S`` seconds without a read
(its 0.3-0.45 GB go back; the next read starts a new one). Its monitors and readers are
separate processes: those in progress finish and answer on their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# Imported before the first request: what every reader needs.
PRELOAD = ["torch", "core.engine.models", "core.engine.vetting", "safetensors.torch"]
# Imported once a reader needed them. Not onnxruntime: importing it starts a thread, and a
# process with threads is not forked here (readers import it when a file needs it, 0.1 s).
LEARNED = ["torchvision.models", "onnx"]
QUIET_S = 2.0  # an import blocks the server: a request arriving meanwhile waits for it
CAPTURE_BYTES = 1 << 20  # the last MB of a reader's stdout and of its stderr are kept


def serve(control: socket.socket, idle_s: float) -> int:
    """Answer the requests arriving on ``control`` until its other end closes or, with no
    read running, none came for ``idle_s`` seconds; return the exit status."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # monitors are reaped by the kernel
    done_r, done_w = os.pipe()  # monitors -> server: "done" and the modules their reader imported
    requests = control.fileno()
    later: list[str] = []
    running = 0  # monitors that have not said "done"
    last = time.monotonic()  # the last request, or the last monitor done
    while True:
        quiet = time.monotonic() - last
        importing = bool(later) and not running
        # While a read runs, wait for it (or a request); then import, or count the idle time.
        wait = None if running else max(0.0, (QUIET_S if importing else idle_s) - quiet)
        ready = select.select([requests, done_r], [], [], wait)[0]
        if not ready:
            if not importing:
                return 0  # idle: no read for idle_s, none running
            with contextlib.suppress(Exception):  # a reader meets the failure in words
                __import__(later.pop(0))
            continue
        if done_r in ready:
            for line in os.read(done_r, 65536).decode(errors="replace").splitlines():
                running, last = max(0, running - 1), time.monotonic()
                for name in line.split()[1:]:
                    if name in LEARNED and name not in sys.modules and name not in later:
                        later.append(name)
        if requests not in ready:
            continue
        try:
            data, fds, _flags, _addr = socket.recv_fds(control, 1 << 20, 1)
        except OSError:
            return 0
        if not data:
            for fd in fds:
                os.close(fd)
            return 0  # the dashboard closed its end
        last = time.monotonic()
        if not fds:
            continue
        if os.fork() == 0:
            code, learned = 1, []
            try:
                control.close()
                os.close(done_r)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                with socket.socket(fileno=fds[0]) as reply:
                    learned = _monitor(json.loads(data), reply, close=done_w)
                code = 0
            except BaseException:  # noqa: BLE001  (the dashboard's log; it reads no reply)
                traceback.print_exc()
            finally:
                with contextlib.suppress(BaseException):  # the server may have exited
                    os.write(done_w, (" ".join(["done", *learned]) + "\n").encode())
                os._exit(code)
        running += 1
        os.close(fds[0])


def _monitor(request: dict[str, Any], reply: socket.socket, *, close: int) -> list[str]:
    """Fork the reader for ``request`` (``close``: an fd it must not keep), wait for it within
    its timeout and write the outcome to ``reply``; return the modules of ``LEARNED`` the
    reader imported."""
    from core.engine import vetting

    name = Path(request["path"]).name
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _reader(request, out_w, err_w, close=(reply.fileno(), close, out_r, err_r))
    os.close(out_w)
    os.close(err_w)
    deadline = time.monotonic() + float(request["timeout_s"])
    out, err, status = _collect(pid, out_r, err_r, deadline)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        answer = {"error": vetting.timeout_message(name, float(request["timeout_s"]))}
    else:
        answer = vetting.outcome(
            out.decode(errors="replace"), err.decode(errors="replace"),
            os.waitstatus_to_exitcode(status), name, int(request["memory_mb"]),
        )  # fmt: skip
    reply.sendall(json.dumps(answer).encode())
    return _imported(out.decode(errors="replace"))


def _reader(request: dict[str, Any], out_w: int, err_w: int, *, close: tuple) -> None:
    """In the forked reader: stdout and stderr to the monitor's pipes, the request's
    environment, then ``vetting.read_here``; never returns."""
    code = 1
    try:
        for fd in close:  # the reply socket among them: only the monitor answers
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        for fd in (null, out_w, err_w):
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        from core.engine import vetting

        code = vetting.read_here(request)
        print(json.dumps({"imported": [m for m in LEARNED if m in sys.modules]}), flush=True)
    except BaseException:  # noqa: BLE001  (reported on stderr, as an uncaught error would be)
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _imported(stdout: str) -> list[str]:
    """Return the modules of ``LEARNED`` the reader said it imported (its last line)."""
    lines = stdout.strip().splitlines()
    try:
        said = json.loads(lines[-1])["imported"] if lines else []
    except (ValueError, TypeError, KeyError):
        return []
    return [m for m in LEARNED if isinstance(said, list) and m in said]


def _collect(pid: int, out_r: int, err_r: int, deadline: float) -> tuple[bytes, bytes, int | None]:
    """Return the reader's stdout, stderr and wait status (None: still running at
    ``deadline``), reading both pipes to their end."""
    kept = {out_r: b"", err_r: b""}
    open_fds = [out_r, err_r]
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for fd in select.select(open_fds, [], [], left)[0]:
            chunk = os.read(fd, 65536)
            if chunk:
                kept[fd] = (kept[fd] + chunk)[-CAPTURE_BYTES:]
            else:
                open_fds.remove(fd)
                os.close(fd)
    for fd in open_fds:
        os.close(fd)
    while True:  # the pipes closed (or time ran out): its exit, within the deadline
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return kept[out_r], kept[err_r], status
        if time.monotonic() >= deadline:
            return kept[out_r], kept[err_r], None
        time.sleep(0.01)


def main(argv: list[str]) -> int:
    """``python -m core.engine.vetting_server FD IDLE_S``."""
    control = socket.socket(fileno=int(argv[0]))
    for module in PRELOAD:
        __import__(module)
    return serve(control, float(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
