"""Where turncoat keeps things on disk: one place to change them, each overridable by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "TURNCOAT_DATA"  # a local copy of the research data (the layout of shared/data/MANIFEST.md)
CACHE_ENV = "TURNCOAT_CACHE"  # downloads and converted models
JUDGE_CACHE_ENV = "TURNCOAT_JUDGE_CACHE"  # the judge cache file (default: judge_cache.sqlite in the cache)
OFFLINE_ENV = "TURNCOAT_OFFLINE"  # "1": never touch the network (HF_HUB_OFFLINE=1 implies it too)


def cache_dir() -> Path:
    """Root of turncoat's cache (default ~/.cache/turncoat, or $XDG_CACHE_HOME/turncoat)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "turncoat"


def converted_gguf_dir(gguf: Path) -> Path:
    """Where a GGUF file's de-quantised safetensors copy is kept: keyed by its name, size and mtime."""
    stat = gguf.stat()
    return cache_dir() / "models" / "gguf" / f"{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"


def local_data_dir() -> Path | None:
    """The user's local copy of the research data, if $TURNCOAT_DATA points at one."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def offline() -> bool:
    """True when the user asked for no network use at all."""
    truthy = {"1", "true", "yes", "on"}
    return (
        os.environ.get(OFFLINE_ENV, "").lower() in truthy
        or os.environ.get("HF_HUB_OFFLINE", "").lower() in truthy
    )
