"""The vetting server (core.engine.vetting_server): the New run form's checkpoint read in a fork
of one pre-imported process per dashboard, with the answers of a child of its own.

One server serves this whole module (it lives as long as this process, or until idle), so the
torch import is paid once; every read uses its own content key (vet() remembers answers).
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from core.engine import vetting
from core.engine.sample import CHECKPOINTS
from core.errors import ClassLensError

pytestmark = pytest.mark.slow  # starts the server and reads files in its forks (~5 CPU s)
GOOD = CHECKPOINTS["good"]
_keys = iter(range(1_000_000))


def _vet(path: Path, *, trusted: bool = False, memory_mb: int = 1024) -> str:
    """Return "ok" or the refusal for ``path``, read afresh (a new content key each time)."""
    try:
        vetting.vet(path, f"test-{next(_keys)}", trusted=trusted, arch=None, memory_mb=memory_mb)
    except ClassLensError as exc:
        return str(exc)
    return "ok"


class _Code:
    """Pickled as a call to ``fn(*args)``: code that runs when the file is unpickled."""

    def __init__(self, fn: object, *args: object) -> None:
        self.call = (fn, args)

    def __reduce__(self) -> tuple:
        return self.call


def _pickle(path: Path, fn: object, *args: object) -> Path:
    """Write the good sample as a torch.save pickle that also calls ``fn(*args)`` when read."""
    with safe_open(str(GOOD), framework="pt") as f:
        meta = json.loads(f.metadata()["classlens"])
    torch.save({"state_dict": load_file(str(GOOD)), **meta, "x": _Code(fn, *args)}, path)
    return path


def test_reads_at_once_in_one_server_each_get_their_own_answer(tmp_path: Path) -> None:
    # (A file refused at the memory limit through the server: test_model_budget's slow test.)
    evil = _pickle(tmp_path / "evil.pt", exec, "raise SystemExit(3)")  # untrusted: refused
    assert _vet(GOOD) == "ok"
    pid = vetting.server_pid()
    assert pid is not None and pid != os.getpid()
    answers: dict[str, str] = {}
    threads = [
        threading.Thread(target=lambda p=p: answers.__setitem__(p.name, _vet(p)))
        for p in (evil, GOOD, evil, GOOD)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert answers["good.safetensors"] == "ok"
    assert re.search(r"evil\.pt is not a safe checkpoint", answers["evil.pt"])
    assert vetting.server_pid() == pid, "the same server read them all"


def test_a_trusted_pickles_code_runs_only_in_a_reader_that_then_ends(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    code = f"import os; open({str(marker)!r}, 'w').write(str(os.getpid()))"
    evil = _pickle(tmp_path / "code.pt", exec, code)
    assert "not a safe checkpoint" in _vet(evil)  # untrusted: refused, never run
    assert not marker.exists()
    _vet(evil, trusted=True)
    ran_in = int(marker.read_text())
    assert ran_in not in (os.getpid(), vetting.server_pid())
    assert not Path(f"/proc/{ran_in}").exists(), "the reader has ended"


def test_a_reader_that_dies_or_hangs_is_answered_and_the_server_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kill = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    dies = _pickle(tmp_path / "dies.pt", exec, kill)
    assert re.search(r"reading dies\.pt needed more than 1,024 MB", _vet(dies, trusted=True))
    monkeypatch.setattr(vetting, "TIMEOUT_S", 2)
    hangs = _pickle(tmp_path / "hangs.pt", time.sleep, 60)
    started = time.monotonic()
    assert _vet(hangs, trusted=True) == "reading hangs.pt took over 2 s, so it was not loaded."
    assert time.monotonic() - started < 30
    monkeypatch.undo()
    assert _vet(GOOD) == "ok"


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script's deprecation
def test_the_readers_settings_are_the_dashboards_now_not_at_the_servers_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _vet(GOOD) == "ok"  # the server runs, started in local mode
    scripted = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(scripted))
    monkeypatch.setenv("CLASSLENS_HOSTED", "1")
    assert re.search(r"never loads such files, trusted or not", _vet(scripted, trusted=True))


def test_a_dead_or_idle_server_is_replaced_and_none_means_a_child_of_our_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evil = _pickle(tmp_path / "evil.pt", exec, "raise SystemExit(3)")
    served = _vet(evil)
    first = vetting.server_pid()
    assert first is not None
    os.kill(first, signal.SIGKILL)
    monkeypatch.setattr(vetting, "SERVER_IDLE_S", 3)  # the next one exits after 3 s idle
    assert _vet(GOOD) == "ok"
    assert vetting.server_pid() not in (None, first), "a new server read it"
    deadline = time.monotonic() + 60  # bounded: it exits by itself
    while vetting.server_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert vetting.server_pid() is None

    monkeypatch.setattr(vetting, "SERVER_FAILURES", 0)  # no server: a child of our own
    assert re.search(r"evil\.pt is not a safe checkpoint", served)
    assert _vet(evil) == served, "the same words either way"
    assert vetting.server_pid() is None
