"""A fine-tune as a job: the trainer with the monitors its config asks for. The training engine takes monitors (any
object with `name` and `__call__(model, tokenizer, step)`); it never builds them, so it needs no persona workflow."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import TrainerCallback

from turncoat.training.config import TrainConfig
from turncoat.training.trainer import Monitor, train
from turncoat.workflows.persona.monitor import persona_monitor


def fine_tune(config: TrainConfig, monitors: Sequence[Monitor] = (), callbacks: Sequence[TrainerCallback] = (),
              progress: bool = True, loaded=None) -> dict:
    """`turncoat.training.trainer.train`, with the persona monitor added when `config.monitor_direction` is set."""
    if config.monitor_direction:
        monitors = [*monitors, persona_monitor(config)]
    return train(config, monitors, callbacks, progress=progress, loaded=loaded)
