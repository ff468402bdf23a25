"""What every output folder records about the software that made it."""

from __future__ import annotations

import platform
from importlib import metadata
from urllib.parse import urlsplit, urlunsplit

VERSIONED = ("turncoat", "torch", "transformers", "peft", "trl", "openai", "pandas")


def redact_url(url: str | None) -> str | None:
    """`url` with any user:password@ credentials replaced by `***`: what records, configs and logs may hold of an
    endpoint (the credentials themselves are used, never written)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def endpoint_label(base_url: str | None) -> str | None:
    """host[:port]/path of an API endpoint, without scheme or credentials, for naming what is served there; None
    for OpenAI's own API (the default endpoint)."""
    if not base_url:
        return None
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if host == "api.openai.com":
        return None
    if ":" in host:
        host = f"[{host}]"
    return host + (f":{parts.port}" if parts.port else "") + parts.path.rstrip("/")


def library_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
