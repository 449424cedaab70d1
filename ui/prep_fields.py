"""The New run form's preprocessing fields: each value with where it comes from.

Declared in the checkpoint, read from the file, probed (core.engine.probe, on a sample of the
train split), typed, or a default. What the user edits becomes typed and wins until "Forget
typed values"; only typed values go to the evaluation, which resolves the rest the same way.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core.analysis import provenance
from core.engine import data, evaluate, inference, models, preprocessing, probe
from core.errors import ClassLensError
from core.runs import RunStore


def _floats(text: str, flag: str) -> tuple[float, ...]:
    """Return the numbers typed in a field; the error names its flag (``--mean``), which
    ``ui.form_errors.for_form`` shows as the form's field in bold, the typed text as typed."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ClassLensError(
            f"{flag} must be comma-separated numbers (one per channel, like 0.5 or "
            f"0.485,0.456,0.406), got {text!r}."
        ) from None


# The form's preprocessing fields: widget key prefix and label.
PREP_FIELDS = {"image_size": ("size", "Image size"), "resize": ("resize", "Resize"),
               "mean": ("mean", "Mean"), "std": ("std", "Std")}  # fmt: skip
SOURCE_WORDS = {
    "declared": "declared in the checkpoint",
    "read": "read from the file",
    "typed": "typed",
    "default": "default, not known",
}


def _wkey(field: str, sha: str) -> str:
    return f"{PREP_FIELDS[field][0]}_{sha}"


def typed_set(sha: str) -> set[str]:
    return st.session_state.setdefault(f"_typed_{sha}", set())


def _mark_typed(sha: str, field: str) -> None:
    typed_set(sha).add(field)


def forget_typed(sha: str) -> None:
    typed_set(sha).clear()


def request_probe(probe_key: str) -> None:
    st.session_state[probe_key] = True


def _typed_values(sha: str) -> dict:
    """Return the fields the user edited, parsed (ClassLensError naming a field if not)."""
    typed: dict = {}
    for field in typed_set(sha):
        value = st.session_state.get(_wkey(field, sha))
        if value is None:  # the widget is not on the page (yet): nothing typed to use
            continue
        if field in ("mean", "std"):
            typed[field] = _floats(str(value), f"--{field}")
        else:
            typed[field] = int(value) if field == "image_size" else value
    return typed


def _shown(field: str, prep: preprocessing.Preprocessing) -> object:
    value = getattr(prep, field)
    return ",".join(f"{v:g}" for v in value) if field in ("mean", "std") else value


@st.cache_resource(max_entries=4, ttl=300, show_spinner="Scanning the dataset…")
def _scan(path: str) -> data.Dataset:
    return data.scan(path)


def resolve(ckpt: models.Checkpoint, data_path: Path, typed: dict, *, probe_now: bool):
    """Return the form's preprocessing (a core.engine.probe.Resolved): probed when ``probe_now``."""
    if not probe_now:
        read = probe.read_input(ckpt.module, ckpt.in_channels)
        prep, sources = preprocessing.resolve_with_sources(typed, ckpt.preprocessing, read=read)
        return probe.Resolved(prep, sources)
    ds = _scan(str(data_path))
    class_names, labels = evaluate.run_labels(ckpt.class_names, ds)
    with st.spinner("Probing preprocessing on a sample of the images…"):
        return probe.resolve(
            ckpt.module, ckpt.in_channels, ckpt.preprocessing, typed,
            ds=ds, labels=labels, n_classes=len(class_names), checkpoint_sha256=ckpt.sha256,
            device=inference.resolve_device("auto"), cache_dir=RunStore().root / ".probes",
        )  # fmt: skip


def _file_unknown(ckpt: models.Checkpoint) -> list[str]:
    """Return what the checkpoint file does not tell (what the probe would measure)."""
    read = probe.read_input(ckpt.module, ckpt.in_channels)
    return probe.unknown(preprocessing.resolve_with_sources(None, ckpt.preprocessing, read=read)[1])


def _sources_caption(resolved, probed_on: str | None) -> str:
    src = resolved.sources
    meta = {"probe": {"split": probed_on}}

    def said(field: str) -> str:
        words = SOURCE_WORDS.get(src[field]) or provenance.source_text(src[field], meta)
        return f"**{words}**" if src[field] in ("probed", "default") else words

    norm = said("mean") if src["mean"] == src["std"] else f"{said('mean')} / {said('std')}"
    return (
        f"Where these come from: image size {said('image_size')} · mean/std {norm} · resize "
        f"{said('resize')} · {resolved.prep.channels} channel(s) {said('channels')}."
    )


def probe_table(record: dict) -> pd.DataFrame:
    rows = [
        {
            "": "✓" if i == record["chosen"] else "",
            "size": c["image_size"],
            "accuracy": c["accuracy"],
            "normalisation": c.get("normalisation") or provenance.candidate_label(c),
        }  # fmt: skip
        for i, c in enumerate(record["candidates"])
    ]
    # Best first (skipped candidates last), so the narrow sidebar shows what won and by how much.
    return pd.DataFrame(rows).sort_values("accuracy", ascending=False, na_position="last")


def fields(ckpt: models.Checkpoint, data_path: Path, probe_key: str):
    """Render the preprocessing fields with their sources (and the probe's result); return
    (the resolved preprocessing, the typed overrides, whether the file leaves some unknown)."""
    sha = ckpt.sha256
    unknown = _file_unknown(ckpt)
    probe_now = bool(unknown) and probe_key in st.session_state
    try:
        typed = _typed_values(sha)
        resolved = resolve(ckpt, data_path, typed, probe_now=probe_now)
        bad = ""
    except ClassLensError as exc:  # a typed value that does not parse or fit: the fields stay
        typed, bad = {}, str(exc)  # on screen (as typed) to be fixed; the rest as the file says
        resolved = resolve(ckpt, data_path, typed, probe_now=probe_now)
    for field in PREP_FIELDS:  # what the user did not type follows the file and the probe
        if field not in typed_set(sha):
            st.session_state[_wkey(field, sha)] = _shown(field, resolved.prep)
    c1, c2 = st.columns(2)
    c1.number_input("Image size", 1, 4096, key=_wkey("image_size", sha),
                    on_change=_mark_typed, args=(sha, "image_size"))  # fmt: skip
    c2.selectbox("Resize", preprocessing.RESIZE_MODES, key=_wkey("resize", sha),
                 on_change=_mark_typed, args=(sha, "resize"))  # fmt: skip
    for field in ("mean", "std"):
        st.text_input(PREP_FIELDS[field][1], key=_wkey(field, sha),
                      on_change=_mark_typed, args=(sha, field))  # fmt: skip
    record = resolved.probe
    st.caption(_sources_caption(resolved, (record or {}).get("split")))
    if resolved.note:
        st.warning(resolved.note)
    if record is not None:
        tried = sum(c["accuracy"] is not None for c in record["candidates"])
        st.caption(
            f"Probe: {tried} settings on {record['n_images']} {record['split']} images "
            f"(never the test split alone); {record['reason']}."
        )
        rows = len(record["candidates"]) + 1
        st.dataframe(
            probe_table(record), hide_index=True, height=min(36 * rows, 260),
            column_config={"accuracy": st.column_config.NumberColumn(format="percent")},
        )  # fmt: skip
    elif unknown and probe_key not in st.session_state:
        st.caption(
            f"{' and '.join(u.replace('_', ' ') for u in unknown).capitalize()} not in the "
            "checkpoint: **Probe preprocessing** measures them on a sample of the train split "
            "(Evaluate probes first otherwise)."
        )
    if bad:
        raise ClassLensError(bad)
    return resolved, typed, bool(unknown)
