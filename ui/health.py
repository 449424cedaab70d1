"""Overview's health checklist: core.analysis.health's summary, its inputs (core.images.checkup)
cached here.

Cheap checks run on open, cached per run and split: calibration bins, suspicious labels and,
when the run's pHash cache exists or the run is small, pixel leakage. Costly ones (pHash of a
large run, model embeddings) show "not computed yet" with a button and never block the page:
asked for, they run on core.hosting.tasks (shared with the Leakage page, keyed by run) while
the page shows their progress and reruns until they are done.
"""

from __future__ import annotations

import streamlit as st

from core.analysis import calibration, failure_clusters, health, slices
from core.analysis.diagnostics import Thresholds
from core.hosting import tasks
from core.images import checkup, embeddings, leakage, properties
from core.runs import Run
from ui import tasks as ui_tasks
from ui.alerts import verdict_box
from ui.gallery import md_names
from ui.state import load_run

REQUESTS = "hl_requests"  # {(kind, run_id)}: costly checks the user asked for
ERRORS = "hl_errors"  # {(kind, run_id): message}: checks this run cannot have
OVERVIEW = "pages/overview.py"
ICONS = {
    "pass": ":green[:material/check_circle:]",
    "attention": ":orange[:material/warning:]",
    "fail": ":red[:material/dangerous:]",
    health.NOT_COMPUTED: ":gray[:material/hourglass_empty:]",
    health.NOT_AVAILABLE: ":gray[:material/block:]",
}


def _run(run_id: str) -> Run:
    run = load_run(run_id)
    assert run is not None, f"run {run_id} disappeared"
    return run


@st.cache_data(max_entries=64, show_spinner=False)
def _reliability(run_id: str, split: str) -> calibration.Reliability:
    return checkup.reliability(_run(run_id), split)


@st.cache_data(max_entries=64, show_spinner=False)
def _suspicious(run_id: str, split: str) -> int:
    return checkup.suspicious_count(_run(run_id), split)


@st.cache_data(max_entries=64, show_spinner=False)
def _segments(run_id: str, split: str, measured: bool) -> slices.Search:
    """The weak-segment search; ``measured`` (the image properties cache exists) keys the
    cache, so a search from before Slices measured them is not kept after (both pages then
    search the same slices)."""
    return checkup.weak_segments(_run(run_id), split)


@st.cache_data(max_entries=32, show_spinner="Looking for test images that copy training images…")
def _pixel_leak(run_id: str, split: str) -> health.LeakFinding:
    return checkup.pixel_leak(_run(run_id), split)


@st.cache_data(max_entries=16, show_spinner=False)
def _embedding_leak(run_id: str, split: str) -> health.LeakFinding | None:
    return checkup.embedding_leak(_run(run_id), split)


@st.cache_data(max_entries=16, show_spinner="Clustering the images by their embeddings…")
def _worst_cluster(run_id: str, split: str, embedded: bool) -> failure_clusters.Cluster | None:
    """The worst failure cluster; ``embedded`` (the embeddings cache exists) keys the cache,
    so a None from before the embeddings were computed is not kept after."""
    return checkup.worst_cluster(_run(run_id), split) if embedded else None


# Costly caches a "Compute now" asks for: (the task key's kind, shared with the Leakage page
# so one computation serves both pages and every viewer; what computes it; its verb; its file).
COSTLY = {"pixels": ("phash", leakage.run_hashes, "Hashing", leakage.cache_path),
          "embeddings": ("embeddings", embeddings.run_embeddings, "Embedding",
                         embeddings.cache_path)}  # fmt: skip


def _compute(run: Run, kind: str) -> None:
    """Start or join the shared computation of the costly cache ``kind`` ("pixels" or
    "embeddings") on core.hosting.tasks, off the script thread; while it runs, draw its
    progress (Overview's last line, ``ui.tasks.rerun_if_pending``, reruns the page)."""
    task_kind, fn, verb, cache_path = COSTLY[kind]
    kept = tasks.get((task_kind, run.run_id))
    if kept is not None and kept.finished and kept.error is None and not cache_path(run).exists():
        tasks.forget((task_kind, run.run_id))  # its file was deleted since: compute it again
    label = f"{verb} {run.run_id}"
    task = tasks.submit((task_kind, run.run_id), fn, run, label=label, progress=True)
    if not ui_tasks.ready(task, f"{verb} the images"):
        return
    st.session_state.setdefault(REQUESTS, set()).discard((kind, run.run_id))
    if task.error is not None:
        st.session_state.setdefault(ERRORS, {})[(kind, run.run_id)] = task.error
    elif kind == "embeddings":
        _embedding_leak.clear()


def _ask(kind: str, run_id: str) -> None:
    st.session_state.setdefault(REQUESTS, set()).add((kind, run_id))


def _cached_embedding_leak(run: Run, split: str) -> health.LeakFinding | None:

    # only once the embeddings exist: a None cached before would outlive them
    return _embedding_leak(run.run_id, split) if embeddings.cache_path(run).exists() else None


def _cached_cluster(run: Run, split: str) -> failure_clusters.Cluster | None:

    return _worst_cluster(run.run_id, split, embeddings.cache_path(run).exists())


CACHED = checkup.Inputs(
    reliability=lambda run, split: _reliability(run.run_id, split),
    suspicious=lambda run, split: _suspicious(run.run_id, split),
    pixel_leak=lambda run, split: _pixel_leak(run.run_id, split),
    embedding_leak=_cached_embedding_leak,
    segments=lambda run, split: _segments(run.run_id, split, properties.cache_path(run).exists()),
    worst_cluster=_cached_cluster,
    no_cluster=None,  # "not computed yet", with its button
)


def summary(run: Run, split: str, t: Thresholds) -> health.Summary:
    """Return the health summary of ``split`` (checkup.run_summary through this module's
    caches), first computing the costly caches the user asked for."""

    rid = run.run_id
    asked = st.session_state.get(REQUESTS, set())
    todo = []
    if health.held_out_split(run.splits, split) is not None:
        if ("pixels", rid) in asked and not leakage.cache_path(run).exists():
            todo.append("pixels")
        can_embed = checkup.no_leakage(run, split) is None and checkup.no_embeddings(run) is None
        if can_embed and ("embeddings", rid) in asked and not embeddings.cache_path(run).exists():
            todo.append("embeddings")
    # Progress goes in a container the page always has: what follows keeps its place while a
    # task runs (a bar pushing it down left the old checklist's lines on screen between
    # reruns). Not an st.empty drawn first: that blanked the previous rerun's bar during
    # ui.tasks.ready's wait, so the bar blinked on every poll.
    with st.container():
        for kind in todo:
            _compute(run, kind)
    error = st.session_state.get(ERRORS, {}).get(("embeddings", rid))
    return checkup.run_summary(run, split, t, inputs=CACHED, embedding_error=error)


def verdict(s: health.Summary, class_names: list[str]) -> None:
    """Render the headline verdict box, with the reasons behind its worst check."""
    details = "\n".join(f"- {d}" for d in s.worst.details)
    body = f"**{s.headline}**" + (f"\n\n{details}" if details else "")
    verdict_box(health.VERDICT_LEVEL[s.level], md_names(body, class_names))


def checklist(s: health.Summary, run: Run) -> None:
    """Render one line per check: its level, its sentence and a link to its page."""
    for c in s.checks:
        with st.container(key=f"health_{c.key}"):
            text, link = st.columns([5, 1.3], vertical_alignment="center")
            text.markdown(
                f"{ICONS[c.level]} **{c.title}** · {c.level}  \n"
                f"{md_names(c.sentence, run.class_names)}"
            )
            if c.level == health.NOT_COMPUTED:
                text.button(
                    "Compute now",
                    key=f"hl_compute_{c.key}",
                    icon=":material/play_arrow:",
                    on_click=_ask,
                    args=("pixels" if c.key == "leakage" else "embeddings", run.run_id),
                )
            else:  # the button's place kept: else the browser shows the old one until the end
                text.empty()
            if c.page == OVERVIEW:  # the facts behind the line are further down this page
                link.markdown(":material/arrow_downward: Below, under **Run**")
            else:
                link.page_link(c.page, label=health.PAGES[c.page], icon=":material/arrow_forward:")
