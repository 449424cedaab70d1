"""The Embedding map page at 50,000 points: rerun time and bytes sent, before and with a selection.

``python -m bench.embedding_map [n_test] [n_classes] [accuracy]`` writes a synthetic run
(bench/synthetic.py) into a private store with made-up embeddings (class centres plus noise,
float16, as core.images.embeddings caches them), so no model or image is needed; the page's
map is computed once (PCA, timed as "first open") and then each rerun is timed (median of
REPEATS). Bytes sent are counted as bench/dashboard.py counts them (every element's protobuf
plus media). With ``accuracy`` 0.75 a quarter of the images are mistakes, all drawn.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 3
GOAL_S, GOAL_BYTES = 1.0, 2_000_000
DIM = 64


def _fake_embeddings(run, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    y = run.predictions()["y_pred"].to_numpy()
    centres = rng.normal(size=(int(y.max()) + 1, DIM)) * 2
    emb = centres[y] + rng.normal(size=(len(y), DIM))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    with open(Path(run.path) / "embeddings.npy", "wb") as f:
        np.save(f, emb.astype(np.float16), allow_pickle=False)


def main(n_test: int = 50_000, n_classes: int = 100, accuracy: float = 0.75) -> int:
    """Print first-open and rerun time and bytes of the map, without and with a selection."""
    sys.path.insert(0, str(ROOT))
    from bench import dashboard, synthetic

    store = Path(os.environ.get("CLASSLENS_BENCH_STORE", tempfile.mkdtemp(prefix="cl-map-")))
    run = synthetic.write_run(store / "runs", n_test=n_test, n_classes=n_classes, accuracy=accuracy)
    _fake_embeddings(run)
    restore = dashboard._isolate(store)
    media = dashboard._recording_media()
    rows = []
    try:
        t0 = time.perf_counter()
        at = dashboard.open_page(run.run_id, "embedding_map")
        while len(at.get("progress")):
            time.sleep(0.2)
            at.run()
        first = time.perf_counter() - t0
        coords = np.load(Path(run.path) / "projection-pca-0.npy")
        x0, x1 = np.nanpercentile(coords[:, 0], [40, 60])
        y0, y1 = np.nanpercentile(coords[:, 1], [40, 60])
        box = {"box": [{"x": [float(x0), float(x1)], "y": [float(y0), float(y1)]}]}
        for label, selection in (("no selection", None), ("box selection", box)):
            if selection is not None:
                at.session_state["em_map"] = {"selection": {"points": [], **selection}}
            times = []
            for _ in range(REPEATS):
                media.clear()
                t0 = time.perf_counter()
                at.run()
                times.append(time.perf_counter() - t0)
            if at.exception:
                raise RuntimeError(at.exception[0].message)
            sent = dashboard.page_bytes(at, media)
            rows.append((label, statistics.median(times), sent))
    finally:
        restore()
    n_wrong = int((run.predictions()["y_true"] != run.predictions()["y_pred"]).sum())
    print(
        f"embedding map, synthetic run: {n_test:,} test images, {n_classes} classes, "
        f"{n_wrong:,} mistakes; first open (embeddings read, PCA) {first:.2f} s"
    )
    for label, rerun, sent in rows:
        total = sent["elements"] + sent["media"]
        print(
            f"  {label:<14} rerun {rerun * 1000:7.1f} ms (ratio {rerun / GOAL_S:.2f})  "
            f"sent {total / 1e6:.3f} MB (ratio {total / GOAL_BYTES:.2f}; largest element "
            f"{sent['largest'] / 1e6:.3f} MB)"
        )
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    raise SystemExit(
        main(
            int(args[0]) if args else 50_000,
            int(args[1]) if len(args) > 1 else 100,
            float(args[2]) if len(args) > 2 else 0.75,
        )
    )
