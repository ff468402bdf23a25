"""Data: validated chat datasets, transforms, and the registry of public research sets."""

from __future__ import annotations

from pathlib import Path

from turncoat.core.errors import InputError
from turncoat.data import registry
from turncoat.data.chat import ChatDataset, Conversation, Message, Problem, load_chat_jsonl


def load_chat(spec: str | Path) -> ChatDataset:
    """A chat dataset from a JSONL path or a registered name (e.g. `insecure`)."""
    path = Path(spec)
    if path.is_file():
        return load_chat_jsonl(path)
    name = str(spec)
    if name in registry.registry():
        entry = registry.get(name)
        if entry.kind != "chat":
            raise InputError(f"data set {name!r} is a {entry.kind} file, not a chat dataset")
        return load_chat_jsonl(registry.resolve(name), name=name, skip_lines=entry.skip_lines)
    if path.suffix or "/" in name:
        raise InputError(f"{spec}: no such file")
    registry.get(name)  # raises with close-match suggestions
    raise AssertionError("unreachable")


__all__ = ["ChatDataset", "Conversation", "Message", "Problem", "load_chat", "load_chat_jsonl", "registry"]
