"""Hostile inputs: each is refused with a clear message and leaves no side effect (nothing runs,
nothing is written outside the cache and run store)."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from PIL import ImageFile

from core import paths
from core.engine import data, evaluate, models
from core.errors import ClassLensError
from core.hosting import safety
from core.hosting.settings import Settings
from tests.conftest import draw, write_dataset

HOSTED = Settings(hosted=True)


class _Pwn:
    """Unpickling this creates the marker file: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")} if folder.exists() else set()


@pytest.fixture
def hosted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLASSLENS_HOSTED", "1")


# --- server paths -----------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "allowed" / "data").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.pt").write_bytes(b"x")
    return (tmp_path / "allowed").resolve()


def test_a_path_inside_an_allowed_root_is_accepted(root: Path) -> None:
    settings = Settings(hosted=True, allowed_roots=(root,))
    assert safety.check_server_path(root / "data", settings) == root / "data"
    assert safety.check_server_path(str(root), settings) == root


@pytest.mark.parametrize(
    "attempt, wording",
    [
        ("{root}/../secret/key.pt", r"'\.\.' are not allowed"),
        ("{root}/data/../../secret", r"'\.\.' are not allowed"),
        ("{tmp}/secret/key.pt", r"outside the folders this server may read"),
        ("/etc/passwd", r"outside the folders this server may read"),
        ("{root}/link-out/key.pt", r"outside the folders .*symlinks are followed"),
        ("{root}-sibling/x", r"outside the folders"),  # a prefix is not a parent
    ],
    ids=["dotdot", "dotdot-nested", "absolute-outside", "etc", "symlink-out", "prefix"],
)
def test_path_traversal_is_refused_and_names_the_roots(
    root: Path, attempt: str, wording: str
) -> None:
    (root / "link-out").symlink_to(root.parent / "secret")
    settings = Settings(hosted=True, allowed_roots=(root,))
    text = attempt.format(root=root, tmp=root.parent)
    with pytest.raises(ClassLensError, match=wording) as err:
        safety.check_server_path(text, settings)
    assert str(root) in str(err.value), "the refusal names the allowed roots"


def test_roots_apply_locally_too_and_hosted_without_roots_has_no_server_paths(root: Path) -> None:
    with pytest.raises(ClassLensError, match="outside the folders"):
        safety.check_server_path("/etc", Settings(allowed_roots=(root,)))
    with pytest.raises(ClassLensError, match="server paths are disabled.*ALLOWED_ROOTS"):
        safety.check_server_path(root, HOSTED)
    assert safety.check_server_path("/etc", Settings()) == Path("/etc")  # local: anywhere


# --- checkpoints: hosted mode and uploads -----------------------------------------------------


def _torchscript(path: Path) -> Path:
    from tests.conftest import make_model

    torch.jit.script(make_model()).save(str(path))
    return path


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_is_refused_when_hosted_even_if_trusted(tmp_path: Path, hosted: None) -> None:
    path = _torchscript(tmp_path / "m.pt")
    with pytest.raises(ClassLensError, match=r"m\.pt is a TorchScript archive.*never loads"):
        models.load_checkpoint(path, trusted=True)


def test_a_trusted_malicious_pickle_never_runs_when_hosted(tmp_path: Path, hosted: None) -> None:
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Pwn(marker)}, path)
    with pytest.raises(ClassLensError, match=r"evil\.pt is not a safe checkpoint"):
        models.load_checkpoint(path, trusted=True)
    assert not marker.exists()


def test_a_malicious_pickle_upload_is_stored_in_the_cache_and_refused(tmp_path: Path) -> None:
    marker, buf = tmp_path / "pwned", io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Pwn(marker)}, buf)
    before = _files(tmp_path)

    saved = safety.save_checkpoint_upload("../../evil.pt", buf.getvalue())

    assert saved.is_relative_to(paths.cache_dir() / "uploads") and saved.name == "evil.pt"
    with pytest.raises(ClassLensError, match=r"evil\.pt is not a safe checkpoint"):
        models.load_checkpoint(saved)
    assert not marker.exists()
    assert _files(tmp_path) == before


def test_uploads_are_judged_by_content_and_size(tmp_path: Path) -> None:
    png = io.BytesIO()
    draw(1, 1).save(png, format="PNG")
    uploads = paths.cache_dir() / "uploads"
    before = _files(uploads)
    with pytest.raises(
        ClassLensError, match=r"photo\.safetensors is not a checkpoint by its content"
    ):
        safety.save_checkpoint_upload("photo.safetensors", png.getvalue())
    with pytest.raises(ClassLensError, match=r"big\.pt is 1\.5 MB, over this server's 1 MB limit"):
        safety.save_checkpoint_upload("big.pt", b"\x80" * (3 << 19), Settings(max_upload_mb=1))
    assert _files(uploads) == before


@pytest.mark.parametrize(
    "head, names, kind",
    [
        ((12).to_bytes(8, "little") + b'{"a":1}', [], "safetensors"),
        (b"PK\x03\x04", ["m/data.pkl"], "torch zip"),
        (b"PK\x03\x04", ["readme.txt"], None),
        (b"\x80\x02}q", [], "torch pickle"),
        (b"\x08\x09\x12\x07pytorch", [], "onnx"),
        (b"\x89PNG\r\n\x1a\n", [], None),
        (b"GIF89a", [], None),
    ],
    ids=["safetensors", "torch-zip", "other-zip", "pickle", "onnx", "png", "gif"],
)
def test_checkpoint_kind_by_magic_bytes(head: bytes, names: list[str], kind: str | None) -> None:
    assert safety.checkpoint_kind(head, names) == kind


# --- zipped datasets ---------------------------------------------------------------------------


def _zip(entries: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in entries.items():
            z.writestr(name, content)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc")
    return buf.getvalue()


def _png(label: int, seed: int) -> bytes:
    out = io.BytesIO()
    draw(label, seed).save(out, format="PNG")
    return out.getvalue()


def test_a_good_zip_is_extracted_once_under_its_content_hash(tmp_path: Path) -> None:
    blob = _zip({f"digits/{c}/{i}.png": _png(c, i) for c in range(3) for i in range(2)})

    root = safety.extract_dataset_zip(blob, "digits.zip")
    again = safety.extract_dataset_zip(blob, "digits.zip")

    assert root == again and root.name == "digits"  # one lone top folder is unwrapped
    assert root.parent.parent == paths.cache_dir() / "datasets"
    ds = data.scan(root)
    assert (ds.class_names, len(ds.items)) == (("0", "1", "2"), 6)
    assert not [p for p in root.parent.parent.iterdir() if p.name.startswith(".extract")]


@pytest.mark.parametrize(
    "entries, symlink, wording",
    [
        ({"a/0/x.png": b"1", "../evil.txt": b"2"}, None, r"'\.\./evil\.txt' climbs out"),
        ({"a/0/x.png": b"1", "a/../../evil.txt": b"2"}, None, r"'a/\.\./\.\./evil\.txt' climbs"),
        ({"/tmp/evil.txt": b"2"}, None, r"'/tmp/evil\.txt' has an absolute"),
        ({"a/0/x.png": b"1"}, "a/0/link.png", r"'a/0/link\.png' is a symbolic link"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink"],
)
def test_zips_with_escaping_entries_are_refused_whole(
    tmp_path: Path, entries: dict, symlink: str | None, wording: str
) -> None:
    target = paths.cache_dir() / "datasets"
    before = _files(target) | _files(tmp_path)
    with pytest.raises(ClassLensError, match=rf"bad\.zip refused: entry {wording}.*Nothing"):
        safety.extract_dataset_zip(_zip(entries, symlink=symlink), "bad.zip")
    assert _files(target) | _files(tmp_path) == before
    assert not Path("/tmp/evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()


def test_a_zip_bomb_stops_at_the_cap_and_leaves_nothing(tmp_path: Path) -> None:
    # 3 MB of zeros compress to a few KB; the cap is 2 MB of extracted bytes.
    blob = _zip({"d/0/a.png": _png(0, 0), "d/0/zeros.png": bytes(3 << 20)})
    assert len(blob) < 20_000
    target = paths.cache_dir() / "datasets"
    before = _files(target)
    with pytest.raises(ClassLensError, match=r"bomb\.zip expands past this server's 2 MB limit"):
        safety.extract_dataset_zip(blob, "bomb.zip", Settings(max_zip_total_mb=2))
    assert _files(target) == before, "the partial extraction is removed"


def test_a_zip_with_too_many_files_is_refused(tmp_path: Path) -> None:
    blob = _zip({f"d/0/{i}.png": b"x" for i in range(6)})
    with pytest.raises(ClassLensError, match=r"many\.zip holds 6 files, over .* limit of 5"):
        safety.extract_dataset_zip(blob, "many.zip", Settings(max_zip_files=5))


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ClassLensError, match=r"data\.zip is not a zip archive by its content"):
        safety.extract_dataset_zip(_png(0, 0), "data.zip")


# --- decompression bombs -----------------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def huge_png(path: Path, width: int = 10_000, height: int = 10_000) -> Path:
    """Write a valid-looking 1-bit PNG of width x height (100 MP by default) in a few bytes:
    the header says the size; decoding it would need the pixels, which are not there."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )
    return path


def test_a_100_megapixel_png_is_listed_and_never_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_dataset(tmp_path / "d", splits=None, per_class=1)
    huge_png(root / "cat" / "huge.png")
    decoded: list[str] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda im: decoded.append("x") or real_load(im)
    )

    ds = data.scan(root)

    reasons = {s.path: s.reason for s in ds.skipped}
    assert "cat/huge.png" in reasons and "10000x10000 = 100 MP" in reasons["cat/huge.png"]
    assert "cat/huge.png" not in {it.path for it in ds.items}
    assert safety.image_problem(root / "cat" / "huge.png", 50_000_000).startswith("image too large")
    with pytest.raises(ValueError, match="too large"):
        data.decode(root / "cat" / "huge.png", _prep())
    assert decoded == [], "no pixel of the bomb was decoded"


def _prep():  # noqa: ANN202
    from core.engine.preprocessing import Preprocessing

    return Preprocessing(image_size=16, channels=1, mean=(0.5,), std=(0.5,), resize="stretch")


def test_pils_own_bomb_error_cannot_crash_a_run(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Our limit raised past PIL's: PIL refuses 225 MP itself (DecompressionBombError).
    monkeypatch.setenv("CLASSLENS_MAX_IMAGE_PIXELS", str(10**9))
    root = write_dataset(tmp_path / "d", splits=None, per_class=2)
    huge_png(root / "dog" / "huge.png", 15_000, 15_000)

    run = evaluate.evaluate(checkpoint, root, device="cpu")

    skipped = {s["path"]: s["reason"] for s in run.meta["skipped"]}
    assert "too large" in skipped["dog/huge.png"]
    assert run.metrics["splits"]["test"]["n"] == 6


def test_image_verify_catches_damage_the_header_hides(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    draw(1, 1).save(good)
    bad = tmp_path / "bad.png"
    raw = bytearray(good.read_bytes())
    raw[-20] ^= 0xFF  # flip a byte of the last IDAT: its CRC no longer matches
    bad.write_bytes(bytes(raw))
    text = tmp_path / "text.png"
    text.write_text("hello")
    assert safety.image_problem(good, 1000) is None
    assert safety.image_problem(bad, 1000) is not None
    assert "not an image by its content" in safety.image_problem(text, 1000)
    assert safety.image_problem(good, 10).startswith("image too large")


def test_hosted_scan_skips_symlinked_images_that_lead_out_of_the_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_dataset(tmp_path / "allowed" / "d", splits=None, per_class=1)
    draw(0, 7).save(tmp_path / "private.png")
    (root / "cat" / "link.png").symlink_to(tmp_path / "private.png")
    (root / "cat" / "inside.png").symlink_to(root / "dog" / "000.png")  # stays inside: fine
    monkeypatch.setenv("CLASSLENS_HOSTED", "1")
    monkeypatch.setenv("CLASSLENS_ALLOWED_ROOTS", str(tmp_path / "allowed"))

    ds = data.scan(safety.check_server_path(root))

    reasons = {s.path: s.reason for s in ds.skipped}
    assert reasons == {"cat/link.png": "links outside the allowed folders (not read)"}
    assert "cat/inside.png" in {it.path for it in ds.items}
    monkeypatch.delenv("CLASSLENS_HOSTED")
    monkeypatch.delenv("CLASSLENS_ALLOWED_ROOTS")
    assert "cat/link.png" in {it.path for it in data.scan(root).items}  # locally: allowed


def test_a_zip_of_folders_counts_them_as_entries() -> None:
    """One image among 20 folder entries: max_zip_files counts entries, not only files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(20):
            z.writestr(f"d/{i}/", b"")  # a directory entry
        z.writestr("d/0/a.png", _png(0, 0))
    with pytest.raises(ClassLensError, match=r"dirs\.zip holds 21 files, over .* limit of 5 "):
        safety.extract_dataset_zip(buf.getvalue(), "dirs.zip", Settings(max_zip_files=5))


def test_entry_count_is_read_from_the_end_record_before_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The declared count is checked before zipfile builds one object per entry."""
    blob = _zip({f"d/0/{i}.png": b"x" for i in range(6)})

    def never(*_a: object, **_k: object) -> None:
        raise AssertionError("zipfile.ZipFile opened before the entry count was checked")

    monkeypatch.setattr(safety.zipfile, "ZipFile", never)
    with pytest.raises(ClassLensError, match=r"holds 6 files, over .* limit of 5"):
        safety.extract_dataset_zip(blob, "many2.zip", Settings(max_zip_files=5))


@pytest.mark.parametrize("hosted", [False, True], ids=["local", "hosted"])
def test_a_nul_byte_in_a_server_path_is_a_clear_error(tmp_path: Path, hosted: bool) -> None:
    settings = Settings(hosted=hosted, allowed_roots=(tmp_path,) if hosted else ())
    with pytest.raises(ClassLensError, match=r"holds a NUL character.*without it"):
        safety.check_server_path(f"{tmp_path}/da\0ta", settings)


def test_secrets_file_is_git_ignored() -> None:
    """A secrets.toml written beside the app (passwords, the OIDC client secret, the cookie
    secret) can never be committed by `git add`."""

    import shutil
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    found = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", ".streamlit/secrets.toml"],
        cwd=repo,
        check=False,
    )
    assert found.returncode == 0, ".streamlit/secrets.toml is not in .gitignore"
