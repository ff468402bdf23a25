"""Small file helpers shared by every stage: atomic writes, and the one reader and appender of resumable JSONL."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from filelock import FileLock

from turncoat.core.errors import InputError


def not_utf8(text: str) -> str | None:
    """Why `text` cannot be written as UTF-8, or None: JSON's `\\ud800` escapes decode to lone surrogates, which
    pass a reader and crash whatever tokenises or writes them later."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"holds a lone surrogate (U+{ord(text[error.start]):04X} at character {error.start + 1}), not text"
    return None


def load_yaml(text: str):
    """yaml.safe_load, with nesting too deep to read as a YAMLError (PyYAML recurses per level)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply to read") from None


def loads_line(text: str | bytes):
    """json.loads of one line, with nesting too deep to read as a JSONDecodeError (not a RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply to read", text if isinstance(text, str) else "", 0) from None


def build_lock(lock_file: Path) -> FileLock:
    """An inter-process lock for building one cache entry: a second process waits, then finds the entry built."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(lock_file)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Write to a temporary file beside `path`, then rename it over `path`: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Atomically write one JSON object per line; returns the number written."""
    count = 0
    with atomic_write(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: str | Path, repair: bool = False) -> list[dict]:
    """Records of a JSONL file that a job appends to (answers, judgements, projections); none if it does not exist.
    With `repair`, a torn last line (from a killed job) is cut off, so the job can resume by appending."""
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    end = raw.rfind(b"\n") + 1
    if repair and end < len(raw):
        with open(path, "r+b") as handle:
            handle.truncate(end)
    records = []
    for number, line in enumerate(raw[:end].splitlines(), start=1):
        if line.strip():
            try:
                records.append(loads_line(line))
            except json.JSONDecodeError as error:
                problem = InputError(f"{path}:{number}: json: invalid JSON line: {error.msg}")
                problem.line = number  # for callers that word the error for their own file
                raise problem from None
    return records


def append_jsonl(handle: IO, records: Iterable[dict]) -> int:
    """Append records to an open JSONL file and make them durable before returning: what a killed job wrote is kept
    and a rerun resumes after it. Returns the number written."""
    count = 0
    for record in records:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    handle.flush()
    os.fsync(handle.fileno())
    return count


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def git_blob_sha1(path: str | Path) -> str:
    """The id `git hash-object` gives a file: lets a download be matched to a repository's blob."""
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
