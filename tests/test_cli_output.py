"""The CLI's output carries no terminal control sequences, whatever the names it prints."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from conftest import cli_inprocess

from core.runs import RunStore

EVIL = "ok\x1b]0;pwned\x07\x1b[2J\x1b[31mred\r\x08\x9bname"


def _store_with_evil_name(root: Path) -> None:
    table = pa.table(
        {
            "split": ["test"],
            "path": [f"{EVIL}/a.png"],
            "y_true": [0],
            "y_pred": [0],
            "confidence": [1.0],
            "loss": [0.0],
            "probs": [[1.0]],
        }
    )
    m = {"n": 1, "accuracy": 1.0, "balanced_accuracy": 1.0, "macro": {"f1": 1.0}}
    meta = {"checkpoint": {"name": EVIL}, "class_names": [EVIL]}
    RunStore(root).write("r" * 16, table, meta, {"classes": [EVIL], "splits": {"test": m}})


def test_runs_listing_strips_terminal_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_with_evil_name(tmp_path / "runs")
    proc = cli_inprocess(capsys, "runs", "--runs-dir", tmp_path / "runs")
    assert proc.returncode == 0, proc.stderr
    assert "ok]0;pwned[2J[31mred" in proc.stdout  # printable characters kept, controls gone
    for ch in "\x1b\x07\x08\x9b":
        assert ch not in proc.stdout + proc.stderr
    assert "\r" not in proc.stdout


def test_error_lines_strip_terminal_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = cli_inprocess(
        capsys, "evaluate", "--checkpoint", tmp_path / f"{EVIL}.pt", "--data", tmp_path
    )
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "pwned" in proc.stderr
    for ch in "\x1b\x07\x08\x9b\r":
        assert ch not in proc.stderr


def test_progress_bar_keeps_its_carriage_return(capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from core.__main__ import _Printable

    out = _Printable(sys.stdout)
    out.write("\r 3/10 images")
    out.write("\rname\x1b[2Jx")
    assert capsys.readouterr().out == "\r 3/10 images\rname[2Jx"
