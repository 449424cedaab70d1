"""Bounded load test: 8 concurrent sessions against the hosted server on 127.0.0.1.

Each session (a Playwright context in one headless Chromium) signs in with the editor
password, opens four views of a stored sample run, then asks for the same NEW evaluation (the
bundled good checkpoint at another image size). All must succeed and end on the new run,
inference must run once (the job's stderr line, counted in the server log), and
``/_stcore/health`` is polled throughout to show the server stays responsive.

The sessions are driven from one thread, round-robin: every step is issued to all sessions
first, then all are polled until ready, so the server sees them at once. Every loop has a
limit and every wait a timeout. The figures are printed and written to
tests/screenshots/load.json (BENCHMARKS.md, "Load test", records a run of them).
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_FLAGS, SHOTS, start_server

# Opt-in (CLASSLENS_LOAD_TEST=1): about 3 minutes on the 2-core box, which would push
# `make test` well past its 10-minute budget. See BENCHMARKS.md, "Load test".
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("CLASSLENS_LOAD_TEST") != "1",
        reason="load test is opt-in: CLASSLENS_LOAD_TEST=1 (minutes; see BENCHMARKS.md)",
    ),
]
SESSIONS = 8
PASSWORD = "load-test-editor"
VIEWS = ["Confusion matrix", "Per-class metrics", "Mistakes"]
NEW_SIZE = "24"  # the good checkpoint is stored at 32 px; 24 px makes a new run
# Generous bounds: the test box is 2 shared cores; every wait still ends.
STEP_TIMEOUT_S = 180
EVAL_TIMEOUT_S = 300
HEALTH_EVERY_S = 0.25
# "Responsive": 95% of health checks within P95_HEALTH_S and none beyond MAX_HEALTH_S. On the
# 2-core test box, eight Chromium renderers signing in at once stall one check for seconds.
P95_HEALTH_S = 1.0
MAX_HEALTH_S = 15.0
RUNNING = '[data-testid="stStatusWidget"]'
# Eight windows, of which only one is in front: without these flags Chromium throttles the
# timers of the others (to once a minute after 5 minutes), and the progress fragment that
# polls every 2 s stops refreshing in the sessions opened first.
UNTHROTTLED = [
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


class HealthPoller(threading.Thread):
    """Polls /_stcore/health until stopped (or for at most ``limit_s``); keeps latencies."""

    def __init__(self, url: str, limit_s: float = 600) -> None:
        super().__init__(daemon=True)
        self.url, self.limit_s = f"{url}/_stcore/health", limit_s
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + self.limit_s
        while not self.stop.is_set() and time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=10) as r:
                    ok = r.read() == b"ok"
                self.latencies.append(time.perf_counter() - t0)
                if not ok:
                    self.failures.append("not ok")
            except OSError as exc:
                self.failures.append(str(exc))
            self.stop.wait(HEALTH_EVERY_S)


def wait_all(pages: list, ready, started: list[float], what: str, timeout: float) -> list[float]:
    """Poll every page round-robin until ``ready(page)``; return each one's seconds since its
    ``started`` time (bounded by ``timeout``)."""
    done: list[float | None] = [None] * len(pages)
    deadline = time.monotonic() + timeout
    t0 = time.perf_counter()
    while any(d is None for d in done):
        if time.monotonic() > deadline:
            missing = [i for i, d in enumerate(done) if d is None]
            try:  # best effort: a picture of the first stuck session
                pages[missing[0]].screenshot(path=str(SHOTS / "load-stuck.png"), timeout=5000)
            except Exception as exc:  # noqa: BLE001 - the assertion below is what matters
                print(f"no screenshot: {exc}")
            raise AssertionError(f"sessions {missing} not ready ({what}) in {timeout:.0f} s")
        for i, page in enumerate(pages):
            if done[i] is None and ready(page):
                done[i] = time.perf_counter() - started[i]
        time.sleep(0.05)
    print(f"load test: {what}: all {len(pages)} ready after {time.perf_counter() - t0:.1f} s")
    return [float(d) for d in done]


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def heading_ready(title: str):  # noqa: ANN201
    def ready(page) -> bool:  # noqa: ANN001
        return (
            page.get_by_role("heading", name=title).count() > 0
            and page.locator(RUNNING).count() == 0
        )

    return ready


@pytest.fixture(scope="module")
def hosted_server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    base = tmp_path_factory.mktemp("load")
    env = {
        "CLASSLENS_HOSTED": "1",
        "CLASSLENS_AUTH": "password",
        "CLASSLENS_EDITOR_PASSWORD": PASSWORD,
        "PYTHONFAULTHANDLER": "1",  # a stuck server can be made to print its threads (SIGABRT)
        # One OpenMP thread: on a small shared box torch's spinning worker threads, starved
        # by the browser and the sessions, slow inference down by orders of magnitude.
        "OMP_NUM_THREADS": "1",
    }
    # No file watcher: it has nothing to do in production and rescans the repo under load.
    with start_server(base, env=env, args=["--server.fileWatcherType", "none"]) as srv:
        yield srv, base / "server.log"


@pytest.fixture(scope="module")
def unthrottled(browser):  # noqa: ANN001, ANN201
    """Return a second Chromium like ``browser`` whose background windows keep their timers."""
    b = browser.browser_type.launch(
        executable_path=CHROMIUM, args=CHROMIUM_FLAGS + UNTHROTTLED, headless=True
    )
    yield b
    b.close()


def test_eight_sessions_view_and_evaluate_at_once(unthrottled, hosted_server) -> None:  # noqa: ANN001
    browser = unthrottled
    server, log_path = hosted_server
    before = {p.name for p in server.runs_dir.iterdir() if not p.name.startswith(".")}
    SHOTS.mkdir(parents=True, exist_ok=True)
    health = HealthPoller(server.url)
    health.start()
    contexts = [
        browser.new_context(viewport={"width": 1280, "height": 900}) for _ in range(SESSIONS)
    ]
    t_start = time.perf_counter()
    view_latencies: list[float] = []
    try:
        pages = [c.new_page() for c in contexts]
        for page in pages:
            page.set_default_timeout(STEP_TIMEOUT_S * 1000)
            page.goto(server.url)
        for page in pages:
            page.get_by_label("Password", exact=True).fill(PASSWORD)
        started = []
        for page in pages:
            page.get_by_role("button", name="Sign in").click()
            started.append(time.perf_counter())
        view_latencies += wait_all(
            pages, heading_ready("Overview"), started, "signed in", STEP_TIMEOUT_S
        )

        for title in VIEWS:
            started = []
            for page in pages:
                page.locator('[data-testid="stSidebarNav"]').get_by_text(title).click()
                started.append(time.perf_counter())
            view_latencies += wait_all(pages, heading_ready(title), started, title, STEP_TIMEOUT_S)

        for page in pages:
            page.get_by_text("New run").click()
        for page in pages:
            size = page.get_by_label("Image size")
            size.fill(NEW_SIZE)
            size.press("Enter")
        now = [time.perf_counter()] * SESSIONS
        wait_all(
            pages,
            lambda p: (
                p.get_by_label("Image size").input_value() == NEW_SIZE
                and p.locator(RUNNING).count() == 0
            ),
            now,
            "image size set",
            STEP_TIMEOUT_S,
        )
        started = []
        t_eval = time.perf_counter()
        for page in pages:
            page.get_by_role("button", name="Evaluate").click()
            started.append(time.perf_counter())
        eval_s = wait_all(
            pages,
            lambda p: p.get_by_text("Done: run").count() > 0,
            started,
            "evaluation done",
            EVAL_TIMEOUT_S,
        )
        eval_wall = time.perf_counter() - t_eval
        after = {p.name for p in server.runs_dir.iterdir() if not p.name.startswith(".")}
        new = sorted(after - before)
        assert len(new) == 1, f"expected one new run, got {new}"
        meta = json.loads((server.runs_dir / new[0] / "meta.json").read_text())
        assert meta["preprocessing"]["image_size"] == int(NEW_SIZE)
        wait_all(
            pages,
            lambda p: f"run={new[0]}" in p.url,
            [time.perf_counter()] * SESSIONS,
            "new run opened",
            STEP_TIMEOUT_S,
        )
        for page in pages:
            assert page.locator('[data-testid="stException"]').count() == 0
        pages[0].screenshot(path=str(SHOTS / "load-session0.png"))
    finally:
        for c in contexts:
            c.close()
        health.stop.set()
        health.join(15)
    wall = time.perf_counter() - t_start
    inferences = log_path.read_text().count("classlens: inference started")
    figures = {
        "sessions": SESSIONS,
        "wall_s": round(wall, 1),
        "views_per_session": 1 + len(VIEWS),
        "view_latency_p50_s": round(statistics.median(view_latencies), 2),
        "view_latency_max_s": round(max(view_latencies), 2),
        "evaluation_wall_s": round(eval_wall, 1),
        "evaluation_seen_by_all_max_s": round(max(eval_s), 1),
        "inference_runs": inferences,
        "health_checks": len(health.latencies),
        "health_p50_ms": round(1000 * statistics.median(health.latencies), 1),
        "health_p95_ms": round(1000 * _p95(health.latencies), 1),
        "health_max_ms": round(1000 * max(health.latencies), 1),
    }
    print("load test:", json.dumps(figures))
    (SHOTS / "load.json").write_text(json.dumps(figures, indent=1))
    assert inferences == 1, f"inference ran {inferences} times (server log {log_path})"
    assert not health.failures, health.failures[:3]
    assert _p95(health.latencies) < P95_HEALTH_S, figures
    assert max(health.latencies) < MAX_HEALTH_S, figures
    assert Path(log_path).read_text().count("Traceback") == 0


HEAVY_GRADCAM = 6  # viewers paging Mistakes with Grad-CAM on
HEAVY_EMBED = 3  # viewers opening Leakage by model embeddings
PROBES = 10  # Overview loads measured for another viewer while they work
P95_OVERVIEW_S = 1.0  # the goal (issue 13); recorded, asserted loosely on the shared box


def _good_run_id(runs_dir: Path) -> str:
    for p in runs_dir.iterdir():
        meta = p / "meta.json"
        if meta.is_file() and "good" in json.loads(meta.read_text())["checkpoint"]["name"]:
            return p.name
    raise AssertionError(f"no run of the good sample checkpoint in {runs_dir}")


def _sign_in_at(pages: list, url: str) -> None:
    """Open ``url`` (a deep link) in every page and sign in: the link survives the login."""
    for page in pages:
        page.set_default_timeout(STEP_TIMEOUT_S * 1000)
        page.goto(url)
    for page in pages:
        page.get_by_label("Password", exact=True).fill(PASSWORD)
    for page in pages:
        page.get_by_role("button", name="Sign in").click()


def test_heavy_viewers_leave_another_viewers_overview_fast(unthrottled, hosted_server) -> None:  # noqa: ANN001
    """Six viewers turn Grad-CAM on for the same Mistakes page and three open Leakage by
    embeddings on a run without cached embeddings, while another viewer reloads Overview:
    one Grad-CAM and one embedding computation in all (core.hosting.tasks), and that
    viewer's Overview p95 is measured."""
    browser = unthrottled
    server, log_path = hosted_server
    good = _good_run_id(server.runs_dir)
    (server.runs_dir / good / "embeddings.npy").unlink(missing_ok=True)
    log_before = log_path.read_text()
    n_heavy = HEAVY_GRADCAM + HEAVY_EMBED
    contexts = [
        browser.new_context(viewport={"width": 1280, "height": 900}) for _ in range(n_heavy + 1)
    ]
    overview_s: list[float] = []
    try:
        pages = [c.new_page() for c in contexts]
        cams, embeds, probe = pages[:HEAVY_GRADCAM], pages[HEAVY_GRADCAM:n_heavy], pages[-1]
        _sign_in_at(cams, f"{server.url}/mistakes?run={good}")
        _sign_in_at(embeds, f"{server.url}/leakage?run={good}")
        _sign_in_at([probe], f"{server.url}/?run={good}")
        now = [time.perf_counter()] * len(pages)
        wait_all(cams, heading_ready("Mistakes"), now, "mistakes", STEP_TIMEOUT_S)
        wait_all(embeds, heading_ready("Leakage"), now, "leakage", STEP_TIMEOUT_S)
        wait_all([probe], heading_ready("Overview"), now, "overview", STEP_TIMEOUT_S)
        t_heavy = time.perf_counter()
        for page in cams:
            page.get_by_text("Show Grad-CAM").click()
        for page in embeds:
            page.get_by_text("Model embeddings", exact=True).click()
        nav = probe.locator('[data-testid="stSidebarNav"]')
        for _ in range(PROBES):
            nav.get_by_text("Per-class metrics").click()
            wait_all([probe], heading_ready("Per-class metrics"), [time.perf_counter()],
                     "per-class", STEP_TIMEOUT_S)  # fmt: skip
            started = [time.perf_counter()]
            nav.get_by_text("Overview").click()
            overview_s += wait_all([probe], heading_ready("Overview"), started, "overview",
                                   STEP_TIMEOUT_S)  # fmt: skip
        wait_all(
            cams,
            lambda p: (
                p.get_by_text("Computing Grad-CAM").count() == 0 and p.locator(RUNNING).count() == 0
            ),
            [t_heavy] * len(cams),
            "grad-cam shown",
            EVAL_TIMEOUT_S,
        )
        embed_s = wait_all(
            embeds,
            lambda p: p.get_by_text("at cosine similarity").count() > 0,
            [t_heavy] * len(embeds),
            "embedding pairs shown",
            EVAL_TIMEOUT_S,
        )
        for page in pages:
            assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        for c in contexts:
            c.close()
    log = log_path.read_text()[len(log_before) :]
    figures = {
        "gradcam_viewers": HEAVY_GRADCAM,
        "embedding_viewers": HEAVY_EMBED,
        "gradcam_computations": log.count("classlens: task started: Grad-CAM"),
        "embedding_computations": log.count("classlens: task started: Embedding"),
        "embeddings_seen_by_all_max_s": round(max(embed_s), 1),
        "other_viewer_overview_p50_s": round(statistics.median(overview_s), 2),
        # inclusive: with PROBES samples the default method extrapolates past the maximum
        "other_viewer_overview_p95_s": round(
            statistics.quantiles(overview_s, n=20, method="inclusive")[-1], 2
        ),
        "other_viewer_overview_max_s": round(max(overview_s), 2),
    }
    print("load test (heavy viewers):", json.dumps(figures))
    (SHOTS / "load-heavy.json").write_text(json.dumps(figures, indent=1))
    assert figures["gradcam_computations"] == 1, figures
    assert figures["embedding_computations"] == 1, figures
    assert "Traceback" not in log
    # The 1 s goal is recorded in BENCHMARKS.md; on the shared 2-core box the bound is looser.
    assert figures["other_viewer_overview_p95_s"] < 5 * P95_OVERVIEW_S, figures
