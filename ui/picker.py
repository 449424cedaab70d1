"""The sidebar on every page: choose a stored run, or make a new one.

A new run comes from a bundled, uploaded or server-side checkpoint and the bundled or a
server-side dataset; preprocessing is prefilled from the checkpoint's metadata. Evaluation
runs in a background job (ui.jobs) with a progress bar, and the result becomes the chosen run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from core import models, paths, preprocessing
from core.errors import ClassLensError
from core.evaluate import evaluate
from core.sample import CHECKPOINTS, DATASET
from ui import jobs
from ui.state import RUN_KEY, list_runs, run_label

PENDING_KEY = "_pending_run_id"
UPLOAD_TYPES = ["safetensors", "pt", "pth", "ckpt", "bin", "pt2"]


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


def _saved_upload(upload) -> Path:
    """Return a stable path for an uploaded file (content-addressed, so reruns reuse it)."""
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = paths.cache_dir() / "uploads" / digest
    target = folder / Path(upload.name).name
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(target)
    return target


def _choose_checkpoint() -> tuple[list[Path], bool]:
    source = st.radio(
        "Checkpoint", ["Bundled sample", "Upload", "Server path"], horizontal=True, key="ck_src"
    )
    trusted = False
    if source == "Bundled sample":
        name = st.selectbox("Sample checkpoint", list(CHECKPOINTS), key="ck_sample")
        return [CHECKPOINTS[name]], False
    if source == "Upload":
        uploads = st.file_uploader(
            "Checkpoint files",
            type=UPLOAD_TYPES,
            key="ck_upload",
            accept_multiple_files=True,
            help="Several files are evaluated one after another, ready for the Compare page.",
        )
        trusted = st.checkbox(
            "I trust these files",
            key="ck_trust_up",
            help="Allows TorchScript, .pt2 and pickled modules, which run code from the file.",
        )
        return [_saved_upload(u) for u in uploads or []], trusted
    text = st.text_input("Checkpoint path on the server", key="ck_path").strip()
    trusted = st.checkbox(
        "I trust this file",
        key="ck_trust_path",
        help="Allows TorchScript, .pt2 and pickled modules, which run code from the file.",
    )
    return ([Path(text).expanduser()] if text else []), trusted


def _choose_dataset() -> Path | None:
    source = st.radio("Dataset", ["Bundled digits", "Server folder"], horizontal=True, key="ds_src")
    if source == "Bundled digits":
        return DATASET
    text = st.text_input(
        "Dataset folder on the server",
        key="ds_path",
        help="root/<split>/<class>/<image> (splits: train, val, test) or root/<class>/<image>.",
    ).strip()
    return Path(text).expanduser() if text else None


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ClassLensError(f"{name} must be comma-separated numbers, got {text!r}.") from None


def _new_run_form() -> None:
    ckpt_paths, trusted = _choose_checkpoint()
    data_path = _choose_dataset()
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
    st.caption(f"{ckpt.format} · {ckpt.architecture} · {ckpt.in_channels or '?'} channel(s)")
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
            lambda progress: evaluate(
                ckpt_path,
                data_path,
                arch=arch or None,
                preprocessing_overrides=overrides,
                trust_checkpoint=trusted,
                num_workers=0,
                progress=progress,
            ),
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


def _evaluation(path: Path, data_path: Path, arch: str, trusted: bool):  # noqa: ANN202
    return lambda progress: evaluate(
        path, data_path, arch=arch or None, trust_checkpoint=trusted, num_workers=0,
        progress=progress,
    )  # fmt: skip


@st.fragment(run_every=1.0)
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
