"""Deployment settings: local (everything allowed) or hosted (login, roles, hardened inputs).

Read from, in order of precedence: environment variables ``CLASSLENS_<FIELD>`` (upper case),
then the ``[classlens]`` table of ``.streamlit/secrets.toml`` (the dashboard passes it in),
then the defaults below. An empty (or blank) environment variable counts as unset: a stray
``CLASSLENS_HOSTED=`` must not switch a hosted server to local mode or wipe a secret.
Hosted mode is switched on by ``CLASSLENS_HOSTED=1`` or ``hosted = true`` in that table; it
changes the defaults of the safety fields, and a few of them (code-bearing checkpoints)
cannot be switched back on while hosted. ``python -m core.hosting.settings`` prints the effective
settings (secrets as set/unset) and fails on a bad one; the server entrypoints run it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from core.errors import ClassLensError

ENV_PREFIX = "CLASSLENS_"
AUTH_MODES = ("none", "oidc", "password")
# Hosted default upload cap, megabytes: Streamlit holds an upload in server memory, and its
# upload endpoint takes one from any session, the login screen's too (see README, Hosting).
HOSTED_MAX_UPLOAD_MB = 100
# Hosted default memory cap of one job process (evaluation, robustness), megabytes: room for
# real classifiers (the sample's evaluation child holds ~0.5 GB, a ResNet-50 on CPU ~2 GB),
# while a runaway forward pass is stopped long before it exhausts a typical 16-64 GB host.
HOSTED_JOB_MEMORY_MB = 8192


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
    # OIDC: e-mail is the identity, so it must carry email_verified = true. True also admits
    # accounts whose provider sends no such claim (only for a provider that verifies all).
    oidc_accept_unverified_claim: bool = False
    # Password gate for teams without an identity provider (compared in constant time).
    viewer_password: str | None = None
    editor_password: str | None = None
    # A configured password shorter than this (surrounding spaces not counted) keeps the
    # server closed: a one-character password falls to a few guesses, rate limit or not.
    min_password_length: int = 12
    # Password gate: wrong guesses one browser session may make before each further one waits
    # (the wait doubles per wrong guess), and wrong guesses the whole server takes in
    # 10 minutes before every session's next guess waits: new sessions cost an attacker nothing.
    login_attempts_per_session: int = 5
    login_attempts_per_server: int = 50
    # Server folders (checkpoints, datasets) only under these roots; empty: none when hosted,
    # anywhere when local.
    allowed_roots: tuple[Path, ...] = ()
    # Upload and archive caps (hosted and local alike; local defaults are generous). Hosted,
    # an unset max_upload_mb is HOSTED_MAX_UPLOAD_MB, as deploy/streamlit-config.toml's cap.
    max_upload_mb: int = 200
    max_zip_total_mb: int = 2048
    max_zip_files: int = 100_000
    # Decompression-bomb guard: images with more pixels are skipped and listed, not decoded.
    max_image_pixels: int = 50_000_000
    # Memory (MB) reading one checkpoint from the New run form may take, in its own child
    # process (core.engine.vetting), before the server loads it: a small file declaring a
    # huge model is refused there instead of in the server.
    inspect_memory_mb: int = 4096
    # Memory (MB) one evaluation or robustness child process may hold (its own anonymous
    # memory and what its workers add; core.hosting.child_memory watches it and stops the job
    # above it). None: no cap, the local default (the analyst's own machine and checkpoints);
    # hosted, an unset value is HOSTED_JOB_MEMORY_MB.
    job_memory_mb: int | None = None

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
    if isinstance(getattr(Settings, name, None), bool):
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
        raw: Any = env.get(ENV_PREFIX + name.upper())
        if raw is None or not str(raw).strip():  # "" is unset: the secrets value stands
            raw = secrets.get(name)
        if raw is not None:
            values[name] = _convert(name, raw)
    if "auth" not in values and (values.get("viewer_password") or values.get("editor_password")):
        values["auth"] = "password"
    if values.get("hosted") and "max_upload_mb" not in values:
        values["max_upload_mb"] = HOSTED_MAX_UPLOAD_MB
    if values.get("hosted") and "job_memory_mb" not in values:
        values["job_memory_mb"] = HOSTED_JOB_MEMORY_MB
    settings = Settings(**values)
    _check_passwords(settings)
    return settings


def _check_passwords(settings: Settings) -> None:
    for name in ("viewer_password", "editor_password"):
        secret = getattr(settings, name)
        if secret is not None and len(secret.strip()) < settings.min_password_length:
            raise ClassLensError(
                f"{ENV_PREFIX}{name.upper()} is {len(secret.strip())} character(s) long; "
                f"passwords need at least {settings.min_password_length}. Set a long random "
                'one (python -c "import secrets; print(secrets.token_urlsafe(16))").'
            )


SECRET_FIELDS = ("viewer_password", "editor_password")


def describe(settings: Settings) -> str:
    """Return one line naming every effective security setting; secrets only as set/unset."""
    parts = []
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if f.name in SECRET_FIELDS:
            text = "set" if value else "unset"
        elif value is None:
            text = "none"
        elif isinstance(value, tuple):
            text = "[" + ",".join(str(v) for v in value) + "]"
        else:
            text = str(value).lower() if isinstance(value, bool) else str(value)
        parts.append(f"{f.name}={text}")
    mode = "hosted" if settings.hosted else "local"
    return f"classlens: settings ({mode}): " + " ".join(parts)


def current() -> Settings:
    """Return the settings from the environment alone (what core code may consult)."""
    return load(None)


def secrets_files(cwd: Path | None = None) -> list[Path]:
    """Return Streamlit's default secrets files, the later overriding the earlier."""
    cwd = cwd or Path.cwd()
    return [Path.home() / ".streamlit" / "secrets.toml", cwd / ".streamlit" / "secrets.toml"]


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_address(settings: Settings, address: str, env: Mapping[str, str] | None = None) -> None:
    """Refuse serving local mode (no login, code-bearing checkpoints allowed) on anything but
    loopback, unless ``CLASSLENS_LOCAL_ON_NETWORK=1`` says every reachable machine is trusted."""
    env = os.environ if env is None else env
    loopback = address in LOOPBACK or address.startswith("127.")
    if settings.hosted or loopback or env.get(ENV_PREFIX + "LOCAL_ON_NETWORK", "") == "1":
        return
    raise ClassLensError(
        f"local mode (no login, code-bearing checkpoints allowed) would be served on "
        f"{address}. Turn hosted mode on (CLASSLENS_HOSTED=1), bind 127.0.0.1, or set "
        "CLASSLENS_LOCAL_ON_NETWORK=1 if every machine that can reach it is trusted."
    )


def main(argv: list[str]) -> int:
    """``python -m core.hosting.settings [--address ADDR] [secrets.toml ...]``: print the effective
    settings line on stderr (deploy/entrypoint.sh and ``make run`` run it before serving);
    exit 2 when they cannot be read or local mode would be served beyond loopback."""
    import tomllib

    address = None
    if argv[:1] == ["--address"] and len(argv) > 1:
        address, argv = argv[1], argv[2:]
    table: dict[str, Any] = {}
    for path in [Path(a) for a in argv] or secrets_files():
        if path.is_file():
            try:
                with open(path, "rb") as f:
                    table.update(tomllib.load(f).get("classlens", {}))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                print(f"error: cannot read {path}: {exc}", file=sys.stderr)
                return 2
    try:
        settings = load(table)
        print(describe(settings), file=sys.stderr)
        if address is not None:
            check_address(settings, address)
    except ClassLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
