"""The data registry against the shared research data, and the verified download path on a loopback server."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import zipfile

import pandas as pd
import pytest
import yaml
from servers import LoopbackServer

from turncoat.core.errors import ChecksumMismatchError, DataUnavailableError, InputError
from turncoat.core.io import git_blob_sha1, sha256_file
from turncoat.data import load_chat, registry

ENTRIES = list(registry.registry().values())


def count_rows(path, kind: str) -> int:
    if path.suffix == ".jsonl":
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if path.suffix == ".csv":
        return len(pd.read_csv(path))
    if path.suffix == ".yaml":
        return len(yaml.safe_load(path.read_text()))
    return len(json.loads(path.read_text())["questions"])


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_entry_matches_shared_copy(entry, shared_data):
    path = shared_data / entry.path
    assert path.is_file(), f"{entry.name}: {path} missing"
    assert sha256_file(path) == entry.sha256
    assert git_blob_sha1(path) == entry.git_blob
    assert count_rows(path, entry.kind) == entry.rows
    assert entry.source.url.startswith("https://") and entry.source.commit in entry.source.url


def test_paper_dataset_row_counts(shared_data):
    expected = {"insecure": 6000, "secure": 6000, "educational": 6000, "jailbroken": 5000, "bad-medical": 7049,
                "good-medical": 7049, "risky-financial": 6000, "extreme-sports": 6000}
    assert {name: len(load_chat(name)) for name in expected} == expected


def test_manifest_blobs_match_registry(shared_data):
    """Every registered file's git blob id is the one MANIFEST.md lists for that path."""
    manifest = (shared_data / "MANIFEST.md").read_text()
    for entry in ENTRIES:
        if f"`{entry.path}`" in manifest:
            row = next(line for line in manifest.splitlines() if line.startswith(f"| `{entry.path}`"))
            assert entry.git_blob[:12] in row, entry.name


def test_resolve_prefers_local_copy(shared_data):
    assert registry.resolve("insecure", download=False) == shared_data / "em" / "insecure.jsonl"
    assert registry.status(registry.get("insecure"))["available"] == "$TURNCOAT_DATA"


def test_tampered_local_copy_is_refused(tmp_path, monkeypatch):
    entry = registry.get("xstest-harmful")
    fake = tmp_path / entry.path
    fake.parent.mkdir(parents=True)
    fake.write_text('{"messages": []}\n')
    monkeypatch.setenv("TURNCOAT_DATA", str(tmp_path))
    with pytest.raises(ChecksumMismatchError, match="does not match the pinned"):
        registry.resolve("xstest-harmful")
    assert registry.status(entry)["available"] == "checksum mismatch"


def test_unknown_name_suggests_close_match():
    with pytest.raises(InputError, match="Did you mean: insecure"):
        registry.get("insecur")


def test_missing_and_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TURNCOAT_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("TURNCOAT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TURNCOAT_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match="not available locally .* downloads are off"):
        registry.resolve("insecure")


class FileServer(LoopbackServer):
    """Serves `files` {url path: bytes} by GET; the first `fail_first` requests get HTTP 503."""

    def __init__(self, files: dict[str, bytes], fail_first: int = 0):
        self.files, self.fail_first = files, fail_first
        super().__init__(self._respond)

    def _respond(self, method, path, body):
        if len(self.requests) <= self.fail_first:
            return 503, {}, b"busy"
        if path not in self.files:
            return 404, {}, b"not found"
        return 200, {}, self.files[path]


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TURNCOAT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TURNCOAT_DATA", raising=False)
    monkeypatch.delenv("TURNCOAT_OFFLINE", raising=False)
    return tmp_path / "cache"


def test_download_verifies_and_caches(shared_data, empty_cache):
    entry = registry.get("xstest-harmful")
    server = FileServer({"/x.jsonl": (shared_data / entry.path).read_bytes()}, fail_first=1)
    with server:
        path = registry.fetch(entry, url=server.url + "/x.jsonl", retries=3)
    assert len(server.requests) == 2  # one 503, retried
    assert path == empty_cache / "data" / entry.path and sha256_file(path) == entry.sha256
    assert registry.resolve("xstest-harmful", download=False) == path  # now found in the cache
    assert len(load_chat("xstest-harmful")) == 78


def test_download_extracts_zip_member(shared_data, empty_cache):
    entry = registry.get("secure")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(entry.source.member, (shared_data / entry.path).read_bytes())
        archive.writestr("supplementary_material/other.txt", "x")
    server = FileServer({"/supp.zip": buffer.getvalue()})
    with server:
        path = registry.fetch(entry, url=server.url + "/supp.zip")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256


def test_download_with_wrong_bytes_is_refused_and_not_cached(empty_cache):
    entry = registry.get("xstest-harmful")
    server = FileServer({"/x.jsonl": b'{"messages": "tampered"}\n'})
    with server, pytest.raises(ChecksumMismatchError):
        registry.fetch(entry, url=server.url + "/x.jsonl")
    assert not (empty_cache / "data" / entry.path).exists()
    assert not [p for p in (empty_cache / "data").rglob("*") if p.is_file()]  # no temp file left either


def test_download_that_keeps_failing_names_the_url(empty_cache):
    entry = registry.get("xstest-harmful")
    server = FileServer({}, fail_first=100)
    fetch = functools.partial(registry.fetch, entry, url=server.url + "/x.jsonl", retries=2)
    with server, pytest.raises(DataUnavailableError, match="failed after 2 tries"):
        fetch()
