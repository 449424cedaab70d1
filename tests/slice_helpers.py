"""A stored run over real image files without a model: predictions chosen by the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from core import runs
from core.analysis import metrics


def image_run(
    root: Path,
    store: Path,
    files: dict[str, Image.Image],
    *,
    y_true: list[int],
    y_pred: list[int],
    class_names: tuple[str, ...] = ("a", "b"),
    rid: str = "0123456789abcdef",
) -> runs.Run:
    """Write ``files`` (root-relative path -> image) and a run predicting them as given.

    Paths look like ``test/<class>/.../name.png``; the split is the first part.
    """
    for rel, image in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / rel)
    splits = [rel.split("/")[0] for rel in files]
    paths = ["/".join(rel.split("/")[1:]) for rel in files]
    k = len(class_names)
    probs = np.full((len(files), k), 0.1 / max(k - 1, 1), dtype=np.float32)
    probs[np.arange(len(files)), y_pred] = 0.9
    table = runs.predictions_table(
        split=splits,
        path=paths,
        y_true=np.asarray(y_true),
        y_pred=np.asarray(y_pred),
        confidence=probs.max(axis=1),
        loss=-np.log(probs[np.arange(len(files)), y_true]),
        probs=probs,
    )
    by_split = {}
    for s in sorted(set(splits)):
        rows = [i for i, x in enumerate(splits) if x == s]
        by_split[s] = metrics.split_report(
            np.asarray(y_true)[rows], np.asarray(y_pred)[rows], class_names=class_names
        )
    report = {"classes": list(class_names), "splits": by_split}
    meta = {
        "created": "2026-01-01T00:00:00+00:00",
        "class_names": list(class_names),
        "dataset": {
            "root": str(root.resolve()),
            "split_dirs": {s: str((root / s).resolve()) for s in set(splits)},
        },
    }
    return runs.RunStore(store).write(rid, table, meta, report)
