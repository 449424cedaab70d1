"""Compare with run and class names that look like markdown: the conclusion, the counts, the
choices and the cards show them as typed (escaped), the tables as plain text."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from core.runs import Run, RunStore
from tests.app.conftest import open_page
from ui.gallery import md_escape
from ui.state import list_runs

pytestmark = pytest.mark.slow

RUN_NAMES = ("[x](http://e)", "**b**")  # a link and bold, as checkpoint file stems
CLASSES = [f"**c{d}**" if d % 2 == 0 else f"[c{d}](http://e)" for d in range(10)]


@pytest.fixture
def markup_runs(sample_runs: dict[str, Run]) -> Iterator[list[Run]]:
    """Return copies of the good and overfit sample runs whose checkpoints are named
    RUN_NAMES and whose digit classes are renamed CLASSES; removed afterwards."""
    copies = []
    for source, name, rid in (
        (sample_runs["good"], RUN_NAMES[0], "m0arkup00000000a"),
        (sample_runs["overfit"], RUN_NAMES[1], "m0arkup00000000b"),
    ):
        path = source.path.parent / rid
        shutil.copytree(source.path, path)
        meta = json.loads((path / "meta.json").read_text())
        meta["checkpoint"]["name"] = f"{name}.safetensors"
        meta["class_names"] = CLASSES
        metrics = json.loads((path / "metrics.json").read_text())
        assert metrics["classes"] == [str(d) for d in range(10)], "the digits sample"
        metrics["classes"] = CLASSES
        for split in metrics["splits"].values():
            for row in split["per_class"]:
                row["class"] = CLASSES[int(row["class"])]
        (path / "meta.json").write_text(json.dumps(meta))
        (path / "metrics.json").write_text(json.dumps(metrics))
        copies.append(path)
    list_runs.clear()
    store = RunStore(sample_runs["good"].path.parent)
    try:
        runs = [store.get(p.name) for p in copies]
        assert all(runs)
        yield runs  # type: ignore[misc]
    finally:
        for path in copies:
            shutil.rmtree(path)
        list_runs.clear()


def _main_text(at: AppTest) -> list[str]:
    """Return every string the page's main area renders as markdown."""
    kinds = ("markdown", "caption", "error", "warning", "info", "success", "subheader")
    return [str(el.value) for kind in kinds for el in at.main.get(kind)]


def _raw(text: str, name: str) -> bool:
    """Return whether ``name`` appears in ``text`` other than markdown-escaped."""
    return name in text.replace(md_escape(name), "")


def test_conclusion_and_cards_show_markup_names_as_typed(markup_runs: list[Run]) -> None:
    good, overfit = markup_runs
    at = open_page("compare", good)
    at.multiselect(key="cmp_runs").set_value([good.run_id, overfit.run_id]).run()
    assert not at.exception, at.exception
    link, bold = (md_escape(n) for n in RUN_NAMES)

    boxes = [e.value for e in (*at.success, *at.warning, *at.info)]
    verdict = next(v for v in boxes if "on accuracy by" in v)
    assert verdict.startswith(f"{bold} is worse than {link} on accuracy by"), verdict
    assert "Per class, where the 95% interval excludes 0:" in verdict
    assert any(f"'{md_escape(c)}'" in verdict for c in CLASSES), verdict

    texts = _main_text(at)
    assert any(t.endswith(f"images right in {link}, wrong in {bold}") for t in texts), texts
    for name in (*RUN_NAMES, *CLASSES):
        leaks = [t for t in texts if _raw(t, name)]
        assert not leaks, (name, leaks)
    choices = at.segmented_control(key="cmp_flip_dir").options
    assert all(link in c and bold in c for c in choices), choices

    # tables are plain text: the names as they are
    overall = at.dataframe[0].value
    assert overall["model"].tolist() == list(RUN_NAMES)
    assert at.dataframe[1].value["class"].tolist() == CLASSES
