"""Training: SFT with LoRA / rsLoRA / rank-1 LoRA / full fine-tuning over TRL and PEFT."""

from turncoat.training.config import TrainConfig, load_config
from turncoat.training.rendering import assistant_loss, assistant_spans, render_dataset, render_example

__all__ = ["TrainConfig", "assistant_loss", "assistant_spans", "load_config", "render_dataset", "render_example",
           "train"]


def __getattr__(name: str):
    if name in ("train", "Monitor", "split_data"):
        from turncoat.training import trainer  # torch, TRL and PEFT: loaded on first use, not on import

        return getattr(trainer, name)
    raise AttributeError(name)
