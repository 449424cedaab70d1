"""Map selections as a slice-filter condition: stored once in the run folder (core.selections),
named in ``?where=`` by a short id (core.analysis.where), selecting exactly the chosen images."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import selections
from core.analysis import where
from core.analysis.metrics import split_report
from core.analysis.where import SELECTED, SELECTION, Condition, Where
from core.runs import Run, RunStore, predictions_table

NAMES = ["a", "b", "c"]


def _run(runs_dir: Path, n: int = 300, seed: int = 0) -> Run:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, n)
    probs = rng.dirichlet(np.ones(3), n).astype(np.float32)
    y_pred = probs.argmax(1)
    split = rng.choice(["train", "test"], n)
    table = predictions_table(
        split=split.tolist(),
        path=[f"c{t}/{i:05d}.png" for i, t in enumerate(y_true)],
        y_true=y_true,
        y_pred=y_pred,
        confidence=probs.max(1),
        loss=-np.log(probs[np.arange(n), y_true]),
        probs=probs,
    )
    meta = {"dataset": {"root": "/nowhere"}, "absent_classes": [], "skipped": []}
    report = {
        "classes": NAMES,
        "splits": {
            s: split_report(y_true[split == s], y_pred[split == s], class_names=NAMES)
            for s in ("train", "test")
        },
    }
    return RunStore(runs_dir).write(f"sel{seed:013d}", table, meta, report)


def test_the_id_is_the_count_and_a_hash_of_the_sorted_keys() -> None:
    keys = ["test/b.png", "train/a.png", "test/a.png"]
    digest = hashlib.sha256(b"test/a.png\ntest/b.png\ntrain/a.png").hexdigest()[:12]
    assert selections.selection_id(keys) == f"3-{digest}"
    assert selections.selection_id(reversed(keys)) == selections.selection_id(keys)


def test_saved_selection_masks_exactly_the_selected_rows(runs_dir: Path) -> None:
    run = _run(runs_dir)
    rng = np.random.default_rng(1)
    chosen = rng.random(len(run.predictions())) < 0.2
    sid = selections.save(run, chosen)
    assert sid.startswith(f"{chosen.sum()}-")
    stored = json.loads((run.path / "selections" / f"{sid}.json").read_text())
    p = run.predictions()
    want = sorted((p["split"] + "/" + p["path"])[chosen])
    assert stored["keys"] == want
    # the same images again: the same id, nothing rewritten
    assert selections.save(run, np.flatnonzero(chosen)) == sid
    assert [f.name for f in (run.path / "selections").iterdir()] == [f"{sid}.json"]

    text = where.to_query(Where((Condition(SELECTION, SELECTED, sid),)))
    assert text == f"selection~sel~{sid}"
    w = where.parse(text)
    columns = pd.DataFrame({"split": p["split"], "confidence": p["confidence"]})
    got = where.mask(w, columns, selections={sid: selections.rows(run, sid)})
    np.testing.assert_array_equal(got, chosen)
    # ANDed with a column condition: the selected rows that also meet it
    w2 = where.parse(f"split~is~test;{text}")
    got2 = where.mask(w2, columns, selections={sid: selections.rows(run, sid)})
    np.testing.assert_array_equal(got2, chosen & (p["split"] == "test").to_numpy())
    assert where.describe(w2) == f"split is test and {chosen.sum():,} images selected on the map"
    assert w2.columns() == ["split"] and w2.selections() == [sid]


def test_a_slice_of_the_run_stores_in_the_parent_and_reads_its_own_rows(runs_dir: Path) -> None:
    run = _run(runs_dir)
    test = (run.predictions()["split"] == "test").to_numpy()
    sliced = run.subset(test, "split is test")
    pick = np.zeros(len(sliced.predictions()), dtype=bool)
    pick[::3] = True
    sid = selections.save(sliced, pick)
    assert (run.path / "selections" / f"{sid}.json").exists()
    np.testing.assert_array_equal(selections.rows(sliced, sid), pick)
    on_parent = selections.rows(run, sid)
    np.testing.assert_array_equal(np.flatnonzero(on_parent), np.flatnonzero(test)[::3])


@pytest.mark.parametrize(
    "text, message",
    [
        ("selection~sel~abc", "A map selection is written selection~sel~<n>-<12 hex digits>"),
        ("other~sel~3-0123456789ab", "A map selection is written"),
        ("selection~sel~0-0123456789ab", "A map selection is written"),
    ],
    ids=["bad id", "other column", "empty"],
)
def test_a_malformed_selection_in_a_link_is_refused_with_a_fix(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        where.parse(text)
    assert where.FIX in str(caught.value)


def test_a_selection_the_run_does_not_have_is_named_with_what_to_do(runs_dir: Path) -> None:
    run = _run(runs_dir)
    with pytest.raises(selections.SelectionNotFound, match="is not stored with this run"):
        selections.rows(run, "5-0123456789ab")
    # a file that does not hold the images its name says
    sid = selections.save(run, np.arange(4))
    path = run.path / "selections" / f"{sid}.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "keys": data["keys"][:3]}))
    with pytest.raises(selections.SelectionNotFound, match="do not match its id"):
        selections.rows(run, sid)
    path.write_text("{not json")
    with pytest.raises(selections.SelectionNotFound, match="could not be read"):
        selections.rows(run, sid)
    # mask without the selection's rows says so instead of keeping everything
    with pytest.raises(ValueError, match="were not found for this run"):
        where.mask(where.parse(f"selection~sel~{sid}"), run.predictions()[["split"]])


def test_an_empty_selection_is_not_stored(runs_dir: Path) -> None:
    run = _run(runs_dir)
    with pytest.raises(ValueError, match="holds no image"):
        selections.save(run, np.zeros(len(run.predictions()), dtype=bool))
    assert not (run.path / "selections").exists()


def test_only_the_newest_selections_are_kept(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run(runs_dir)
    monkeypatch.setattr(selections, "MAX_STORED", 3)
    ids = []
    for i in range(5):
        ids.append(selections.save(run, np.arange(i + 1)))
        path = run.path / "selections" / f"{ids[-1]}.json"
        os.utime(path, ns=(i * 10**9, i * 10**9))  # distinct, ordered times on any filesystem
    selections._prune(run.path / "selections")
    kept = sorted(f.stem for f in (run.path / "selections").glob("*.json"))
    assert kept == sorted(ids[2:])
    with pytest.raises(selections.SelectionNotFound, match="not stored"):
        selections.rows(run, ids[0])
