"""The sidebar's New run form: a checkpoint and a dataset, evaluated in a background job.

A new run comes from a bundled, uploaded or server-side checkpoint and the bundled, an
uploaded (zip) or a server-side dataset, with the dataset's own metadata.csv or an uploaded or
server-side metadata file (attached to the run, like the CLI's ``--metadata``). Each
preprocessing field says where its value comes from (declared in the checkpoint, read from
the file, probed, typed, or a default); what the file does not tell is measured by the
preprocessing probe (core.engine.probe) on the train split, shown with every candidate's
accuracy. Engine errors name the form's fields (ui.form_errors).
Inputs go through ``core.hosting.safety`` (uploads checked by size and content, zips
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

from core.engine import hf_models, metadata, models, preprocessing, vetting
from core.engine.sample import CHECKPOINTS, DATASET
from core.errors import ClassLensError
from core.hosting import safety
from core.hosting.settings import Settings, current
from ui import jobs, prep_fields
from ui.form_errors import TRUST_MANY, TRUST_ONE, for_form
from ui.gallery import md_code, md_escape

UPLOAD_TYPES = ["safetensors", "pt", "pth", "ckpt", "bin", "pt2", "onnx", "json"]
DATASET_UPLOAD_TYPES = ["zip"]
METADATA_UPLOAD_TYPES = ["csv", "parquet"]
METADATA_HELP = (
    "Per-image columns to slice by (site, scanner, date, ...): a CSV or Parquet table with a "
    "'path' column holding each image's path relative to the dataset root (test/cat/001.png). "
    "The same as --metadata on the CLI."
)


@st.cache_resource(max_entries=8, show_spinner="Reading the checkpoint…")
def _load(path: str, sha: str, trusted: bool, arch: str | None) -> models.Checkpoint:
    return models.load_checkpoint(path, trusted=trusted, arch=arch or None)


def _inspect(path: str, sha: str, trusted: bool, arch: str | None) -> models.Checkpoint:
    """Return the checkpoint, loaded here only after a memory-bounded child process read it
    (core.engine.vetting); the bundled samples are ours and skip that read."""
    if Path(path) not in CHECKPOINTS.values():
        with st.spinner("Reading the checkpoint in a separate process…"):
            vetting.vet(Path(path), sha, trusted=trusted, arch=arch or None,
                        memory_mb=current().inspect_memory_mb)  # fmt: skip
    return _load(path, sha, trusted, arch)


class Upload(Protocol):
    """What the handlers need of an uploaded file (st.file_uploader's UploadedFile has it)."""

    name: str

    def getvalue(self) -> bytes: ...


def save_checkpoint_uploads(
    uploads: Iterable[Upload], settings: Settings
) -> tuple[list[Path], list[str]]:
    """Return (stored paths, refusals) for uploaded checkpoints: each is checked by size and
    content, then stored content-addressed in the cache (reruns reuse it). No streamlit here,
    so tests call it directly (AppTest cannot drive st.file_uploader). A Hugging Face model is
    its weights uploaded with config.json (and preprocessor_config.json): stored as one folder."""
    uploads = list(uploads)
    configs = [u for u in uploads if Path(u.name).suffix.lower() == ".json"]
    if configs:
        return _save_hf_upload([u for u in uploads if u not in configs], configs, settings)
    saved, refused = [], []
    for upload in uploads:
        try:
            saved.append(safety.save_checkpoint_upload(upload.name, upload.getvalue(), settings))
        except ClassLensError as exc:
            refused.append(str(exc))
    return saved, refused


def _save_hf_upload(
    weights: list[Upload], configs: list[Upload], settings: Settings
) -> tuple[list[Path], list[str]]:
    if len(weights) != 1:
        return [], [
            f"{len(weights)} weights files came with config.json: upload one Hugging Face model "
            "at a time (model.safetensors with its config.json and preprocessor_config.json)."
        ]
    try:
        stored = safety.save_checkpoint_upload(weights[0].name, weights[0].getvalue(), settings)
        named = {Path(u.name).name: u.getvalue() for u in configs}
        return [hf_models.store_upload(stored, named)], []
    except ClassLensError as exc:
        return [], [str(exc)]


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
            "Files are judged by their content, not their extension. A Hugging Face model: its "
            "model.safetensors with config.json (and preprocessor_config.json) together.",
        )
        trusted = _trust_box(TRUST_MANY, "ck_trust_up", settings)
        saved, refused = save_checkpoint_uploads(uploads or [], settings)
        for message in refused:
            st.error(for_form(message, trust=TRUST_MANY))
        return saved, trusted
    text = st.text_input(
        "Checkpoint path on the server (a file, or a Hugging Face save_pretrained folder)",
        key="ck_path",
        help=_roots(settings),
    )
    trusted = _trust_box(TRUST_ONE, "ck_trust_path", settings)
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


def _choose_metadata(settings: Settings, data_path: Path) -> Path | None:
    """Return the metadata file to attach to the run; None: the dataset root's own
    metadata.csv / metadata.parquet (read with the run when it has one)."""
    options = ["From the dataset"]
    if not settings.hosted:
        options.append("Upload")
    if settings.server_paths_allowed:
        options.append("Server path")
    source = "From the dataset"
    if len(options) > 1:
        source = st.radio("Metadata", options, horizontal=True, key="md_src", help=METADATA_HELP)
    if source == "From the dataset":
        found = metadata.find(data_path)
        if found is not None:
            st.caption(f"Metadata: {md_code(found.name)} at the dataset root.")
        return None
    if source == "Upload":
        upload = st.file_uploader(
            "Metadata file",
            type=METADATA_UPLOAD_TYPES,
            key="md_upload",
            max_upload_size=settings.max_upload_mb,
            help=METADATA_HELP,
        )
        return None if upload is None else save_metadata_upload(upload)
    text = st.text_input(
        "Metadata file on the server",
        key="md_path",
        help=METADATA_HELP + (f" {_roots(settings)}." if settings.allowed_roots else ""),
    )
    found = server_path(text, settings)
    if found is not None:
        check_metadata(found)
    return found


def save_metadata_upload(upload: Upload) -> Path:
    """Return where an uploaded metadata file is stored (by content, in the cache), refused
    with the reason when it does not read as a metadata table (tests call it directly:
    AppTest cannot drive st.file_uploader)."""
    return metadata.store_upload(upload.name, upload.getvalue())


def check_metadata(path: Path) -> None:
    """Refuse a metadata file that cannot be read, before anything runs (MetadataError)."""
    try:
        stamp = path.stat()
    except OSError as exc:
        raise metadata.MetadataError(
            f"metadata file {path} does not exist: check the path."
        ) from exc
    _read_metadata(str(path), stamp.st_mtime_ns, stamp.st_size)


@st.cache_data(max_entries=8, show_spinner=False)
def _read_metadata(path: str, mtime_ns: int, size: int) -> None:
    """Read the file once per content (mtime and size key the cache); raise if refused."""
    metadata.read(path)


def form() -> None:
    settings = current()
    try:
        ckpt_paths, trusted = _choose_checkpoint(settings)
        data_path = _choose_dataset(settings)
        meta_path = None if data_path is None else _choose_metadata(settings, data_path)
    except ClassLensError as exc:  # a path outside the roots, a refused zip or metadata file
        st.error(for_form(str(exc)))
        return
    if not ckpt_paths or data_path is None:
        st.caption("Pick a checkpoint and a dataset to evaluate.")
        return
    arch = st.text_input("Architecture (blank: from metadata or detected)", key="arch").strip()
    if len(ckpt_paths) > 1:
        _several_form(ckpt_paths, data_path, trusted, arch, meta_path)
        return
    ckpt_path = ckpt_paths[0]
    trust_label = TRUST_MANY if st.session_state.get("ck_src") == "Upload" else TRUST_ONE
    try:
        if ckpt_path.is_dir() and hf_models.folder_of(ckpt_path) is not None:
            digest = hf_models.sha256_of(ckpt_path)  # a Hugging Face save_pretrained folder
        elif ckpt_path.is_file():
            digest = models.sha256_file(ckpt_path)
        else:
            raise ClassLensError(f"checkpoint not found: {ckpt_path}.")
        ckpt = _inspect(str(ckpt_path), digest, trusted, arch)
    except ClassLensError as exc:
        st.error(for_form(str(exc), trust=trust_label))
        return
    arch_label = md_escape(ckpt.architecture)  # from the file's metadata: a user string
    st.caption(f"{ckpt.format} · {arch_label} · {ckpt.in_channels or '?'} channel(s)")
    probe_key = f"_probe_{ckpt.sha256}|{data_path.resolve()}|{arch}"
    try:
        resolved, typed, unknown = prep_fields.fields(ckpt, data_path, probe_key)
    except ClassLensError as exc:  # a typed value that is not a number, a class mismatch
        st.error(for_form(str(exc), trust=trust_label))
        if prep_fields.typed_set(ckpt.sha256):
            st.button("Forget typed values", key=f"forget_{ckpt.sha256}",
                      on_click=prep_fields.forget_typed, args=(ckpt.sha256,))  # fmt: skip
        return

    def job_key(prep: preprocessing.Preprocessing) -> str:
        what = f"{ckpt.sha256}|{data_path.resolve()}|{arch}|{prep}|{sorted(typed)}|{meta_path}"
        return hashlib.sha256(what.encode()).hexdigest()

    key = job_key(resolved.prep)
    job = jobs.get(key)
    c1, c2 = st.columns(2)
    evaluate_clicked = c1.button(
        "Evaluate", type="primary", disabled=job is not None and not job.finished
    )
    if unknown and probe_key not in st.session_state:
        c2.button("Probe preprocessing", on_click=prep_fields.request_probe, args=(probe_key,))
    if typed:
        st.button(
            "Forget typed values", key=f"forget_{ckpt.sha256}", on_click=prep_fields.forget_typed,
            args=(ckpt.sha256,), help="Back to the values the file gives or the probe measured.",
        )  # fmt: skip
    if evaluate_clicked:
        if unknown and probe_key not in st.session_state:  # the form shows what will run
            prep_fields.request_probe(probe_key)
            try:
                resolved = prep_fields.resolve(ckpt, data_path, typed, probe_now=True)
            except ClassLensError as exc:
                st.error(for_form(str(exc), trust=trust_label))
                return
            key = job_key(resolved.prep)
        label = f"{ckpt_path.name} on {data_path.name}"
        # Only what was typed is passed: the evaluation resolves the rest as this form did
        # (declared, read, probed from the same cached sweep), and records each source.
        jobs.start(key, label, _evaluation(ckpt_path, data_path, arch, trusted, typed, meta_path))
        st.rerun()
    if jobs.get(key) is not None:
        _job_status((key,))


def _several_form(
    paths: list[Path], data_path: Path, trusted: bool, arch: str, meta_path: Path | None
) -> None:
    """Several uploads: each evaluated with the preprocessing its own metadata gives."""
    ready: list[tuple[Path, str]] = []
    for path in paths:
        try:
            ckpt = _inspect(str(path), models.sha256_file(path), trusted, arch)
        except ClassLensError as exc:
            st.error(f"{md_escape(path.name)}: {for_form(str(exc), trust=TRUST_MANY)}")
            continue
        ready.append((path, ckpt.sha256))
    if not ready:
        return
    st.caption(
        f"{len(ready)} checkpoints, each evaluated with the preprocessing its own file declares "
        "(what it does not is probed on the train split); compare them on the **Compare** page."
    )
    keys = tuple(
        hashlib.sha256(
            f"{sha}|{data_path.resolve()}|{arch}|metadata|{meta_path}".encode()
        ).hexdigest()
        for _, sha in ready
    )
    busy = any(j is not None and not j.finished for j in map(jobs.get, keys))
    if st.button("Evaluate all", type="primary", disabled=busy):
        for key, (path, _) in zip(keys, ready, strict=True):
            jobs.start(
                key,
                f"{path.name} on {data_path.name}",
                _evaluation(path, data_path, arch, trusted, meta_path=meta_path),
            )
    if any(jobs.get(k) is not None for k in keys):
        _job_status(keys)


def _evaluation(
    path: Path,
    data_path: Path,
    arch: str,
    trusted: bool,
    overrides: dict | None = None,
    meta_path: Path | None = None,
) -> dict:
    """Return ``evaluate``'s keyword arguments for a job (JSON: it runs in a child process),
    plus ``metadata`` when a file is to be attached (core.engine.worker attaches it after)."""
    kwargs = {
        "checkpoint": str(path),
        "dataset": str(data_path),
        "arch": arch or None,
        "preprocessing_overrides": overrides,
        "trust_checkpoint": trusted,
        "num_workers": 0,
    }
    if meta_path is not None:
        kwargs["metadata"] = str(meta_path)
    return kwargs


def _job_status(keys: tuple[str, ...]) -> None:
    """Follow these jobs: ui.progress shows them in the main area, above the page, and opens
    the new run when all are done; the sidebar says where to look."""
    if tuple(st.session_state.get(jobs.FOLLOW_KEY) or ()) != keys:
        st.session_state[jobs.FOLLOW_KEY] = keys
    if any(j is not None and not j.finished for j in map(jobs.get, keys)):
        st.caption("Evaluating: the progress shows above the page.")
