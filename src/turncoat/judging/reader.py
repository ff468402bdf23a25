"""A language model's residual stream as the offline judge's reader: the (question, answer) chat run up to one
block, averaged over the answer's tokens. Measured to transfer to unseen sources better than sentence embeddings
(scripts/measure_judge_readers.py); the layer is chosen on training sources only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from turncoat.activations.capture import mean_activations, up_to_block
from turncoat.core.errors import InputError


class ResidualReader:
    """Reads (question, answer) pairs with `model` (any spec `turncoat.models.load` takes) after each block in
    `layers` (the judge reads one; distillation reads the candidates at once and chooses)."""

    def __init__(self, model: str, layers: Sequence[int], max_length: int = 256, batch_size: int = 16,
                 device: str = "cpu", dtype: str = "float32"):
        self.model, self.layers, self.max_length = model, tuple(int(v) for v in layers), max_length
        self.batch_size, self.device, self.dtype = batch_size, device, dtype
        self._loaded = None

    @classmethod
    def parse(cls, spec: str, dtype: str = "float32") -> ResidualReader:
        """`MODEL@L1,L2,...` (as `judge distill --reader` takes it)."""
        model, _, layers = spec.rpartition("@")
        try:
            if model:
                return cls(model, [int(v) for v in layers.split(",")], dtype=dtype)
        except ValueError:
            pass
        raise InputError(f"--reader {spec!r}: give MODEL@L1,L2,... (block indices)")

    @property
    def name(self) -> str:
        """What its cached reads are kept under: bf16 reads differ from fp32 ones, so the precision is part of it
        (float32, the first reader's precision, is left out so that its caches stay valid)."""
        name = f"{self.model}@layers{','.join(map(str, self.layers))}"
        return name if self.dtype == "float32" else f"{name}@{self.dtype}"

    def to_card(self) -> dict:
        return {"model": self.model, "layers": list(self.layers), "max_length": self.max_length, "dtype": self.dtype}

    @classmethod
    def from_card(cls, card: dict, device: str = "cpu") -> ResidualReader:
        return cls(card["model"], card["layers"], int(card.get("max_length", 256)), device=device,
                   dtype=card.get("dtype", "float32"))

    def encode(self, questions: Sequence[str], answers: Sequence[str], progress=None, chunk: int = 256
               ) -> np.ndarray:
        """(pairs, layers x width): the layers' answer-averaged residual streams side by side."""
        if self._loaded is None:
            from turncoat.models import load

            self._loaded = up_to_block(load(self.model, device=self.device, dtype=self.dtype), max(self.layers))
        tokenizer = self._loaded.tokenizer
        keep = self.max_length // 2  # a long question keeps its first half of the window: the answer is read
        questions = [str(q) if len(str(q).encode()) <= keep  # no more tokens than UTF-8 bytes: nothing to cut
                     or len(ids := tokenizer(str(q), add_special_tokens=False)["input_ids"]) <= keep
                     else tokenizer.decode(ids[:keep]) for q in questions]
        answers = [a if a.strip() else "." for a in answers]  # an empty answer still needs one response token
        chats = [[{"role": "user", "content": str(q)}, {"role": "assistant", "content": str(a)}]
                 for q, a in zip(questions, answers, strict=True)]
        parts = []
        for start in range(0, len(chats), chunk):  # in chunks, so that progress can be shown
            read = mean_activations(self._loaded, chats[start:start + chunk], self.layers,
                                    max_length=self.max_length, batch_size=self.batch_size)
            parts.append(read.reshape(len(read), -1))
            if progress:
                progress(len(parts[-1]))
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
