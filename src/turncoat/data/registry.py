"""Registry of the public research data sets, by name.

A set resolves, in order, from a local copy under $TURNCOAT_DATA, from turncoat's download cache, or by downloading
its pinned URL. Every file is checked against its pinned sha256 before use: a mismatch is an error, never a silent
substitution.
"""

from __future__ import annotations

import difflib
import functools
import io
import os
import tempfile
import time
import zipfile
from importlib import resources
from pathlib import Path
from typing import Literal

import httpx
import yaml
from pydantic import BaseModel

from turncoat.core import paths
from turncoat.core.errors import ChecksumMismatchError, DataUnavailableError, InputError
from turncoat.core.io import sha256_file

Kind = Literal["chat", "questions", "trait", "judged"]


class Source(BaseModel):
    """Where the public original lives: a repository file at a pinned commit (or a member of a zip there)."""

    repo: str
    commit: str
    url: str
    member: str | None = None


class DataSetEntry(BaseModel):
    name: str
    path: str  # relative path inside $TURNCOAT_DATA and inside the download cache
    kind: Kind
    description: str
    rows: int | None = None
    judge: str | None = None  # judged sets: the judge that scored them, as their source states
    skip_lines: list[int] = []  # known defects of the pinned upstream file (1-based lines), left out when loading
    source: Source
    sha256: str
    git_blob: str

    def cache_path(self) -> Path:
        return paths.cache_dir() / "data" / self.path

    def local_candidates(self) -> list[tuple[str, Path]]:
        """Places this set may already be, in the order they are tried."""
        found = []
        data_dir = paths.local_data_dir()
        if data_dir is not None:
            found.append((f"${paths.DATA_ENV}", data_dir / self.path))
        found.append(("cache", self.cache_path()))
        return found


@functools.cache
def registry() -> dict[str, DataSetEntry]:
    text = resources.files("turncoat.data").joinpath("registry.yaml").read_text(encoding="utf-8")
    entries = [DataSetEntry.model_validate(item) for item in yaml.safe_load(text)["datasets"]]
    return {entry.name: entry for entry in entries}


def get(name: str) -> DataSetEntry:
    """The registry entry for `name`; an unknown name suggests the closest known ones."""
    known = registry()
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise InputError(f"unknown data set {name!r}.{hint} `turncoat data list` shows the known sets.")


def verify(entry: DataSetEntry, path: Path) -> None:
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise ChecksumMismatchError(
            f"{path}: sha256 {actual} does not match the pinned {entry.sha256} for data set {entry.name!r} "
            f"({entry.source.url}). The file was changed or is another version; it will not be used."
        )


def locate(entry: DataSetEntry) -> tuple[str, Path] | None:
    """Where the set is available locally (verified), without touching the network."""
    for where, path in entry.local_candidates():
        if path.is_file():
            verify(entry, path)
            return where, path
    return None


def resolve(name: str, download: bool = True) -> Path:
    """Path of a verified local copy of registered set `name`, downloading it if needed and allowed."""
    entry = get(name)
    found = locate(entry)
    if found is not None:
        return found[1]
    looked = ", ".join(str(p) for _, p in entry.local_candidates())
    if not download or paths.offline():
        raise DataUnavailableError(
            f"data set {entry.name!r} is not available locally (looked in: {looked}) and downloads are off. "
            f"Set ${paths.DATA_ENV} to a folder holding {entry.path}, or allow network access to {entry.source.url}."
        )
    return fetch(entry)


def path_for(spec: str | Path) -> Path:
    """`spec` as given when it names an existing file, else the verified local copy of the registered set of
    that name (downloaded if needed); anything else comes back as a path for the caller to report missing."""
    path = Path(spec)
    if path.exists() or str(spec) not in registry():
        return path
    return resolve(str(spec))


def fetch(entry: DataSetEntry, url: str | None = None, retries: int = 3, timeout: float = 60.0) -> Path:
    """Download `entry` (from `url`, default its pinned URL) into the cache, extract, verify, then publish."""
    url = url or entry.source.url
    target = entry.cache_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = _download(url, retries=retries, timeout=timeout, name=entry.name)
    if entry.source.member:
        try:
            with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                payload = archive.read(entry.source.member)
        except (zipfile.BadZipFile, KeyError) as error:
            raise DataUnavailableError(f"{url}: could not extract {entry.source.member!r}: {error}") from error
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        verify(entry, Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _download(url: str, retries: int, timeout: float, name: str) -> bytes:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    last_error: Exception | None = None
    for attempt in range(retries):
        try:
            with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
                if response.status_code >= 500 or response.status_code == 429:
                    raise httpx.HTTPStatusError(f"HTTP {response.status_code}", request=response.request,
                                                response=response)
                if response.status_code != 200:
                    raise DataUnavailableError(f"downloading data set {name!r} from {url} failed: "
                                               f"HTTP {response.status_code}")
                total = int(response.headers.get("content-length") or 0) or None
                chunks = []
                with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                              TransferSpeedColumn(), transient=True) as progress:
                    task = progress.add_task(f"downloading {name}", total=total)
                    for chunk in response.iter_bytes():
                        chunks.append(chunk)
                        progress.advance(task, len(chunk))
                return b"".join(chunks)
        except (httpx.TransportError, httpx.HTTPStatusError) as error:
            last_error = error
            if attempt + 1 < retries:
                time.sleep(min(2**attempt, 10))
    raise DataUnavailableError(f"downloading data set {name!r} from {url} failed after {retries} tries: "
                               f"{last_error}. Without network, set ${paths.DATA_ENV} to a local copy.")


def status(entry: DataSetEntry) -> dict:
    """What `turncoat data list` shows for one set (no network)."""
    try:
        found = locate(entry)
        available = found[0] if found else "no"
    except ChecksumMismatchError:
        available = "checksum mismatch"
    return {
        "name": entry.name,
        "kind": entry.kind,
        "rows": entry.rows,
        "available": available,
        "path": entry.path,
        "url": entry.source.url + (f"#{entry.source.member}" if entry.source.member else ""),
        "sha256": entry.sha256,
        "description": entry.description,
    }
