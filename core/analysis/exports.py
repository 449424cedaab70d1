"""The data behind a view as a plain table, for its CSV/JSON download (ui.downloads.offer).

Only reshaping of numbers core already computed: class indices become class names, arrays
become columns. No streamlit, no I/O. :func:`csv_bytes` is the one CSV writer every download
uses: class names, file paths and checkpoint names come from users, and a spreadsheet runs a
cell that starts like a formula.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from core.analysis.calibration import Reliability
from core.analysis.thresholds import ClassCurves

# OWASP CSV injection: a cell starting with one of these is a formula to Excel, LibreOffice
# and Google Sheets (tab and CR too, which some strip before parsing).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """Return ``value`` with a leading ``'`` when it is text that starts like a formula (the
    OWASP rule: the spreadsheet then shows the text as typed); anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_bytes(table: pd.DataFrame, *, index: bool = False) -> bytes:
    """Return ``table`` as UTF-8 CSV with every text cell and header neutralised and quoted
    (numbers, negative ones included, stay bare numbers); ``index`` writes the index first."""
    out = table.reset_index() if index else table.copy()
    out.columns = [neutralise(str(c)) for c in out.columns]
    for i in range(out.shape[1]):
        col = out.iloc[:, i]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            out.isetitem(i, col.astype(object).map(neutralise))
    # Text always quoted (OWASP), so a CR or separator inside a name cannot start a new cell.
    return out.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC).encode()


def matrix_table(cm: Any, class_names: Sequence[str]) -> pd.DataFrame:
    """Return the confusion matrix as a table: a "true" column with the class names, then one
    column of counts per predicted class (rows true, columns predicted, as metrics.json)."""
    names = [str(c) for c in class_names]
    table = pd.DataFrame(np.asarray(cm, dtype=np.int64), index=names, columns=names)
    return table.rename_axis("true").reset_index()


def pairs_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """Return confusion.most_confused_pairs without its class-index columns (the names and
    counts a reader of the file wants)."""
    return pairs.drop(columns=["true_idx", "pred_idx"], errors="ignore")


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
