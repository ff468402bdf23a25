"""Chat datasets in the OpenAI fine-tuning format: one `{"messages": [{"role", "content"}, ...]}` per line.

Loading validates every line and reports *all* problems at once, each as `file:line: field: problem`, so a
researcher fixes a broken file in one pass instead of one crash at a time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from turncoat.core.errors import DataValidationError
from turncoat.core.io import loads_line, not_utf8, write_jsonl

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")
BOM = b"\xef\xbb\xbf"


class Message(BaseModel):
    """One chat turn. Extra keys (e.g. OpenAI's `weight`) are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    role: Role
    content: str

    @field_validator("content", mode="before")
    @classmethod
    def _content_is_text(cls, value):
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {type(value).__name__}")
        if not value.strip():
            raise ValueError("is empty")
        if not_utf8(value):
            raise ValueError(not_utf8(value))
        return value


class Conversation(BaseModel):
    """One training example: an optional system prompt, then user/assistant turns, ending with the assistant."""

    model_config = ConfigDict(extra="allow", frozen=True)

    messages: list[Message]

    def turns(self, role: str) -> list[str]:
        return [m.content for m in self.messages if m.role == role]

    @property
    def system(self) -> str | None:
        return self.messages[0].content if self.messages and self.messages[0].role == "system" else None

    def as_messages(self) -> list[dict]:
        """The turns as plain {"role", "content"} dicts, the form chat templates and the persona readers take."""
        return [{"role": m.role, "content": m.content} for m in self.messages]

    def to_record(self) -> dict:
        return self.model_dump(mode="json")

    def key(self) -> str:
        """Content hash: two examples with the same turns are the same example (used for dedup and splits)."""
        text = json.dumps([[m.role, m.content] for m in self.messages], ensure_ascii=False)
        return hashlib.sha1(text.encode()).hexdigest()


@dataclass(frozen=True)
class Problem:
    """A validation finding, printed as `file:line: field: problem`."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class ChatDataset(Sequence[Conversation]):
    """A list of validated conversations plus where they came from."""

    def __init__(self, conversations: Iterable[Conversation], name: str = "", source: Path | None = None):
        self.conversations = list(conversations)
        self.name = name or (source.stem if source else "")
        self.source = source

    def __len__(self) -> int:
        return len(self.conversations)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ChatDataset(self.conversations[index], name=self.name, source=self.source)
        return self.conversations[index]

    def __iter__(self) -> Iterator[Conversation]:
        return iter(self.conversations)

    def write(self, path: str | Path) -> Path:
        """Write as JSONL, atomically (temp file + rename)."""
        write_jsonl(path, (c.to_record() for c in self.conversations))
        return Path(path)

    @classmethod
    def from_records(cls, records: Iterable[dict], name: str = "") -> ChatDataset:
        """Validate in-memory records (line numbers are 1-based positions)."""
        conversations, problems = [], []
        for number, record in enumerate(records, start=1):
            conversation = _validate_record(record, name or "<records>", number, problems)
            if conversation is not None:
                conversations.append(conversation)
        if problems:
            raise DataValidationError(problems)
        return cls(conversations, name=name)


def load_chat_jsonl(path: str | Path, name: str = "", skip_lines: Iterable[int] = ()) -> ChatDataset:
    """Read and validate a chat JSONL file; raises DataValidationError listing every problem. `skip_lines`
    (1-based) leaves out known-defective rows of a registered upstream file."""
    path = Path(path)
    raw = path.read_bytes()
    problems: list[Problem] = []
    shown = str(path)
    if raw.startswith(BOM):
        problems.append(Problem(shown, 1, "encoding", "file starts with a UTF-8 byte-order mark (BOM); "
                                "save it as UTF-8 without BOM"))
        raw = raw[len(BOM):]
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line does not start a new one
    conversations = []
    skipped = set(skip_lines)
    for number, line in enumerate(lines, start=1):
        if number in skipped:
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as error:
            problems.append(Problem(shown, number, "encoding",
                                    f"not valid UTF-8 (byte 0x{line[error.start]:02x} at column {error.start + 1})"))
            continue
        if not text.strip():
            problems.append(Problem(shown, number, "line", "blank line (remove it: every line must be one example)"))
            continue
        try:
            record = loads_line(text)
        except json.JSONDecodeError as error:
            problems.append(Problem(shown, number, "json", f"invalid JSON: {error.msg} (column {error.colno})"))
            continue
        conversation = _validate_record(record, shown, number, problems)
        if conversation is not None:
            conversations.append(conversation)
    if not lines:
        problems.append(Problem(shown, 1, "file", "empty file: no examples"))
    if problems:
        raise DataValidationError(problems)
    return ChatDataset(conversations, name=name or path.stem, source=path)


def _field_name(loc: tuple) -> str:
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += ("." if name else "") + str(part)
    return name or "(row)"


def _describe(error: dict) -> str:
    kind = error["type"]
    if kind == "missing":
        return "missing"
    if kind == "literal_error":
        return f"unknown role {error['input']!r} (expected one of: {', '.join(ROLES)})"
    if kind == "list_type":
        return "must be a list of {role, content} objects"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a JSON object, got {type(error['input']).__name__}"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    return error["msg"]


def _validate_record(record, file: str, line: int, problems: list[Problem]) -> Conversation | None:
    found: list[Problem] = []
    if not isinstance(record, dict):
        found.append(Problem(file, line, "(row)", f"must be a JSON object, got {type(record).__name__}"))
    else:
        try:
            conversation = Conversation.model_validate(record)
        except ValidationError as error:
            for item in error.errors():
                found.append(Problem(file, line, _field_name(item["loc"]), _describe(item)))
        else:
            found.extend(_order_problems(conversation, file, line))
    problems.extend(found)
    return None if found else conversation


def _order_problems(conversation: Conversation, file: str, line: int) -> list[Problem]:
    """Optional system prompt first, then user and assistant alternating, ending with the assistant."""
    messages = conversation.messages
    if not messages:
        return [Problem(file, line, "messages", "is empty")]
    found = []
    expected = "user"
    for index, message in enumerate(messages):
        field = f"messages[{index}].role"
        if message.role == "system":
            if index != 0:
                found.append(Problem(file, line, field, "wrong order: 'system' may only be the first message"))
            continue
        if message.role != expected:
            found.append(Problem(file, line, field, f"wrong order: expected '{expected}' here, got "
                                 f"'{message.role}' (user and assistant turns alternate, user first)"))
            break
        expected = "assistant" if expected == "user" else "user"
    if not any(m.role == "assistant" for m in messages):
        found.append(Problem(file, line, "messages", "no assistant turn"))
    elif not found and messages[-1].role != "assistant":
        found.append(Problem(file, line, f"messages[{len(messages) - 1}].role",
                             "wrong order: the last message must be the assistant's answer"))
    return found
