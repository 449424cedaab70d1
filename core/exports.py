"""The data behind a view as a plain table, for its CSV/JSON download (ui.downloads.offer).

Only reshaping of numbers core already computed: class indices become class names, arrays
become columns. No streamlit, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.calibration import Reliability
from core.thresholds import ClassCurves


def images_table(rows: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Return prediction rows (split, path, y_true, y_pred, confidence, loss) with the class
    names beside the indices: split, path, true, predicted, confidence, loss, y_true, y_pred."""
    names = np.asarray(class_names, dtype=object)
    out = pd.DataFrame(
        {
            "split": rows["split"].to_numpy(),
            "path": rows["path"].to_numpy(),
            "true": names[rows["y_true"].to_numpy()],
            "predicted": names[rows["y_pred"].to_numpy()],
            "confidence": rows["confidence"].to_numpy(np.float64),
            "loss": rows["loss"].to_numpy(np.float64),
            "y_true": rows["y_true"].to_numpy(),
            "y_pred": rows["y_pred"].to_numpy(),
        }
    )
    return out


def curve_table(curves: ClassCurves) -> pd.DataFrame:
    """Return one row per distinct threshold, highest first: threshold, tp, fp, precision,
    recall, false_positive_rate (the points of the PR and ROC curves)."""
    return pd.DataFrame(
        {
            "threshold": curves.thresholds.astype(np.float64),
            "tp": curves.tp,
            "fp": curves.fp,
            "precision": curves.precision[1:],
            "recall": curves.recall[1:],
            "false_positive_rate": curves.fpr[1:],
        }
    )


def reliability_table(rel: Reliability) -> pd.DataFrame:
    """Return one row per confidence bin: low, high, images, mean_confidence, accuracy, gap."""
    return pd.DataFrame(
        {
            "low": rel.edges[:-1],
            "high": rel.edges[1:],
            "images": rel.count,
            "mean_confidence": rel.confidence,
            "accuracy": rel.accuracy,
            "gap": rel.gap,
        }
    )
