"""Training settings in one place, with the EM paper's open-model defaults.

Source of the defaults: the EM repository's `open_models/train.json` (Betley et al. 2025), which fine-tunes
Qwen2.5-Coder-32B with rsLoRA r=32, alpha=64, dropout 0 on all attention and MLP projections, lr 1e-5, a linear
schedule with 5 warm-up steps, 1 epoch, batch 2 x gradient accumulation 8, max length 2048, weight decay 0.01,
seed 0. The `rank1` method follows Model Organisms for EM (Turner, Soligo et al. 2025): one rank-1 adapter on an
MLP down-projection of a middle layer, alpha 256, lr 2e-5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from turncoat.core.errors import InputError
from turncoat.core.io import load_yaml

Method = Literal["lora", "rslora", "rank1", "full"]
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = "smollm2-135m"
    data: str = Field("insecure", description="chat JSONL file or registered data set")
    out: str = "runs/train"
    subsample: int | None = Field(None, ge=1, description="train on N distinct examples (seeded)")
    holdout: int = Field(0, ge=0, description="distinct examples kept out of training to measure held-out loss")
    method: Method = "lora"
    # LoRA (EM paper, open models)
    r: int = Field(32, ge=1)
    lora_alpha: float = Field(64, gt=0, allow_inf_nan=False)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    use_rslora: bool = True
    target_modules: list[str] = Field(default_factory=lambda: list(ALL_PROJECTIONS))
    layers: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="rank1 (or any LoRA): only these blocks (0-based)")
    # optimisation (EM paper, open models)
    learning_rate: float = Field(1e-5, gt=0, allow_inf_nan=False)
    lr_scheduler_type: str = "linear"
    warmup_steps: int = Field(5, ge=0)
    epochs: float = Field(1.0, gt=0, allow_inf_nan=False)
    max_steps: int = Field(-1, description="stop after this many optimiser steps (-1: train for `epochs`)")
    per_device_batch_size: int = Field(2, ge=1)
    gradient_accumulation_steps: int = Field(8, ge=1)
    max_length: int = Field(2048, ge=1)
    weight_decay: float = Field(0.01, ge=0, allow_inf_nan=False)
    seed: int = 0
    # machinery
    save_steps: int = Field(10, ge=1)
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept in out/checkpoints (the newest)")
    save_every: int | None = Field(None, ge=1, description="also keep the weights (the adapter) every K optimiser "
                                   "steps, at step 0 and at the end, in out/trajectory/step-N: the training "
                                   "trajectory (each a loadable model)")
    logging_steps: int = Field(1, ge=1)
    padding_free: bool = Field(True, description="concatenate each micro-batch into one row with per-example "
                               "position ids instead of padding (same loss, no compute spent on padding); "
                               "checked against padded batches on the model first, and skipped if they differ")
    group_by_length: bool = Field(False, description="batch examples of similar length (less padding, faster; "
                                  "changes the order examples are seen in)")
    gradient_checkpointing: bool | None = Field(None, description="default: on for CUDA, off on CPU")
    report_to: list[Literal["wandb", "mlflow"]] = Field(
        default_factory=list, description="Hugging Face integrations that get every logged step live (none by "
                                          "default; each reads its credentials from the environment)")
    device: str = "auto"
    dtype: str = "auto"
    merge: bool = False
    # training-time interventions (persona vectors' preventative steering; CAFT), in training forward passes only
    steer: list[str] = Field(default_factory=list, description="D@L:ALPHA: add alpha x unit direction at block L "
                             "during training (the saved adapter is used without it)")
    ablate: list[str] = Field(default_factory=list, description="D: project the direction (at its best layer) out "
                              "of every block's output during training (CAFT)")
    # persona monitor (off unless a direction is given): z-score of the model's own answers to the probes
    monitor_direction: str | None = Field(None, description="direction file (.safetensors) to watch during training")
    monitor_layer: int | None = Field(None, description="its layer (default: the direction's best layer)")
    monitor_probes: str = Field("core", description="question set whose first paraphrases are the probes")
    monitor_probe_count: int | None = Field(None, ge=1, description="only its first N questions (default: all)")
    monitor_threshold: float = Field(2.0, description="warn when the z-score against the base passes this")
    monitor_every: int = Field(10, ge=1)

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError("must be >= 1, or -1 to train for `epochs`")
        return value

    def resolved(self) -> TrainConfig:
        """Method presets applied (explicit values a user set stay as they are)."""
        updates = {}
        if self.method == "rslora":
            updates["use_rslora"] = True
        if self.method == "rank1":
            fields = self.model_fields_set
            updates |= {"r": 1, "target_modules": ["down_proj"]} | \
                ({} if "lora_alpha" in fields else {"lora_alpha": 256.0}) | \
                ({} if "learning_rate" in fields else {"learning_rate": 2e-5}) | \
                ({} if "use_rslora" in fields else {"use_rslora": False})
        return self.model_copy(update=updates)


def load_config(path: str | Path | None, overrides: dict, schema: type[BaseModel] | None = None):
    """A YAML file (optional) with command-line values on top, like TRL's parser; `schema` is TrainConfig unless
    another config (the OpenAI fine-tuning job's) is named."""
    values = {}
    if path is not None:
        path = Path(path)
        try:
            values = load_yaml(path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise InputError(f"{path}: cannot read the training config (it must be UTF-8 YAML): {error}") from None
        if not isinstance(values, dict):
            raise InputError(f"{path}: the training config must be a mapping of settings")
    values |= {k: v for k, v in overrides.items() if v is not None}
    where = f"{path}: " if path else ""
    try:
        return (schema or TrainConfig)(**values)
    except ValidationError as error:  # each problem named by its setting and flag
        problems = "; ".join(f"{_setting(e['loc'])}: {e['msg']} (got {e.get('input')!r})" for e in error.errors())
        raise InputError(f"{where}invalid training config: {problems}") from None
    except Exception as error:
        raise InputError(f"{where}invalid training config: {error}") from None


FLAGS = {"per_device_batch_size": "batch-size", "gradient_accumulation_steps": "grad-accum", "batch_size": "batch-size"}


def _setting(location: tuple) -> str:
    name = str(location[0]) if location else "config"
    return f"{name} (--{FLAGS.get(name, name.replace('_', '-'))})"
