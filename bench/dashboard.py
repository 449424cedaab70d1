"""Server-side time of each page and bytes the Confusion page sends, on a 1,000-class run.

``python -m bench.dashboard`` opens the synthetic 50,000 x 1,000 run of bench/synthetic.py
(written once into a private store) through Streamlit's AppTest: each page once to warm the
caches (the first open reads the run), then the median of REPEATS reruns (goal < 1 s).

Bytes sent (goal < 2 MB): what a browser receives for one rerun of the page = the serialized
protobuf of every element and block in the page tree (a plotly chart's spec, a dataframe's
Arrow bytes and a Styler's CSS travel inside their element) plus every media file the rerun
stored (images are sent by URL and fetched separately). The websocket framing and the
static JS bundle, the same for every page, are left out.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGES = (
    "overview", "confusion", "per_class", "mistakes", "overfitting", "thresholds",
    "calibration", "suspicious",
)  # fmt: skip
# Not timed here: compare needs two runs on one dataset, leakage the images themselves.
REPEATS = 3
GOAL_S = 1.0
GOAL_BYTES = 2_000_000


def page_bytes(at: Any, media: dict[str, int]) -> dict[str, int]:
    """Return {"elements": protobuf bytes of the page tree, "media": bytes of media files,
    "largest": the largest single element} of an AppTest after a run."""
    sizes = [
        len(node.proto.SerializeToString())
        for node in at._tree
        if getattr(node, "proto", None) is not None
    ]
    return {"elements": sum(sizes), "media": sum(media.values()), "largest": max(sizes)}


def _recording_media() -> dict[str, int]:
    """Make AppTest's media storage record what it stores; return {file id: bytes}."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.testing.v1 import app_test

    stored: dict[str, int] = {}

    class Recording(MemoryMediaFileStorage):
        def load_and_get_id(self, path_or_data: Any, *args: Any, **kwargs: Any) -> str:
            fid = super().load_and_get_id(path_or_data, *args, **kwargs)
            size = len(path_or_data) if isinstance(path_or_data, bytes) else 0
            stored[fid] = size
            return fid

    app_test.MemoryMediaFileStorage = Recording  # type: ignore[misc]
    return stored


def open_page(run_id: str, page: str) -> Any:
    """Return an AppTest of app.py switched to ``page`` with ``run_id`` in the URL."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params["run"] = run_id
    at.run()
    if page != "overview":
        at.switch_page(f"pages/{page}.py")
        at.run()
    return at


def time_pages(
    run_id: str, pages: tuple[str, ...] = PAGES, repeats: int = REPEATS
) -> dict[str, dict[str, float]]:
    """Return {page: {"first": s, "rerun": median s, "bytes": sent, ...}} for ``run_id``."""
    media = _recording_media()
    out: dict[str, dict[str, float]] = {}
    for page in pages:
        t0 = time.perf_counter()
        at = open_page(run_id, page)
        first = time.perf_counter() - t0
        if at.exception:
            raise RuntimeError(f"{page} raised: {at.exception[0].message}")
        times = []
        for _ in range(repeats):
            media.clear()
            t0 = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t0)
        sent = page_bytes(at, media)
        out[page] = {"first": first, "rerun": statistics.median(times),
                     "bytes": sent["elements"] + sent["media"], **sent}  # fmt: skip
    return out


def _isolate(store: Path) -> Callable[[], None]:
    """Point the app at ``store`` and keep it from evaluating the bundled sample there."""
    import core.engine.sample

    os.environ["CLASSLENS_RUNS_DIR"] = str(store / "runs")
    os.environ["CLASSLENS_CACHE_DIR"] = str(store / "cache")
    original = core.engine.sample.ensure_sample_runs
    core.engine.sample.ensure_sample_runs = lambda *a, **k: {}  # type: ignore[assignment]
    return lambda: setattr(core.engine.sample, "ensure_sample_runs", original)


def main(n_test: int = 50_000, n_classes: int = 1_000) -> int:
    """Print each page's first-open and rerun time and bytes sent, with the goal ratios."""
    sys.path.insert(0, str(ROOT))
    from bench import synthetic

    store = Path(os.environ.get("CLASSLENS_BENCH_STORE", tempfile.mkdtemp(prefix="cl-bench-")))
    run = synthetic.write_run(store / "runs", n_test=n_test, n_classes=n_classes)
    restore = _isolate(store)
    try:
        results = time_pages(run.run_id)
    finally:
        restore()
    print(f"dashboard on the synthetic run ({n_test:,} test images, {n_classes:,} classes): "
          f"first open, median of {REPEATS} reruns (goal < {GOAL_S} s), bytes sent")  # fmt: skip
    for page, r in results.items():
        print(f"  {page:<12} first {r['first']:6.2f} s  rerun {r['rerun'] * 1000:7.1f} ms "
              f"(ratio {r['rerun'] / GOAL_S:4.2f})  sent {r['bytes'] / 1e6:6.3f} MB "
              f"(largest element {r['largest'] / 1e6:.3f} MB)")  # fmt: skip
    worst = max(results, key=lambda p: results[p]["rerun"])
    sent = results["confusion"]["bytes"]
    print(f"slowest rerun: {worst} {results[worst]['rerun'] * 1000:.1f} ms, ratio to goal "
          f"{results[worst]['rerun'] / GOAL_S:.2f}")  # fmt: skip
    print(f"confusion page sends {sent / 1e6:.3f} MB: ratio to the 2 MB goal "
          f"{sent / GOAL_BYTES:.2f} ({'meets' if sent < GOAL_BYTES else 'MISSES'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
