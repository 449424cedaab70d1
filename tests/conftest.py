"""Shared fixtures: tiny image datasets, tiny checkpoints, an isolated run store, the CLI.

Every test gets its own run store; the cache directory (which only holds the architecture key
index, slow to build) is one temporary folder per session. No test touches the user's cache.

The CLI is driven two ways. ``cli``/``cli_many`` start real ``python -m core`` processes
(seconds each, mostly importing torch): used where the process itself is the point -- a kill
midway, a second process finding the cached run, a malicious file refused by the real entry
point -- and marked ``slow``. ``cli_inprocess`` calls the same ``main`` in this process and is
used to pin exit codes and error wording for many inputs cheaply.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:  # torch, PIL and the nets are imported where used: see pytest_sessionstart
    import torch
    from PIL import Image

    from core.engine.nets import DigitsCNN
    from tests.digits64 import Evaluated

REPO = Path(__file__).resolve().parents[1]
# Created out of order on purpose: scan() must sort them.
CLASSES = ("dog", "cat", "bird")
SORTED_CLASSES = tuple(sorted(CLASSES))
SIZE = 16
PREPROCESSING = {"image_size": SIZE, "channels": 1, "mean": [0.5], "std": [0.5]}
CLI_TIMEOUT = 180


def pytest_sessionstart(session: pytest.Session) -> None:
    """Tiny models on a shared 2-core box: one torch thread avoids OpenMP spin-waiting (10x
    faster here). Set in every process that runs tests, before collection; not in an xdist
    controller, which only hands out tests: it need not import torch (seconds of CPU while
    its workers start on the same cores)."""
    if not session.config.pluginmanager.has_plugin("dsession"):
        import torch

        torch.set_num_threads(1)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make ``--dist loadgroup`` group again (``make test``). pytest-xdist 3.8 marks a grouped
    test by appending "@group" to ``item._nodeid``, which pytest 9 no longer reads (a node id
    now comes from ``item._id``), so every ``xdist_group`` was silently ignored: both workers
    started their own browser server and Chromium, for instance. Runs after every other
    collection hook (tests/browser/conftest.py adds its group there) and writes the same
    suffix where pytest 9 reads it; does nothing where the ids already carry it."""
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # an older pytest: xdist's own suffix works there
        return
    for item in items:
        names = sorted(
            {str(m.args[0] if m.args else m.kwargs.get("name", "default"))
             for m in item.iter_markers("xdist_group")}
        )  # fmt: skip
        if names and "@" not in item.nodeid and isinstance(getattr(item, "_id", None), NodeId):
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")


# Every module under tests/browser carries these marks (pytestmark).
BROWSER_MARKS = frozenset({"browser", "slow"})


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Skip importing tests/browser (playwright, an OpenID provider: about a second per xdist
    worker) when ``-m`` deselects every test marked browser and slow, whatever other marks
    they carry (``make test-fast``); otherwise let pytest decide."""
    markexpr = config.getoption("markexpr", "")
    if collection_path != REPO / "tests" / "browser" or not markexpr or "(" in markexpr:
        return None
    from itertools import product

    from _pytest.mark.expression import Expression

    names = sorted(set(re.findall(r"[A-Za-z_]\w*", markexpr)) - {"and", "or", "not"})
    others = [n for n in names if n not in BROWSER_MARKS]
    if len(others) > 8:
        return None
    expr = Expression.compile(markexpr)
    for values in product((False, True), repeat=len(others)):
        marks = BROWSER_MARKS | {n for n, on in zip(others, values, strict=True) if on}
        if expr.evaluate(lambda name, /, **kw: name in marks):  # noqa: B023 (used at once)
            return None
    return True


# --- isolation ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a session-wide temporary cache directory (the arch key index is built once)."""
    return tmp_path_factory.mktemp("classlens-cache")


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a temporary folder shared by every pytest-xdist worker of this session (the
    session's base folder itself when not under xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def shared_arch_signatures(shared_tmp: Path) -> Iterator[None]:
    """Build torchvision's architecture signatures (seconds to a minute) once per session,
    not once per xdist worker: the first worker to need them builds them into a shared folder
    under a file lock; the others wait and read that file. Still lazy: a session that detects
    no architecture builds nothing."""
    from filelock import FileLock

    from core.engine import archs

    original = archs.signatures
    folder = shared_tmp / "arch-signatures"

    @functools.lru_cache(maxsize=1)
    def signatures() -> dict[str, dict[str, tuple[int, ...]]]:
        folder.mkdir(exist_ok=True)
        with FileLock(str(folder / "build.lock")), pytest.MonkeyPatch.context() as mp:
            mp.setenv("CLASSLENS_CACHE_DIR", str(folder))
            original.cache_clear()
            try:
                return original()
            finally:
                original.cache_clear()

    archs.signatures = signatures
    archs._key_index.cache_clear()
    yield
    archs.signatures = original


@pytest.fixture(scope="session")
def sample_store(shared_tmp: Path) -> Path:
    """Return a run store holding the three bundled sample runs, evaluated once per test
    session and shared by the xdist workers: each worker starts on a different checkpoint
    (gw0 on the first, gw1 on the second, ...), so two workers evaluate two at once; a worker
    reaching a run another one is evaluating waits on that run's lock (``evaluate`` holds one
    per run id, across processes) and then finds it stored.

    Shared and read-only: copy it (``shutil.copytree``) before anything writes into it.
    """
    from core.engine.evaluate import evaluate
    from core.engine.sample import CHECKPOINTS, DATASET, ensure_sample_runs

    runs = shared_tmp / "sample-store" / "runs"
    paths = list(CHECKPOINTS.values())
    k = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % len(paths)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLASSLENS_CACHE_DIR", str(runs.parent / "cache"))
        for path in paths[k:] + paths[:k]:
            evaluate(path, DATASET, runs_dir=runs, device="cpu")  # as ensure_sample_runs does
        ensure_sample_runs(runs)  # finds all three: no inference
    return runs


@pytest.fixture(scope="session")
def digits64_checkpoint(shared_tmp: Path) -> Path:
    """Return the 64-px probe checkpoint (tests/digits64.py), trained once per test session:
    the first worker trains it under a file lock, the others wait and find it. Read-only."""
    from filelock import FileLock

    from tests import digits64

    folder = shared_tmp / "digits64"
    with FileLock(str(shared_tmp / "digits64.lock")):
        path = folder / "digits_64px.safetensors"
        if not path.exists():
            built = digits64.build(folder.with_name("digits64.tmp"))
            folder.mkdir(exist_ok=True)
            built.replace(path)  # whole or absent: a worker never sees half a file
    return path


@pytest.fixture(scope="session")
def digits64_runs(shared_tmp: Path, digits64_checkpoint: Path) -> Evaluated:
    """Return the 64-px checkpoint evaluated on the sample, probed and with the size typed
    (tests/digits64.py), once per test session: the first worker evaluates under a file lock,
    the others wait and find the runs. Read-only: copy a store before writing into it."""
    from filelock import FileLock

    from tests import digits64

    folder = shared_tmp / "digits64-runs"
    with FileLock(str(shared_tmp / "digits64-runs.lock")), pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLASSLENS_CACHE_DIR", str(folder.with_name("digits64-cache")))
        return digits64.evaluated(folder, digits64_checkpoint)


@pytest.fixture(autouse=True)
def runs_dir(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cache_dir: Path
) -> Path:
    """Return this test's own run store; both ClassLens directories point into tmp folders.

    Tests that use the session-wide sample store (``sample_runs``) export their own folders.
    """
    runs = tmp_path / "runs"
    if "sample_runs" in request.fixturenames:
        return runs
    monkeypatch.setenv("CLASSLENS_RUNS_DIR", str(runs))
    monkeypatch.setenv("CLASSLENS_CACHE_DIR", str(cache_dir))
    monkeypatch.delenv("CLASSLENS_DEBUG", raising=False)
    return runs


# --- images and datasets -----------------------------------------------------------------------


def draw(label: int, seed: int, *, size: int = SIZE, mode: str = "L") -> Image.Image:
    """Return a small image whose pattern depends on ``label`` (stripes, bars, a square)."""
    from PIL import Image

    rng = np.random.default_rng(1000 * label + seed)
    yy, xx = np.mgrid[0:size, 0:size]
    pattern = [
        (yy // 2) % 2,  # horizontal stripes
        (xx // 2) % 2,  # vertical stripes
        (abs(yy - size / 2) < size / 4) & (abs(xx - size / 2) < size / 4),  # a square
    ][label % 3]
    pixels = pattern * 200.0 + rng.normal(0, 20, (size, size)) + 20
    gray = np.clip(pixels, 0, 255).astype(np.uint8)
    if mode == "L":
        return Image.fromarray(gray, mode="L")
    tint = np.array([1.0, 0.6 + 0.2 * (label % 2), 0.4])
    rgb = np.clip(gray[..., None] * tint, 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, mode="RGB")


def write_dataset(
    root: Path,
    *,
    splits: Sequence[str] | None = ("train", "test"),
    classes: Sequence[str] = CLASSES,
    per_class: int = 4,
    size: int = SIZE,
    mode: str = "L",
) -> Path:
    """Write ``root/<split>/<class>/NNN.png`` (``splits=None``: ``root/<class>/NNN.png``)."""
    for s, split in enumerate(splits or [None]):
        for label, name in enumerate(classes):
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                draw(label, 100 * s + i, size=size, mode=mode).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Return a train/test dataset: 3 classes x 4 grayscale 16x16 images per split."""
    return write_dataset(tmp_path / "data")


# --- models and checkpoints --------------------------------------------------------------------


def make_model(num_classes: int = 3, in_channels: int = 1, seed: int = 0) -> DigitsCNN:
    """Return a DigitsCNN in eval mode with random weights AND random batch-norm statistics."""
    import torch

    from core.engine.nets import DigitsCNN

    torch.manual_seed(seed)
    model = DigitsCNN(num_classes=num_classes, in_channels=in_channels)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.running_mean.normal_(0, 0.2)
                layer.running_var.uniform_(0.5, 2.0)
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.normal_(0, 0.1)
    return model.eval()


def classlens_meta(
    architecture: str = "digits_cnn",
    class_names: Iterable[str] | None = SORTED_CLASSES,
    preprocessing: dict | None = None,
) -> dict:
    """Return checkpoint metadata the way sample_data/build_sample.py writes it."""
    meta: dict = {"architecture": architecture, "preprocessing": preprocessing or PREPROCESSING}
    if class_names is not None:
        meta["class_names"] = list(class_names)
    return meta


def save_safetensors(model: torch.nn.Module, path: Path, meta: dict | None = None) -> Path:
    """Write the model's state_dict as .safetensors, with ClassLens metadata when given."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    metadata = {"classlens": json.dumps(meta)} if meta is not None else None
    save_file(state, str(path), metadata=metadata)
    return path


@pytest.fixture
def model() -> DigitsCNN:
    """Return a 3-class, 1-channel DigitsCNN."""
    return make_model()


@pytest.fixture
def checkpoint(tmp_path: Path, model: DigitsCNN) -> Path:
    """Return a .safetensors checkpoint of ``model`` with full ClassLens metadata."""
    return save_safetensors(model, tmp_path / "model.safetensors", classlens_meta())


# --- the CLI -----------------------------------------------------------------------------------


def cli_env() -> dict[str, str]:
    """Return the environment for a CLI subprocess (the test's isolated ClassLens folders)."""
    env = dict(os.environ)
    assert env["CLASSLENS_RUNS_DIR"] and env["CLASSLENS_CACHE_DIR"]
    env["OMP_NUM_THREADS"] = "1"  # several CLIs may run at once on a small box
    return env


def cli_cmd(args: Sequence[object]) -> list[str]:
    """Return the command line of ``python -m core ARGS`` with this interpreter."""
    return [sys.executable, "-m", "core", *(str(a) for a in args)]


def cli(*args: object, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    """Run ``python -m core ARGS`` from the repo root and return the finished process."""
    return subprocess.run(
        cli_cmd(args), cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )


def cli_many(*arg_lists: Sequence[object]) -> list[subprocess.CompletedProcess]:
    """Run several independent CLI calls at once (start-up dominates); return them in order."""
    procs = [
        subprocess.Popen(
            cli_cmd(args),
            cwd=REPO,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in arg_lists
    ]
    done = []
    for args, proc in zip(arg_lists, procs, strict=True):
        try:
            out, err = proc.communicate(timeout=CLI_TIMEOUT)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        done.append(subprocess.CompletedProcess(cli_cmd(args), proc.returncode, out, err))
    return done


def cli_inprocess(capsys: pytest.CaptureFixture[str], *args: object) -> subprocess.CompletedProcess:
    """Run the CLI's ``main`` in this process (no interpreter start-up) and return what it
    printed, shaped like a finished subprocess. An exception escaping ``main`` fails the test.
    """
    from core.__main__ import main

    argv = [str(a) for a in args]
    capsys.readouterr()  # drop anything printed before
    code = main(argv)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["python", "-m", "core", *argv], code, out, err)


def last_line(text: str) -> str:
    """Return the last non-empty line of ``text``."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def assert_cli_error(proc: subprocess.CompletedProcess, pattern: str) -> str:
    """Assert the CLI failed cleanly: exit 1, one ``error: ...`` line matching ``pattern``
    (a regex), no traceback, nothing on stdout. Return the error line."""
    context = f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 1, context
    assert "Traceback" not in proc.stderr, context
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, context
    assert "unexpected" not in errors[0], context  # the catch-all for bugs
    assert re.search(pattern, errors[0]), f"{pattern!r} not in {errors[0]!r}"
    assert proc.stdout.strip() == "", context
    return errors[0]


def assert_cli_run(proc: subprocess.CompletedProcess, runs_dir: Path) -> Path:
    """Assert the CLI succeeded and printed a run folder inside ``runs_dir``; return it."""
    context = f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, context
    run_path = Path(last_line(proc.stdout))
    assert run_path.parent == runs_dir, context
    for name in ("predictions.parquet", "meta.json", "metrics.json"):
        assert (run_path / name).is_file(), context
    return run_path
