"""Directions: one vector per layer with what made it, saved as a small safetensors file; projections onto them,
and how well they separate two sets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from turncoat.core.errors import InputError
from turncoat.results.statistics import auroc


@dataclass
class Direction:
    vectors: np.ndarray  # (layers, width), not normalised: the raw mean difference
    layers: list[int]
    metadata: dict = field(default_factory=dict)  # model, method, reduce, data hash, separation per layer...

    def at(self, layer: int) -> np.ndarray:
        if layer not in self.layers:
            raise InputError(f"the direction has no layer {layer} (it has {self.layers})")
        return self.vectors[self.layers.index(layer)]

    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"vectors": self.vectors.astype(np.float32), "layers": np.asarray(self.layers, dtype=np.int64)},
                  str(path), metadata={"turncoat": json.dumps(self.metadata)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> Direction:
        from safetensors import safe_open

        if str(path).startswith("sae:"):  # an SAE latent's decoder vector: sae:SAE_FOLDER#LATENT
            from turncoat.activations.sae import latent_direction

            return latent_direction(str(path))
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such direction file")
        with safe_open(str(path), framework="numpy") as handle:
            metadata = json.loads((handle.metadata() or {}).get("turncoat", "{}"))
            return cls(handle.get_tensor("vectors"), handle.get_tensor("layers").tolist(), metadata)


def mean_difference(positive: np.ndarray, negative: np.ndarray, layers: list[int], metadata: dict | None = None
                    ) -> Direction:
    """mean(positive) - mean(negative) per layer, from (examples, layers, width) activations."""
    return Direction(positive.mean(0) - negative.mean(0), list(layers), dict(metadata or {}))


def project(activations: np.ndarray, direction: Direction) -> np.ndarray:
    """(examples, layers): each activation's component along the layer's unit direction."""
    units = direction.vectors / np.linalg.norm(direction.vectors, axis=1, keepdims=True)
    return np.einsum("nld,ld->nl", activations, units)


def separation(positive: np.ndarray, negative: np.ndarray) -> dict:
    """Cohen's d (pooled SD) and AUROC of positive over negative projections, for one layer's scalars."""
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    pooled = np.sqrt(((len(positive) - 1) * positive.var(ddof=1) + (len(negative) - 1) * negative.var(ddof=1))
                     / (len(positive) + len(negative) - 2))
    ranked = auroc(np.r_[np.ones(len(positive)), np.zeros(len(negative))], np.r_[positive, negative])
    return {"cohens_d": float((positive.mean() - negative.mean()) / pooled) if pooled > 0 else float("nan"),
            "auroc": float("nan") if ranked is None else ranked}
