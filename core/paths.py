"""Where ClassLens keeps things on disk: the user's cache directory, overridable by env."""

from __future__ import annotations

import os
from pathlib import Path

RUNS_DIR_ENV = "CLASSLENS_RUNS_DIR"
CACHE_DIR_ENV = "CLASSLENS_CACHE_DIR"


def cache_dir() -> Path:
    """Return ClassLens's cache directory ($CLASSLENS_CACHE_DIR, else XDG cache/classlens)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "classlens"


def default_runs_dir() -> Path:
    """Return the run store's directory ($CLASSLENS_RUNS_DIR, else <cache>/runs)."""
    if os.environ.get(RUNS_DIR_ENV):
        return Path(os.environ[RUNS_DIR_ENV]).expanduser()
    return cache_dir() / "runs"
