"""The Robustness page through AppTest: the time estimate before starting, the derived runs
computed on the shared task pool, and every number shown (chart, mRCE, class drops, first
flips) equal to a hand loop with scikit-learn over the stored derived runs; a second visit
computes nothing; a hosted viewer sees stored results but cannot start new ones."""

from __future__ import annotations

import io
import json
import os
import re
import time
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, recall_score
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block

from core.analysis import robustness as rb
from core.engine import corruptions
from core.hosting import tasks
from core.images import robustness as derive
from core.images import robustness_worker as worker
from core.runs import Run, RunStore
from tests.app.conftest import ROOT, RecordingStorage, open_page

pytestmark = pytest.mark.slow

CHOSEN = ["blur", "gaussian_noise"]
LEVELS = [1, 3]
N = 60


def _settle(at: AppTest) -> AppTest:
    """Rerun while the shared tasks (the derived runs) are still computing."""
    for _ in range(600):
        if not len(at.get("progress")):
            return at
        time.sleep(0.5)
        at.run()
    raise AssertionError("the page kept computing")


def _choose(at: AppTest) -> AppTest:
    at.multiselect(key="rb_corruptions").set_value(CHOSEN)
    at.number_input(key="rb_sample").set_value(N)
    at.session_state["rb_severities"] = LEVELS
    at.run()
    assert not at.exception, at.exception
    return at


def _derived(run: Run) -> dict[tuple[str, int], Run]:
    store = RunStore(run.path.parent)
    out = {}
    for c in CHOSEN:
        for s in LEVELS:
            got = store.get(derive.derived_id(run, "test", c, s, sample=N, seed=0))
            assert got is not None, (c, s)
            out[(c, s)] = got
    return out


def _started() -> list[tuple]:
    """Return the page's robustness task keys kept or running (the computations it started)."""
    with tasks._LOCK:  # noqa: SLF001 - the test counts the computations the page started
        keys = [*tasks._RUNNING, *tasks._DONE]  # noqa: SLF001
    return [k for k in keys if isinstance(k, tuple) and k and k[0] == "robustness"]


def corruptions_view(run: Run, path: str, severity: int) -> np.ndarray:
    """Return blur at ``severity`` of ``path`` as the model saw it, enlarged 4x (32 px -> 128)."""
    arr = derive.corrupted_view(run, "test", path, "blur", severity)
    return np.repeat(np.repeat(arr, 4, axis=0), 4, axis=1)


def test_estimate_compute_and_numbers_equal_a_hand_loop(
    sample_runs: dict[str, Run], media: type[RecordingStorage]
) -> None:
    run = sample_runs["good"]
    tasks.clear()
    at = _choose(open_page("robustness", run))
    info = " ".join(i.value for i in at.info)
    assert f"4 of 4 (corruption, severity) runs are not computed yet: {4 * N:,} images" in info
    n_img, _ = derive.estimate(run, "test", N, CHOSEN, LEVELS)
    assert n_img == 4 * N
    _, secs, start = worker.estimate(RunStore(run.path.parent), run, "test", N, CHOSEN, LEVELS)
    assert f"about {secs:,.0f} s (incl. ~{start:,.0f} s to start)" in info
    assert not at.get("plotly_chart")  # nothing shown before starting

    at.button(key="rb_start").click().run()
    _settle(at)
    assert not at.exception, at.exception
    derived = _derived(run)

    # the hand loop: clean predictions of the same paths, scikit-learn accuracy per pair
    clean = run.predictions()
    clean = clean[clean["split"] == "test"].set_index("path")
    acc, clean_err, inc = {}, None, {}
    for (c, s), d in derived.items():
        p = d.predictions()
        base = clean.loc[p["path"]]
        assert (base["y_true"].to_numpy() == p["y_true"].to_numpy()).all()
        acc[(c, s)] = accuracy_score(p["y_true"], p["y_pred"])
        clean_err = 1 - accuracy_score(base["y_true"], base["y_pred"])
        inc.setdefault(c, []).append(1 - acc[(c, s)] - clean_err)
    m_rce = np.mean([np.mean(v) for v in inc.values()])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Clean accuracy"] == f"{1 - clean_err:.1%}"
    assert metrics["mRCE"] == f"{100 * m_rce:+.1f} points"
    hardest = max(inc, key=lambda c: np.mean(inc[c]))
    assert metrics["Hardest corruption"] == corruptions.corruption_label(hardest)

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    lines = {t["name"]: t for t in spec["data"]}
    assert lines[f"clean {1 - clean_err:.1%}"]["y"] == pytest.approx([1 - clean_err] * 2)
    for c in CHOSEN:
        trace = lines[corruptions.corruption_label(c)]
        assert trace["x"] == LEVELS
        assert trace["y"] == pytest.approx([acc[(c, s)] for s in LEVELS])

    # classes: mean over the four runs of each class's recall (scikit-learn)
    table = at.dataframe[1].value.set_index("class")  # after the RCE table
    k = len(run.class_names)
    recalls = np.mean(
        [
            recall_score(
                d.predictions()["y_true"],
                d.predictions()["y_pred"],
                labels=range(k),
                average=None,
                zero_division=0,
            )  # fmt: skip
            for d in derived.values()
        ],
        axis=0,
    )
    paths = derived[(CHOSEN[0], 1)].predictions()["path"]
    base = clean.loc[paths]
    clean_rec = recall_score(base["y_true"], base["y_pred"], labels=range(k), average=None)
    for i, name in enumerate(run.class_names):
        assert table.loc[name, "support"] == int((base["y_true"] == i).sum())
        assert table.loc[name, "corrupted_recall"] == pytest.approx(recalls[i])
        assert table.loc[name, "clean_recall"] == pytest.approx(clean_rec[i])
    drops = table["clean_recall"] - table["corrupted_recall"]
    assert (np.diff(drops.to_numpy()) <= 1e-12).all()  # largest drop first

    # first flips under the first stored corruption (blur): by hand over the two severities
    flipped = set()
    for s in LEVELS:
        p = derived[("blur", s)].predictions()
        flipped |= set(
            p["path"][p["y_pred"].to_numpy() != clean.loc[p["path"], "y_pred"].to_numpy()]
        )
    line = next(m.value for m in at.markdown if "change their prediction" in m.value)
    assert re.match(rf"\*\*{len(flipped):,} of {N:,} images\*\*", line), line
    zoom = [b.key for b in at.button if (b.key or "").startswith("rb_gallery_")]
    assert len(zoom) == min(len(flipped), 24)
    # the first card shows the first flip as the model saw it (corrupted, at its input size)
    first = rb.first_flips(rb.from_runs(run, list(derived.values())), "blur").iloc[0]
    seen = corruptions_view(run, first["path"], int(first["severity"]))
    url = next(i.url for e in at.image for i in e.proto.imgs)
    shown_px = np.asarray(Image.open(io.BytesIO(media.read(url))).convert("RGB"))
    # st.image sends an RGB PNG as JPEG (quality 90): encode what we expect the same way
    buf = io.BytesIO()
    Image.fromarray(seen).save(buf, format="JPEG", quality=90)
    assert np.array_equal(shown_px, np.asarray(Image.open(buf).convert("RGB")))

    # a second visit: everything stored, nothing started, nothing to compute
    assert len(_started()) == 1  # one computation (one child process) for the four runs
    tasks.clear()
    again = _choose(open_page("robustness", run))
    assert not any("not computed yet" in i.value for i in again.info)
    assert not again.get("progress")
    assert _started() == []
    assert {m.label: m.value for m in again.metric} == metrics

    # under the slice filter (true class 3 or 8): the same stored runs, only those images
    sliced = _choose(open_page("robustness", run, where="true class~in~3,8"))
    inside = base[base["y_true"].isin([run.class_names.index("3"), run.class_names.index("8")])]
    assert any(f"the {len(inside):,} sampled images inside it" in c.value for c in sliced.caption)
    shown = {m.label: m.value for m in sliced.metric}
    assert shown["Clean accuracy"] == f"{accuracy_score(inside['y_true'], inside['y_pred']):.1%}"
    assert _started() == []


@pytest.fixture()
def _hosted_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """app.py exports the secrets' hosted settings to os.environ: undo it after the test."""
    keep = ("CLASSLENS_RUNS_DIR", "CLASSLENS_CACHE_DIR")
    yield
    for name in [k for k in os.environ if k.startswith("CLASSLENS_") and k not in keep]:
        os.environ.pop(name)


def test_a_hosted_viewer_sees_stored_runs_but_cannot_start_new_ones(
    sample_runs: dict[str, Run], _hosted_env: None
) -> None:
    run = sample_runs["overfit"]
    tasks.clear()
    # one of the four pairs stored beforehand (as an editor's earlier visit would have)
    derive.corrupted_run(RunStore(run.path.parent), run, "test", "blur", 1, sample=N)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["classlens"] = {"hosted": True, "viewer_password": "viewer-secret-1"}
    at.query_params["run"] = run.run_id
    at.run()
    at.text_input[0].input("viewer-secret-1")
    at.button[0].click()
    at.run()
    at.switch_page("pages/robustness.py")
    at.run()
    _choose(at)
    assert not at.exception, at.exception
    assert not [b for b in at.button if b.key == "rb_start"]
    info = " ".join(i.value for i in at.info)
    assert "3 of 4 (corruption, severity) runs are not computed yet" in info
    assert "Only an editor can start them" in info
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["name"] for t in spec["data"]][1:] == [corruptions.corruption_label("blur")]
    assert _started() == []


def test_the_running_computation_takes_the_place_of_its_button(
    sample_runs: dict[str, Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the derived runs compute, their progress bar is drawn where the estimate and its
    "Compute them" button were (one slot): the button is gone, nothing moves. Every running
    rerun ends in st.rerun, so a bar elsewhere left the button on screen as long as it ran."""
    import threading

    import streamlit as st

    from core.hosting.tasks import Task
    from ui import tasks as ui_tasks

    run = sample_runs["imbalanced"]  # none of its derived runs stored by the tests above
    tasks.clear()
    at = _choose(open_page("robustness", run))
    main = at.main.children

    def place(kind: str) -> int:
        return next(
            i
            for i, n in main.items()
            if n.type == kind
            or getattr(n, "key", None) == kind
            or (isinstance(n, Block) and any(b.key == kind for b in n.button))
        )

    start = place("rb_start")
    n_before = len(main)
    reruns: list[str] = []  # the tasks a rerun was asked for (instead of a sleep and st.rerun)

    def rerun_if_pending(poll: float = 0) -> None:
        reruns.extend(st.session_state.pop(ui_tasks.PENDING_KEY, None) or [])

    monkeypatch.setattr("ui.tasks.rerun_if_pending", rerun_if_pending)
    gate = threading.Event()  # an editor's computation, held until the page has been read
    key = ("robustness", str(RunStore(run.path.parent).root), run.run_id, "test", N, 0)
    task: Task = tasks.submit(key, lambda: gate.wait(30), label="held")
    try:
        at.run()
        assert not at.exception, at.exception
        main = at.main.children
        assert place("progress") == start and len(main) == n_before
        assert "Evaluating corrupted copies (held)" in at.get("progress")[0].proto.text
        assert not [b for b in at.button if b.key == "rb_start"]
        assert not any("not computed yet" in i.value for i in at.info)
        assert reruns == ["held"]
    finally:
        gate.set()
    assert task.wait(10)
    tasks.clear()  # nothing was stored: the estimate and its button again, in the same place
    at.run()
    assert not at.exception, at.exception
    main = at.main.children
    assert place("rb_start") == start and not at.get("progress")
    assert _started() == []
