"""The shapes of the run store's JSON files, as types: metrics.json and meta.json.

metrics.json is the contract scripts and CI gate on (DESIGN.md "Contracts"); meta.json says how a
run was made. Both are plain dicts on disk and in memory; these TypedDicts only let mypy check
every reader and writer against one description. Changing a key here is changing the contract.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Averages(TypedDict):
    """Macro or support-weighted averages over classes."""

    precision: float
    recall: float
    f1: float


# "class" is a keyword, hence the functional form.
ClassMetrics = TypedDict(
    "ClassMetrics",
    {
        "class": str,
        "precision": float,
        "recall": float,
        "f1": float,
        "support": int,
        "specificity": float,
        "absent": NotRequired[bool],  # the dataset has no folder for this class (support 0)
    },
)


class SplitMetrics(TypedDict):
    """One entry of metrics.json["splits"] (core.analysis.metrics.split_report)."""

    n: int
    accuracy: float
    balanced_accuracy: float
    macro: Averages
    weighted: Averages
    mcc: float
    kappa: float
    top3_accuracy: NotRequired[float]  # with probabilities and more than 3 classes
    top5_accuracy: NotRequired[float]  # with probabilities and more than 5 classes
    per_class: list[ClassMetrics]  # one per class, in metrics.json["classes"] order
    confusion_matrix: list[list[int]]  # rows true, columns predicted
    skipped: list[str]  # unreadable files, relative to the dataset root or split folder


class MetricsJson(TypedDict):
    """metrics.json."""

    classes: list[str]
    splits: dict[str, SplitMetrics]  # train / val / test, those present


class CheckpointMeta(TypedDict):
    name: str
    path: str
    sha256: str
    format: str  # a core.engine.models format name
    trusted: bool


class DatasetMeta(TypedDict):
    root: str
    fingerprint: str
    splits: dict[str, int]  # images per split
    split_dirs: NotRequired[dict[str, str]]  # prediction paths are relative to these


class FileNote(TypedDict):
    split: str
    path: str
    reason: str


class MetaJson(TypedDict, total=False):
    """meta.json (core.engine.evaluate writes it, core.runs adds the store's fields)."""

    created: str  # ISO 8601, UTC
    checkpoint: CheckpointMeta
    architecture: str | None
    class_names: list[str]
    absent_classes: list[str]  # the checkpoint's classes with no dataset folder (names)
    preprocessing: dict[str, Any]  # core.engine.preprocessing.Preprocessing.to_dict()
    preprocessing_source: dict[str, str]  # field -> declared | read | probed | typed | default
    probe: dict[str, Any]
    preprocessing_note: str
    dataset: DatasetMeta
    skipped: list[FileNote]  # unreadable files
    warnings: list[FileNote]  # decoded but suspicious images
    facts: dict[str, Any]  # settings decided beyond the weights, each with its evidence
    device: str
    batch_size: int
    precision: str  # fp32 | bf16 | fp16
    compile: bool
    timings: dict[str, float]
    versions: dict[str, str]
    n_predictions: int  # written by the run store
    format_version: int  # written by the run store
    predictions_bytes: int
    slice: dict[str, Any]  # a Run.subset: label, n, of, n_by_split, of_by_split, parent
    # A derived run (core.images.robustness): the clean run it re-evaluates, on which split,
    # under which corruption (core.engine.corruptions) and severity, on which images.
    derived_from: str
    split: str
    corruption: str
    severity: int
    sample: int | None  # images sampled (stratified), None: the whole split
    seed: int
