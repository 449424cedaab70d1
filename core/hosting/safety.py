"""Untrusted inputs: server paths under allowed roots, uploads checked by content, safe zips.

Everything here refuses with a ClassLensError that says what was wrong and how to fix it, and
writes nothing outside ClassLens's cache directory. Extraction goes to a temporary folder that
is renamed into place only when complete, so a refused or interrupted zip leaves nothing
visible.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import uuid
import warnings
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from PIL import Image

from core import paths
from core.engine.onnx_model import looks_like_onnx
from core.errors import ClassLensError
from core.hosting.settings import Settings, current

MB = 1024 * 1024
CHUNK = 1 << 20


# --- server paths ----------------------------------------------------------------------------


def _roots_text(settings: Settings) -> str:
    return ", ".join(str(r) for r in settings.allowed_roots) or "(none configured)"


def check_server_path(text: str | Path, settings: Settings | None = None) -> Path:
    """Return the resolved server path ``text`` if this server may read it, else refuse.

    Locally without allowed roots any path goes. Hosted (or whenever allowed roots are set):
    no ``..`` components, and the path with every symlink followed must lie inside a root.
    """
    settings = settings or current()
    if "\0" in str(text):  # the OS refuses it (ValueError deep in os.stat); say so here
        raise ClassLensError(
            f"{str(text)!r} holds a NUL character, which no file path can. Type or paste the "
            "path again without it."
        )
    raw = Path(str(text)).expanduser()
    if not settings.hosted and not settings.allowed_roots:
        return raw
    if not settings.server_paths_allowed:
        raise ClassLensError(
            "server paths are disabled on this hosted ClassLens (no allowed roots are "
            "configured). Upload the file instead, or ask the administrator to set "
            "CLASSLENS_ALLOWED_ROOTS."
        )
    if ".." in raw.parts:
        raise ClassLensError(
            f"{text}: paths with '..' are not allowed here. Give a path inside one of the "
            f"allowed roots: {_roots_text(settings)}."
        )
    resolved = Path(os.path.realpath(raw))  # follows every symlink, also dangling ones
    for root in settings.allowed_roots:
        if resolved == root or resolved.is_relative_to(root):
            return resolved
    raise ClassLensError(
        f"{text} is outside the folders this server may read (symlinks are followed). "
        f"Give a path inside one of the allowed roots: {_roots_text(settings)}."
    )


# --- checkpoint uploads ----------------------------------------------------------------------


def _zip_names(data: bytes | Path) -> list[str]:
    import io

    try:
        src = io.BytesIO(data) if isinstance(data, bytes) else data
        with zipfile.ZipFile(src) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        return []


def checkpoint_kind(head: bytes, zip_names: list[str]) -> str | None:
    """Return which checkpoint family the first bytes (and zip member names) show, or None."""
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 10**8:
        return "safetensors"
    if head[:4] == b"PK\x03\x04":
        if any(n.endswith("data.pkl") or "/code/" in n or "archive_format" in n for n in zip_names):
            return "torch zip"
        return None
    if head[:1] == b"\x80":
        return "torch pickle"
    if looks_like_onnx(head):
        return "onnx"
    return None


def _check_size(name: str, size: int, limit_mb: int, what: str) -> None:
    if size > limit_mb * MB:
        raise ClassLensError(
            f"{name} is {size / MB:.1f} MB, over this server's {limit_mb} MB limit for {what}. "
            "Use a smaller file, or ask the administrator to raise CLASSLENS_MAX_UPLOAD_MB."
        )


def save_checkpoint_upload(name: str, data: bytes, settings: Settings | None = None) -> Path:
    """Return where the uploaded checkpoint ``data`` is stored (content-addressed, in the cache)
    after checking its size and that its bytes are a known checkpoint format."""
    settings = settings or current()
    safe_name = Path(name).name or "checkpoint"
    _check_size(safe_name, len(data), settings.max_upload_mb, "uploads")
    head = data[:64]
    names = _zip_names(data) if head[:4] == b"PK\x03\x04" else []
    if checkpoint_kind(head, names) is None:
        raise ClassLensError(
            f"{safe_name} is not a checkpoint by its content (whatever its extension): expected "
            ".safetensors, a torch.save file or an ONNX model. Upload the model file itself."
        )
    digest = hashlib.sha256(data).hexdigest()[:16]
    target = paths.cache_dir() / "uploads" / digest / safe_name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # unique per writer: two sessions may store the same upload at once
        tmp = target.with_name(f".{safe_name}.{uuid.uuid4().hex}.part")
        tmp.write_bytes(data)
        tmp.replace(target)
    return target


# --- images ----------------------------------------------------------------------------------


def _too_large(w: int, h: int, limit: int) -> str | None:
    if w * h <= limit:
        return None
    mp, cap = w * h / 1e6, limit / 1e6
    return f"image too large ({w}x{h} = {mp:.0f} MP, over the {cap:.0f} MP limit); not decoded"


def pixel_problem(path: Path, max_pixels: int) -> str | None:
    """Return why the image at ``path`` is too large to decode, reading its header only (PIL is
    lazy), so a decompression bomb is refused before any pixel is decoded. None when it is
    small enough or cannot be opened at all (decoding then reports that, with its reason)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return _too_large(img.width, img.height, max_pixels)
    except Image.DecompressionBombError as exc:
        return f"image too large ({exc}); not decoded"
    except (OSError, ValueError, SyntaxError):
        return None


def image_problem(path: Path, max_pixels: int | None = None) -> str | None:
    """Return why the file at ``path`` is not an image ClassLens will decode, or None: the
    pixel count from the header first, then ``PIL.Image.verify`` (structure, checksums)."""
    limit = max_pixels if max_pixels is not None else current().max_image_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                too_large = _too_large(img.width, img.height, limit)
                if too_large:
                    return too_large
                img.verify()
    except Image.DecompressionBombError as exc:
        return f"image too large ({exc}); not decoded"
    except Image.UnidentifiedImageError:
        return "not an image by its content (no known image format, or damaged)"
    except (OSError, ValueError, SyntaxError) as exc:
        return f"unreadable image ({type(exc).__name__}: {exc})"
    return None


# --- zipped datasets -------------------------------------------------------------------------


def _bad_entry(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute or Windows path"
    if ".." in PurePosixPath(name).parts:
        return "climbs out of the folder with '..'"
    if "\0" in name:
        return "has a NUL byte in its name"
    return None


def _refuse_count(name: str, entries: int, files: int, limit: int) -> None:
    """Refuse a zip of more than ``limit`` entries: folders count too (each one is created
    on extraction, and a million of them cost memory and inodes as files do)."""
    if entries > limit:
        folders = "" if entries == files else " (folders count as files)"
        raise ClassLensError(
            f"{name} holds {entries:,} files, over this server's limit of {limit:,}{folders}. "
            "Upload a smaller dataset, or ask the administrator to raise CLASSLENS_MAX_ZIP_FILES."
        )


def _check_entry_count(stream: BinaryIO, name: str, limit: int) -> None:
    """Refuse a zip whose end record declares more than ``limit`` entries, before
    ``zipfile`` builds an object for each of them; an unreadable record is left to zipfile."""
    end = zipfile._EndRecData(stream)  # type: ignore[attr-defined]  # stable since Python 2
    if end:
        _refuse_count(name, int(end[zipfile._ECD_ENTRIES_TOTAL]), -1, limit)  # type: ignore[attr-defined]


def _copy_capped(src: IO[bytes], dst: IO[bytes], budget: int, zip_name: str, cap_mb: int) -> int:
    """Copy ``src`` into ``dst`` and return the bytes written, refusing past ``budget``."""
    written = 0
    while chunk := src.read(CHUNK):
        written += len(chunk)
        if written > budget:  # counted while streaming: zip headers can lie about sizes
            raise ClassLensError(
                f"{zip_name} expands past this server's {cap_mb} MB limit for datasets "
                "(a zip bomb, or simply too big). Upload a smaller dataset, or ask the "
                "administrator to raise CLASSLENS_MAX_ZIP_TOTAL_MB."
            )
        dst.write(chunk)
    return written


def _dataset_root(folder: Path) -> Path:
    """Return the dataset root inside an extracted zip: unwrap one lone top-level folder."""
    children = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(children) == 1 and children[0].is_dir():
        return children[0]
    return folder


def extract_dataset_zip(
    source: Path | bytes, name: str = "dataset.zip", settings: Settings | None = None
) -> Path:
    """Return the dataset folder extracted from the zip ``source`` into the cache (under a
    content-hash folder; the same zip twice is extracted once).

    The whole zip is refused (and nothing is left behind) when any entry is absolute, climbs
    out with ``..`` or is a symlink, when it holds more than ``max_zip_files`` files, or when
    its contents (counted while extracting) pass ``max_zip_total_mb``. Images are not judged
    here: the dataset scan skips and lists bad ones.
    """
    import io

    settings = settings or current()
    size = len(source) if isinstance(source, bytes) else source.stat().st_size
    _check_size(name, size, settings.max_upload_mb, "uploads")
    h = hashlib.sha256()
    if isinstance(source, bytes):
        h.update(source)
    else:
        with open(source, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
    base = paths.cache_dir() / "datasets"
    final = base / h.hexdigest()[:16]
    if final.is_dir():
        return _dataset_root(final)
    try:
        if isinstance(source, bytes):
            _check_entry_count(io.BytesIO(source), name, settings.max_zip_files)
        else:
            with open(source, "rb") as stream:
                _check_entry_count(stream, name, settings.max_zip_files)
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, OSError, EOFError):
        raise ClassLensError(
            f"{name} is not a zip archive by its content. Zip the dataset folder "
            "(root/<class>/<image> or root/<split>/<class>/<image>) and upload that."
        ) from None
    with archive:
        infos = archive.infolist()
        for info in infos:
            why = _bad_entry(info)
            if why:
                raise ClassLensError(
                    f"{name} refused: entry {info.filename!r} {why}. Nothing was extracted; "
                    "zip the dataset folder with relative paths only."
                )
        files = [i for i in infos if not i.is_dir()]
        _refuse_count(name, len(infos), len(files), settings.max_zip_files)
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=base))
        try:
            budget = settings.max_zip_total_mb * MB
            for info in files:
                target = tmp.joinpath(*PurePosixPath(info.filename).parts)
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as src, open(target, "xb") as dst:
                        budget -= _copy_capped(src, dst, budget, name, settings.max_zip_total_mb)
                except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                    raise ClassLensError(
                        f"{name} is damaged at entry {info.filename!r} "
                        f"({type(exc).__name__}: {exc}). Zip the dataset folder again."
                    ) from None
            try:
                tmp.rename(final)
            except OSError:  # another session extracted the same zip first
                if not final.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return _dataset_root(final)
