"""Hostile input through the dashboard: the New run form in hosted mode, the upload handlers
it calls, and class names that try to inject markup into the pages."""

from __future__ import annotations

import html
import io
import json
import os
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.engine import models
from core.engine.evaluate import evaluate
from core.errors import ClassLensError
from core.hosting.settings import Settings
from core.runs import Run
from tests.app.conftest import ROOT, Visitor, open_page
from tests.conftest import SIZE, classlens_meta, make_model, save_safetensors, write_dataset
from tests.test_model_budget import write_onnx_bomb
from ui.gallery import md_escape
from ui.new_run import dataset_from_zip, save_checkpoint_uploads
from ui.state import RUN_KEY, list_runs

EDITOR_PW = "editor-pw-long"  # settings refuse passwords under 12 characters
EVIL_NAMES = ("<script>alert(1)", "**bold**", "<img src=x onerror=alert(2)>")
# A run (checkpoint) name and a class name that try a link, bold and HTML at once (no "/":
# it is a file and a folder name).
EVIL_NAME = "[x](http:e) **b** <img src=x>"


pytestmark = pytest.mark.usefixtures("no_settings_leak")  # hosted settings undone


class _Pwn:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


class _Upload:
    """Stands in for st.file_uploader's UploadedFile (AppTest cannot drive the widget)."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name, self._data = name, data

    def getvalue(self) -> bytes:
        return self._data


def _hosted_editor(run: Run, **classlens: object) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["classlens"] = {"hosted": True, "editor_password": EDITOR_PW, **classlens}
    at.query_params["run"] = run.run_id
    at.run()
    at.text_input[0].input(EDITOR_PW)
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    return at


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.sidebar.error]


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize(
    "refused_by",
    [
        "path",  # refused from the path alone, before any file is read
        # a memory-bounded child process reads each file first (core.engine.vetting): a torch
        # import per file, seconds each; test_picker keeps one such refusal in the fast suite
        pytest.param("content", marks=pytest.mark.slow),
    ],
)
def test_hosted_form_refuses_torchscript_and_paths_outside_the_roots(
    sample_runs: dict[str, Run], tmp_path: Path, refused_by: str
) -> None:
    root = (tmp_path / "models").resolve()
    root.mkdir()
    (tmp_path / "secret").mkdir()
    torch.save({"w": torch.zeros(1)}, tmp_path / "secret" / "outside.pt")
    (root / "out").symlink_to(tmp_path / "secret")
    marker = tmp_path / "pwned"
    if refused_by == "content":  # the path case reads no file: no TorchScript compile (~1.5 s)
        torch.jit.script(make_model()).save(str(root / "scripted.pt"))
        torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Pwn(marker)}, root / "evil.pt")
        write_onnx_bomb(root / "bomb.onnx", 750_000_000)  # 150 bytes asking for 3 GB when read
    before = set(tmp_path.rglob("*"))

    at = _hosted_editor(sample_runs["good"], allowed_roots=[str(root)], inspect_memory_mb=1024)
    assert "Server path" in at.sidebar.radio(key="ck_src").options
    at.sidebar.radio(key="ck_src").set_value("Server path").run()
    assert not [c for c in at.sidebar.checkbox if "trust" in c.label], "no trust box when hosted"

    attempts = {
        "content": {
            root / "scripted.pt": r"TorchScript archive.*never loads such files, trusted or not",
            root / "evil.pt": r"evil\.pt is not a safe checkpoint",
            root / "bomb.onnx": r"reading bomb\.onnx needed more than 1,024 MB",
        },
        "path": {
            f"{root}/../secret/outside.pt": r"'\.\.' are not allowed.*" + re.escape(str(root)),
            tmp_path / "secret" / "outside.pt": r"outside the folders.*" + re.escape(str(root)),
            root / "out" / "outside.pt": r"outside the folders this server may read \(symlinks",
        },
    }[refused_by]
    for attempt, wording in attempts.items():
        at.sidebar.text_input(key="ck_path").input(str(attempt)).run()
        assert not at.exception, at.exception
        assert any(re.search(wording, e) for e in _errors(at)), (attempt, _errors(at))
        assert not any(b.label == "Evaluate" for b in at.sidebar.button)

    assert not marker.exists(), "the pickle's code never ran"
    assert set(tmp_path.rglob("*")) == before, "nothing written beside the files"


def test_hosted_without_roots_offers_no_server_paths(sample_runs: dict[str, Run]) -> None:
    at = _hosted_editor(sample_runs["good"])
    assert at.sidebar.radio(key="ck_src").options == ["Bundled sample", "Upload"]
    assert at.sidebar.radio(key="ds_src").options == ["Bundled digits", "Upload zip"]


def test_upload_handlers_refuse_by_content_and_never_run_a_pickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLASSLENS_HOSTED", "1")  # what app.py exports when hosted
    marker, evil = tmp_path / "pwned", io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Pwn(marker)}, evil)
    uploads = [
        _Upload("evil.pt", evil.getvalue()),
        _Upload("model.onnx", b"<html>not a model</html>"),
        _Upload("big.safetensors", (8).to_bytes(8, "little") + b"{" + bytes(2 << 20)),
    ]
    settings = Settings(hosted=True, max_upload_mb=1)

    saved, refused = save_checkpoint_uploads(uploads, settings)

    assert [p.name for p in saved] == ["evil.pt"]
    assert re.search(r"model\.onnx is not a checkpoint by its content", refused[0])
    assert re.search(r"big\.safetensors is 2\.0 MB, over this server's 1 MB limit", refused[1])
    with pytest.raises(ClassLensError, match="not a safe checkpoint"):
        models.load_checkpoint(saved[0], trusted=True)
    assert not marker.exists()

    escape = io.BytesIO()
    with zipfile.ZipFile(escape, "w") as z:
        z.writestr("data/cat/1.png", b"x")
        z.writestr("../../outside.txt", b"x")
    with pytest.raises(ClassLensError, match=r"data\.zip refused: entry '\.\./\.\./outside\.txt'"):
        dataset_from_zip(_Upload("data.zip", escape.getvalue()), settings)
    assert not (tmp_path.parent / "outside.txt").exists()
    assert not list(tmp_path.parent.parent.glob("outside.txt"))


# --- class names that try to inject markup ----------------------------------------------------


@pytest.fixture(scope="module")
def evil_run(sample_runs: dict[str, Run], tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A tiny run whose class folders are named like markup (a train and a test split)."""
    base = tmp_path_factory.mktemp("evil")
    root = write_dataset(base / "d", classes=(*EVIL_NAMES, EVIL_NAME), per_class=3)
    meta = classlens_meta(class_names=None, preprocessing={"image_size": SIZE, "channels": 1})
    ckpt = save_safetensors(make_model(num_classes=4), base / f"{EVIL_NAME}.safetensors", meta)
    run = evaluate(ckpt, root, device="cpu", runs_dir=os.environ["CLASSLENS_RUNS_DIR"])
    list_runs.clear()  # the app re-reads the store every 3 s: make the new run visible now
    return run


@pytest.fixture(scope="module")
def evil_pages(evil_run: Run) -> Visitor:
    """One AppTest session on the markup run that the page cases visit in turn."""
    return Visitor(evil_run)


def _nodes(node: object) -> Iterator[object]:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _nodes(child)


def _rendered_text(at: AppTest) -> list[str]:
    """Return every string Streamlit renders as markdown on the page and the sidebar: markdown,
    captions, alerts, headings, every widget's and block's label and help, radio options."""
    out: list[str] = []
    for node in _nodes(at._tree):
        proto = getattr(node, "proto", None)
        if proto is None:
            continue
        kind = type(node).__name__
        fields = {f.name: v for f, v in proto.ListFields()}
        literal = kind in ("Code", "Text", "Json", "Exception")
        if not literal and isinstance(fields.get("body"), str):
            out.append(fields["body"])  # markdown, caption, alerts, headings
        out += [v for k, v in fields.items() if k in ("label", "help") and isinstance(v, str)]
        if kind == "Radio":
            out += [str(o) for o in node.options]
        for block in ("expandable", "tab"):  # expander and tab labels are markdown too
            inner = fields.get(block)
            if inner is not None and getattr(inner, "label", ""):
                out.append(inner.label)
    return out


def _raw(text: str, name: str) -> bool:
    """Return whether ``name`` appears in ``text`` other than markdown-escaped or inside a code
    span (CommonMark interprets nothing there; ui.text.md_code makes spans no name can close)."""
    text = re.sub(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)", "", text, flags=re.S)
    return name in text.replace(md_escape(name), "")


@pytest.mark.parametrize(
    "page",
    [
        "overview",
        "per_class",
        "confusion",
        "mistakes",
        "overfitting",
        "calibration",
        "suspicious",
        "thresholds",
        "leakage",
        "embedding_map",
        "failure_clusters",
        "robustness",
        "slices",
        "runs",
    ],
)
def test_markup_class_names_render_as_literal_text(
    evil_run: Run, evil_pages: Visitor, page: str
) -> None:
    if page == "robustness":  # one stored derived run (of the page's defaults) to show
        from core.images.robustness import corrupted_run
        from core.runs import RunStore

        corrupted_run(RunStore(evil_run.path.parent), evil_run, "test", "blur", 1)
    at = evil_pages.visit(page)
    for _ in range(120):  # pages with shared work (embeddings, map, clusters): until it is done
        if not len(at.get("progress")):
            break
        time.sleep(0.5)
        at.run()
    if page in ("embedding_map", "failure_clusters"):
        assert at.get("plotly_chart") or any("images ·" in m.value for m in at.markdown), page
    if page == "robustness":
        assert at.get("plotly_chart") and any("change their pred" in m.value for m in at.markdown)
    assert at.session_state[RUN_KEY] == evil_run.run_id, "the page shows the markup run"
    texts = _rendered_text(at)
    assert "New run" in texts, "the walk reached the sidebar's block labels"
    for name in (*EVIL_NAMES, EVIL_NAME):
        leaks = [t for t in texts if _raw(t, name)]
        assert not leaks, (page, name, leaks)
    # Plotly reads a small HTML subset in labels, hover and titles: markup names go escaped.
    strings = [
        s for chart in at.get("plotly_chart") for s in _strings(json.loads(chart.proto.spec))
    ]
    for name in (n for n in EVIL_NAMES if "<" in n):
        assert not [s for s in strings if name in s], (page, name, "raw in a plotly figure")
        if page in ("per_class", "confusion"):
            assert any(html.escape(name, quote=False) in s for s in strings), "shown escaped"


def _strings(obj: object) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


@pytest.mark.parametrize(
    "where", ["**b** [x](http:e) <img src=x>", "true class~is~[x](http:e) **b** <img src=x>"]
)
def test_a_links_filter_text_renders_as_literal_text(
    sample_runs: dict[str, Run], where: str
) -> None:
    # ?where= comes from whoever wrote the link: a refusal or a condition quoting it is escaped.
    at = open_page("overview", sample_runs["good"], where=where)
    texts = _rendered_text(at)
    quoted = [t for t in texts if md_escape("[x](http:e)") in t]
    assert quoted, "the filter's text is shown (a refusal, or the condition in the sidebar)"
    for part in ("**b**", "[x](http:e)", "<img src=x>"):
        assert not [t for t in texts if _raw(t, part)], (where, part)
