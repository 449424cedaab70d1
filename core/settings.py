"""Deployment settings: local (everything allowed) or hosted (login, roles, hardened inputs).

Read from, in order of precedence: environment variables ``CLASSLENS_<FIELD>`` (upper case),
then the ``[classlens]`` table of ``.streamlit/secrets.toml`` (the dashboard passes it in),
then the defaults below. Hosted mode is switched on by ``CLASSLENS_HOSTED=1`` or
``hosted = true`` in that table; it changes the defaults of the safety fields, and a few of
them (code-bearing checkpoints) cannot be switched back on while hosted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from core.errors import ClassLensError

ENV_PREFIX = "CLASSLENS_"
AUTH_MODES = ("none", "oidc", "password")


@dataclass(frozen=True)
class Settings:
    """How this ClassLens server may be used."""

    # Hosted mode: login required, code-bearing checkpoints refused whatever the UI says.
    hosted: bool = False
    # "oidc" (st.login; needs an [auth] section in secrets), "password" (the passwords below)
    # or "none"; hosted mode with "none" shows an error page instead of the dashboard.
    auth: str = "none"
    # OIDC: e-mail addresses (lower case) allowed to upload and evaluate; others are viewers.
    editors: tuple[str, ...] = ()
    # OIDC: when set, only these e-mails (plus editors) may sign in at all.
    viewers: tuple[str, ...] = ()
    # Password gate for teams without an identity provider (compared in constant time).
    viewer_password: str | None = None
    editor_password: str | None = None
    # Server folders (checkpoints, datasets) only under these roots; empty: none when hosted,
    # anywhere when local.
    allowed_roots: tuple[Path, ...] = ()
    # Upload and archive caps (hosted and local alike; local defaults are generous).
    max_upload_mb: int = 200
    max_zip_total_mb: int = 2048
    max_zip_files: int = 100_000
    # Decompression-bomb guard: images with more pixels are skipped and listed, not decoded.
    max_image_pixels: int = 50_000_000

    @property
    def allow_code_checkpoints(self) -> bool:
        """Return whether TorchScript, .pt2 and pickled modules may ever load here."""
        return not self.hosted

    @property
    def server_paths_allowed(self) -> bool:
        """Return whether the server-path fields are offered at all."""
        return not self.hosted or bool(self.allowed_roots)


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ClassLensError(f"{name} must be true or false, got {value!r}.")


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.replace(";", ",").split(",") if v.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


def _convert(name: str, value: Any) -> Any:
    label = ENV_PREFIX + name.upper()
    if name == "hosted":
        return _as_bool(value, label)
    if name == "auth":
        mode = str(value).strip().lower()
        if mode not in AUTH_MODES:
            raise ClassLensError(f"{label} must be one of {', '.join(AUTH_MODES)}, got {value!r}.")
        return mode
    if name in ("editors", "viewers"):
        return tuple(v.lower() for v in _as_list(value))
    if name == "allowed_roots":
        return tuple(Path(v).expanduser().resolve() for v in _as_list(value))
    if name.endswith("_password"):
        return str(value) if str(value) else None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ClassLensError(f"{label} must be a whole number, got {value!r}.") from None
    if number < 1:
        raise ClassLensError(f"{label} must be at least 1, got {number}.")
    return number


def load(
    secrets: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Return the settings from ``env`` (default os.environ) over ``secrets`` (the
    ``[classlens]`` table) over the defaults."""
    env = os.environ if env is None else env
    secrets = secrets or {}
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(secrets) - known)
    if unknown:
        raise ClassLensError(
            f"unknown setting(s) in [classlens]: {', '.join(unknown)}. "
            f"Known: {', '.join(sorted(known))}."
        )
    values: dict[str, Any] = {}
    for name in known:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is None:
            raw = secrets.get(name)
        if raw is not None:
            values[name] = _convert(name, raw)
    if "auth" not in values and (values.get("viewer_password") or values.get("editor_password")):
        values["auth"] = "password"
    return Settings(**values)


def current() -> Settings:
    """Return the settings from the environment alone (what core code may consult)."""
    return load(None)
