"""The sidebar on every page: choose a stored run, or make a new one.

A new run comes from a bundled, uploaded or server-side checkpoint and the bundled, an
uploaded (zip) or a server-side dataset; preprocessing is prefilled from the checkpoint's
metadata. Inputs go through ``core.safety`` (uploads checked by size and content, zips
extracted safely, server paths only under the allowed roots) and the settings decide what is
offered: no trust checkbox when hosted, no server paths when hosted without allowed roots.
Evaluation runs in a background job (ui.jobs) with a progress bar, and the result becomes
the chosen run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import streamlit as st

from core import models, preprocessing, safety
from core.errors import ClassLensError
from core.sample import CHECKPOINTS, DATASET
from core.settings import Settings, current
from ui import jobs
from ui.gallery import md_escape
from ui.state import RUN_KEY, list_runs, run_label

PENDING_KEY = "_pending_run_id"
UPLOAD_TYPES = ["safetensors", "pt", "pth", "ckpt", "bin", "pt2", "onnx"]
DATASET_UPLOAD_TYPES = ["zip"]


def sidebar(*, can_edit: bool = True) -> None:
    """Render the run picker; keeps ``st.session_state[RUN_KEY]`` and ``?run=`` in step.

    ``can_edit`` False (a hosted viewer): no New run form, so no upload and no evaluation.
    """
    runs = list_runs()
    ids = [r.run_id for r in runs]
    labels = {r.run_id: run_label(r) for r in runs}
    wanted = st.query_params.get("run")
    if st.session_state.get(PENDING_KEY) in ids:
        st.session_state[RUN_KEY] = st.session_state.pop(PENDING_KEY)
    if RUN_KEY not in st.session_state or st.session_state[RUN_KEY] not in ids:
        st.session_state[RUN_KEY] = wanted if wanted in ids else _default(runs)
    with st.sidebar:
        st.header("Run")
        if ids:
            st.selectbox(
                "Stored runs",
                ids,
                key=RUN_KEY,
                format_func=lambda rid: labels.get(rid, rid),
                help="A run is one checkpoint evaluated on one dataset; it is stored once.",
            )
        else:
            st.caption("No stored runs yet.")
        if can_edit:
            with st.expander("New run", expanded=not ids):
                _new_run_form()
    if st.session_state.get(RUN_KEY):
        st.query_params["run"] = st.session_state[RUN_KEY]


def _default(runs: list) -> str | None:
    """Return the good sample run when present (a populated first view), else the newest."""
    for r in runs:
        if r.meta["checkpoint"]["name"] == CHECKPOINTS["good"].name:
            return r.run_id
    return runs[0].run_id if runs else None


@st.cache_resource(max_entries=8, show_spinner="Reading the checkpoint…")
def _inspect(path: str, sha: str, trusted: bool, arch: str | None) -> models.Checkpoint:
    return models.load_checkpoint(path, trusted=trusted, arch=arch or None)


class Upload(Protocol):
    """What the handlers need of an uploaded file (st.file_uploader's UploadedFile has it)."""

    name: str

    def getvalue(self) -> bytes: ...


def save_checkpoint_uploads(
    uploads: Iterable[Upload], settings: Settings
) -> tuple[list[Path], list[str]]:
    """Return (stored paths, refusals) for uploaded checkpoints: each is checked by size and
    content, then stored content-addressed in the cache (reruns reuse it). No streamlit here,
    so tests call it directly (AppTest cannot drive st.file_uploader)."""
    saved, refused = [], []
    for upload in uploads:
        try:
            saved.append(safety.save_checkpoint_upload(upload.name, upload.getvalue(), settings))
        except ClassLensError as exc:
            refused.append(str(exc))
    return saved, refused


def dataset_from_zip(upload: Upload, settings: Settings) -> Path:
    """Return the dataset folder extracted (safely, once per content) from an uploaded zip."""
    return safety.extract_dataset_zip(upload.getvalue(), Path(upload.name).name, settings)


def server_path(text: str, settings: Settings) -> Path | None:
    """Return the server path typed in a field (None when blank), refused outside the roots."""
    text = text.strip()
    return safety.check_server_path(text, settings) if text else None


def _sources(settings: Settings, *options: str) -> list[str]:
    """Return the source options this server offers (no server paths when hosted sans roots)."""
    return [o for o in options if settings.server_paths_allowed or not o.startswith("Server")]


def _trust_box(label: str, key: str, settings: Settings) -> bool:
    if not settings.allow_code_checkpoints:
        return False  # hosted: code-bearing formats are refused whatever is ticked
    return st.checkbox(
        label,
        key=key,
        help="Allows TorchScript, .pt2 and pickled modules, which run code from the file.",
    )


def _choose_checkpoint(settings: Settings) -> tuple[list[Path], bool]:
    options = _sources(settings, "Bundled sample", "Upload", "Server path")
    source = st.radio("Checkpoint", options, horizontal=True, key="ck_src")
    if source == "Bundled sample":
        name = st.selectbox("Sample checkpoint", list(CHECKPOINTS), key="ck_sample")
        return [CHECKPOINTS[name]], False
    if source == "Upload":
        uploads = st.file_uploader(
            "Checkpoint files",
            type=UPLOAD_TYPES,
            key="ck_upload",
            accept_multiple_files=True,
            max_upload_size=settings.max_upload_mb,
            help="Several files are evaluated one after another, ready for the Compare page. "
            "Files are judged by their content, not their extension.",
        )
        trusted = _trust_box("I trust these files", "ck_trust_up", settings)
        saved, refused = save_checkpoint_uploads(uploads or [], settings)
        for message in refused:
            st.error(message)
        return saved, trusted
    text = st.text_input("Checkpoint path on the server", key="ck_path", help=_roots(settings))
    trusted = _trust_box("I trust this file", "ck_trust_path", settings)
    found = server_path(text, settings)
    return ([found] if found else []), trusted


def _roots(settings: Settings) -> str | None:
    if not settings.allowed_roots:
        return None
    return "Only under: " + ", ".join(str(r) for r in settings.allowed_roots)


def _choose_dataset(settings: Settings) -> Path | None:
    options = _sources(settings, "Bundled digits", "Upload zip", "Server folder")
    source = st.radio("Dataset", options, horizontal=True, key="ds_src")
    if source == "Bundled digits":
        return DATASET
    if source == "Upload zip":
        upload = st.file_uploader(
            "Dataset zip",
            type=DATASET_UPLOAD_TYPES,
            key="ds_upload",
            max_upload_size=settings.max_upload_mb,
            help="A zip of root/<class>/<image> or root/<split>/<class>/<image>; extracted "
            "once into the cache.",
        )
        if upload is None:
            return None
        # Hashing a large zip costs time: remember the folder for this upload's id.
        memo = st.session_state.setdefault("_zip_folders", {})
        if upload.file_id not in memo:
            memo[upload.file_id] = dataset_from_zip(upload, settings)
        return memo[upload.file_id]
    text = st.text_input(
        "Dataset folder on the server",
        key="ds_path",
        help="root/<split>/<class>/<image> (splits: train, val, test) or root/<class>/<image>."
        + (f" {_roots(settings)}." if settings.allowed_roots else ""),
    )
    return server_path(text, settings)


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ClassLensError(f"{name} must be comma-separated numbers, got {text!r}.") from None


def _new_run_form() -> None:
    settings = current()
    try:
        ckpt_paths, trusted = _choose_checkpoint(settings)
        data_path = _choose_dataset(settings)
    except ClassLensError as exc:  # a path outside the roots, a refused zip
        st.error(str(exc))
        return
    if not ckpt_paths or data_path is None:
        st.caption("Pick a checkpoint and a dataset to evaluate.")
        return
    arch = st.text_input("Architecture (blank: from metadata or detected)", key="arch").strip()
    if len(ckpt_paths) > 1:
        _several_form(ckpt_paths, data_path, trusted, arch)
        return
    ckpt_path = ckpt_paths[0]
    try:
        if not ckpt_path.is_file():
            raise ClassLensError(f"checkpoint not found: {ckpt_path}.")
        ckpt = _inspect(str(ckpt_path), models.sha256_file(ckpt_path), trusted, arch)
        prep = preprocessing.resolve(None, ckpt.preprocessing, channels=ckpt.in_channels)
    except ClassLensError as exc:
        st.error(str(exc))
        return
    arch_label = md_escape(ckpt.architecture)  # from the file's metadata: a user string
    st.caption(f"{ckpt.format} · {arch_label} · {ckpt.in_channels or '?'} channel(s)")
    c1, c2 = st.columns(2)
    size = c1.number_input("Image size", 1, 4096, prep.image_size, key=f"size_{ckpt.sha256}")
    resize = c2.selectbox(
        "Resize", preprocessing.RESIZE_MODES, key=f"resize_{ckpt.sha256}",
        index=preprocessing.RESIZE_MODES.index(prep.resize),
    )  # fmt: skip
    mean = st.text_input("Mean", ",".join(f"{v:g}" for v in prep.mean), key=f"mean_{ckpt.sha256}")
    std = st.text_input("Std", ",".join(f"{v:g}" for v in prep.std), key=f"std_{ckpt.sha256}")
    key = hashlib.sha256(
        f"{ckpt.sha256}|{data_path.resolve()}|{arch}|{size}|{resize}|{mean}|{std}".encode()
    ).hexdigest()
    job = jobs.get(key)
    if st.button("Evaluate", type="primary", disabled=job is not None and not job.finished):
        try:
            overrides = {
                "image_size": int(size),
                "resize": resize,
                "mean": _floats(mean, "Mean"),
                "std": _floats(std, "Std"),
                "channels": prep.channels,
            }
            preprocessing.Preprocessing(**overrides)  # check the fields before starting
        except ClassLensError as exc:
            st.error(str(exc))
            return
        label = f"{ckpt_path.name} on {data_path.name}"
        jobs.start(
            key,
            label,
            _evaluation(ckpt_path, data_path, arch, trusted, overrides),
        )
    if jobs.get(key) is not None:
        _job_status((key,))


def _several_form(paths: list[Path], data_path: Path, trusted: bool, arch: str) -> None:
    """Several uploads: each evaluated with the preprocessing its own metadata gives."""
    ready: list[tuple[Path, str]] = []
    for path in paths:
        try:
            ckpt = _inspect(str(path), models.sha256_file(path), trusted, arch)
        except ClassLensError as exc:
            st.error(f"{path.name}: {exc}")
            continue
        ready.append((path, ckpt.sha256))
    if not ready:
        return
    st.caption(
        f"{len(ready)} checkpoints, each evaluated with the preprocessing in its own metadata; "
        "compare them on the **Compare** page."
    )
    keys = tuple(
        hashlib.sha256(f"{sha}|{data_path.resolve()}|{arch}|metadata".encode()).hexdigest()
        for _, sha in ready
    )
    busy = any(j is not None and not j.finished for j in map(jobs.get, keys))
    if st.button("Evaluate all", type="primary", disabled=busy):
        for key, (path, _) in zip(keys, ready, strict=True):
            jobs.start(
                key, f"{path.name} on {data_path.name}", _evaluation(path, data_path, arch, trusted)
            )
    if any(jobs.get(k) is not None for k in keys):
        _job_status(keys)


def _evaluation(
    path: Path, data_path: Path, arch: str, trusted: bool, overrides: dict | None = None
) -> dict:
    """Return ``evaluate``'s keyword arguments for a job (JSON: it runs in a child process)."""
    return {
        "checkpoint": str(path),
        "dataset": str(data_path),
        "arch": arch or None,
        "preprocessing_overrides": overrides,
        "trust_checkpoint": trusted,
        "num_workers": 0,
    }


@st.fragment(run_every=2.0)
def _job_status(keys: tuple[str, ...]) -> None:
    """Show each job's progress; when all are done, open the last run (once)."""
    running = [j for j in map(jobs.get, keys) if j is not None]
    for job in running:
        if job.error:
            st.error(f"{job.label}: {job.error}")
        elif not job.finished:
            frac = job.done / job.total if job.total else 0.0
            left = job.seconds_left
            eta = f"{int(left // 60)}:{int(left % 60):02d} left" if left == left else "starting…"
            st.progress(
                frac,
                text=f"{job.label}: {job.done}/{job.total or '?'} images · "
                f"{job.rate:.0f} img/s · {eta}",
            )
    done = [j for j in running if j.finished and j.run is not None]
    if not done or any(not j.finished for j in running):
        return
    if st.session_state.get("_opened_job") != keys:
        st.session_state["_opened_job"] = keys
        list_runs.clear()
        # The run selectbox may already exist in this run: hand the id over via a
        # pending key that sidebar() applies before it draws the widget.
        st.session_state[PENDING_KEY] = done[-1].run.run_id
        st.rerun(scope="app")
    names = ", ".join(j.run.run_id[:6] for j in done)
    st.success(f"Done: run {names} {'is' if len(done) == 1 else 'are'} stored; the last is open.")


def open_run(run_id: str) -> None:
    """Open ``run_id`` on Overview: the sidebar's picker takes it before drawing its widget."""
    st.session_state[PENDING_KEY] = run_id
    st.query_params["run"] = run_id
    st.switch_page("pages/overview.py")
