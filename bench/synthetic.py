"""A synthetic run of any size (ImageNet-sized by default), written through ``core.runs``.

No model and no images: predictions are drawn so they look like a real classifier's. Each
class has its own accuracy (most near the target, a few much worse), a wrong prediction goes
mostly to one of a few fixed neighbour classes (as "husky" goes to "malamute"), and the
probability vectors are the softmax of logits where the predicted class leads and the true
class is usually runner-up. The stored ``y_pred`` is the argmax of the stored probabilities,
``confidence`` their maximum and ``loss`` the cross-entropy, as core.engine.inference writes them;
metrics.json comes from ``core.analysis.metrics.split_report`` like a real evaluation's.

``python -m bench.synthetic [n_test] [n_classes]`` writes one into ``$CLASSLENS_RUNS_DIR``.
Tests import :func:`write_run` with small sizes.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core import runs
from core.analysis import metrics

NOUNS = (
    "tench", "goldfish", "shark", "hen", "ostrich", "finch", "robin", "eagle", "owl", "newt",
    "frog", "turtle", "gecko", "iguana", "snake", "spider", "crab", "lobster", "heron",
    "pelican", "penguin", "whale", "husky", "malamute", "beagle", "terrier", "poodle", "wolf",
    "fox", "tabby", "tiger", "lion", "bear", "beetle", "ant", "bee", "butterfly", "rabbit",
    "hamster", "zebra", "pig", "ox", "ram", "ape", "lemur", "panda", "canoe", "kimono", "mug",
    "piano", "radio", "tractor", "volcano", "daisy", "acorn", "pizza", "bagel", "pretzel",
)  # fmt: skip
NEIGHBOURS = 3  # classes a class is mostly confused with
CHUNK = 4096  # rows drawn at a time: bounds the float64 temporaries to ~30 MB per 1,000 classes


def class_names(n_classes: int) -> list[str]:
    """Return ``n_classes`` distinct readable names, e.g. "husky 022"."""
    width = len(str(n_classes - 1))
    return [f"{NOUNS[i % len(NOUNS)]} {i:0{width}d}" for i in range(n_classes)]


def draw_split(
    n: int, n_classes: int, *, accuracy: float, rng: np.random.Generator, hard: np.ndarray
) -> dict[str, np.ndarray]:
    """Return y_true, y_pred, confidence, loss (n,) and probs (n, n_classes) float32.

    hard: (n_classes,) bool, the classes recognised much worse than the rest.
    """
    k = n_classes
    y_true = rng.integers(0, k, n)
    # Per-class accuracy: near the target, much lower for the hard classes; the easy ones
    # are raised so the mean stays near ``accuracy``.
    class_acc = np.clip(rng.normal(accuracy, 0.08, k), 0.05, 0.99)
    class_acc[hard] = rng.uniform(0.15, 0.45, int(hard.sum()))
    class_acc[~hard] += max(0.0, accuracy - class_acc.mean()) * k / max(1, (~hard).sum())
    class_acc = np.clip(class_acc, 0.05, 0.99)
    neighbours = (np.arange(k)[:, None] + np.arange(1, NEIGHBOURS + 1)[None, :]) % k
    right = rng.random(n) < class_acc[y_true]
    to_neighbour = rng.random(n) < 0.8
    target = np.where(
        right,
        y_true,
        np.where(
            to_neighbour,
            neighbours[y_true, rng.integers(0, NEIGHBOURS, n)],
            (y_true + rng.integers(1, k, n)) % k,  # any other class
        ),
    )
    probs = np.empty((n, k), np.float32)
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        rows = np.arange(hi - lo)
        z = rng.standard_normal((hi - lo, k), dtype=np.float32)
        z[rows, target[lo:hi]] += rng.uniform(3.0, 9.0, hi - lo).astype(np.float32)
        wrong = ~right[lo:hi]
        z[rows[wrong], y_true[lo:hi][wrong]] += rng.uniform(1.0, 4.0, int(wrong.sum())).astype(
            np.float32
        )
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        probs[lo:hi] = z
    y_pred = probs.argmax(axis=1)
    p_true = probs[np.arange(n), y_true]
    return {
        "y_true": y_true.astype(np.int64),
        "y_pred": y_pred.astype(np.int64),
        "confidence": probs.max(axis=1) if n else np.zeros(0, np.float32),
        "loss": -np.log(np.maximum(p_true, np.float32(1e-12))).astype(np.float32),
        "probs": probs,
    }


def write_run(
    runs_dir: str | Path,
    *,
    n_test: int = 50_000,
    n_classes: int = 1_000,
    n_train: int | None = None,
    accuracy: float = 0.75,
    seed: int = 0,
) -> runs.Run:
    """Return a synthetic run of ``n_test`` test and ``n_train`` (default n_test // 5) train
    images over ``n_classes`` classes, from the store when the same one exists already."""
    n_train = n_test // 5 if n_train is None else n_train
    names = class_names(n_classes)
    params = f"synthetic:{n_test}:{n_train}:{n_classes}:{accuracy}:{seed}"
    sha = hashlib.sha256(params.encode()).hexdigest()
    prep = {"image_size": 224, "channels": 3, "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225], "resize": "center_crop"}  # fmt: skip
    fingerprint = sha[:32]
    rid = runs.run_id(
        checkpoint_sha256=sha, dataset_fingerprint=fingerprint, preprocessing=prep,
        class_names=names,
    )  # fmt: skip
    store = runs.RunStore(runs_dir)
    cached = store.get(rid)
    if cached is not None:
        return cached

    rng = np.random.default_rng(seed)
    hard = rng.random(n_classes) < 0.05
    root = Path(runs_dir).resolve().parent / f"synthetic-{n_classes}"
    # The train split is recognised better: the Overfitting page has a gap to show.
    parts = {
        "train": draw_split(n_train, n_classes, accuracy=min(0.97, accuracy + 0.15), rng=rng,
                            hard=hard),
        "test": draw_split(n_test, n_classes, accuracy=accuracy, rng=rng, hard=hard),
    }  # fmt: skip
    parts = {s: d for s, d in parts.items() if len(d["y_true"])}
    split_col: list[str] = []
    path_col: list[str] = []
    for s, d in parts.items():
        split_col += [s] * len(d["y_true"])
        path_col += [f"{names[c]}/{s}_{i:06d}.jpg" for i, c in enumerate(d["y_true"])]
    cat = {key: np.concatenate([d[key] for d in parts.values()]) for key in parts["test"]}
    table = runs.predictions_table(
        split=split_col, path=path_col, y_true=cat["y_true"], y_pred=cat["y_pred"],
        confidence=cat["confidence"], loss=cat["loss"], probs=cat["probs"],
    )  # fmt: skip
    report = {
        "classes": names,
        "splits": {
            s: metrics.split_report(d["y_true"], d["y_pred"], class_names=names, probs=d["probs"])
            for s, d in parts.items()
        },
    }
    meta = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "checkpoint": {"name": f"synthetic-{n_classes}.safetensors", "path": "", "sha256": sha,
                       "format": "synthetic", "trusted": False},
        "architecture": "synthetic",
        "class_names": names,
        "preprocessing": prep,
        "dataset": {
            "root": str(root),
            "fingerprint": fingerprint,
            "splits": {s: int(len(d["y_true"])) for s, d in parts.items()},
            "split_dirs": {s: str(root / s) for s in parts},  # no images: thumbnails are blank
        },
        "skipped": [],
        "device": "none (synthetic predictions)",
        "synthetic": params,
    }  # fmt: skip
    return store.write(rid, table, meta, report)


def main() -> int:
    """Write (or find) a synthetic run in the default store and print its folder."""
    args = [int(a) for a in sys.argv[1:3]]
    run = write_run(runs.RunStore().root, **dict(zip(("n_test", "n_classes"), args, strict=False)))
    test = run.metrics["splits"]["test"]
    print(f"{run.path}  test accuracy {test['accuracy']:.3f}, {len(run.class_names)} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
