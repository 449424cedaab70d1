"""The "All runs" page lists every stored run with the numbers of its metrics.json."""

from __future__ import annotations

from core.runs import Run
from tests.app.conftest import open_page


def test_runs_page_lists_the_sample_runs_with_their_metrics(sample_runs: dict[str, Run]) -> None:
    at = open_page("runs", sample_runs["good"])
    df = at.dataframe[0].value
    assert {"good.safetensors", "overfit.safetensors", "imbalanced.safetensors"} <= set(
        df["checkpoint"]
    )
    for run in sample_runs.values():
        for split, m in run.metrics["splits"].items():
            shown = df[(df.run == run.run_id) & (df.split == split)]
            assert shown["accuracy"].item() == m["accuracy"]
            assert shown["balanced accuracy"].item() == m["balanced_accuracy"]
            assert shown["images"].item() == m["n"]
