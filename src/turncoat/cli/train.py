"""`turncoat train`: a thin shell over `turncoat.training.train` (a YAML config, flags on top)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from turncoat.cli._common import JsonOption, console, emit
from turncoat.core.errors import InputError


def train(config: Path = typer.Option(None, "--config", help="YAML with TrainConfig fields; flags override it."),
          model: str = typer.Option(None, help="Model spec (default smollm2-135m)."),
          data: str = typer.Option(None, help="Chat JSONL or registered set (default insecure)."),
          out: str = typer.Option(None, help="Output folder (rerun to resume)."),
          subsample: int = typer.Option(None, help="Train on N distinct examples."),
          holdout: int = typer.Option(None, help="Keep N distinct examples out; report their loss before/after."),
          method: str = typer.Option(None, help="lora (default), rslora, rank1 or full."),
          r: int = typer.Option(None, help="LoRA rank (default 32)."),
          lora_alpha: float = typer.Option(None, help="LoRA alpha (default 64)."),
          layers: str = typer.Option(None, help="Comma-separated block indices (0-based) to adapt, e.g. 21."),
          target_modules: str = typer.Option(None, help="Comma-separated module names (default: all projections)."),
          learning_rate: float = typer.Option(None, help="Default 1e-5."),
          epochs: float = typer.Option(None, help="Default 1."),
          max_steps: int = typer.Option(None, help="Stop after this many optimiser steps."),
          batch_size: int = typer.Option(None, help="Per-device batch size (default 2)."),
          grad_accum: int = typer.Option(None, help="Gradient accumulation steps (default 8)."),
          max_length: int = typer.Option(None, help="Tokens per example (default 2048); longer ones are cut."),
          seed: int = typer.Option(None, help="Default 0."),
          save_steps: int = typer.Option(None, help="Checkpoint every N steps (default 10)."),
          save_total_limit: int = typer.Option(None, help="Checkpoints kept, the newest (default 2)."),
          report_to: list[str] = typer.Option(None, help="Log every step live to wandb or mlflow (repeatable; each "
                                                         "reads its credentials from the environment)."),
          device: str = typer.Option(None, help="auto, cpu, cuda, cuda:N."),
          dtype: str = typer.Option(None, help="auto (CUDA bf16; CPU bf16 if native, else fp32), float32, bfloat16."),
          merge: bool = typer.Option(None, "--merge/--no-merge", help="Also write merged full weights."),
          group_by_length: bool = typer.Option(None, "--group-by-length/--random-order",
                                               help="Batch similar lengths together (less padding; default off)."),
          padding_free: bool = typer.Option(None, "--padding-free/--padded",
                                            help="Pack each micro-batch into one row instead of padding (default "
                                                 "on; same loss, checked on the model first)."),
          monitor_direction: str = typer.Option(None, help="Persona direction (.safetensors) to watch: every "
                                                           "--monitor-every steps the z-score of the model's own "
                                                           "answers against the base goes into train_log.jsonl."),
          monitor_every: int = typer.Option(None, help="Monitor every N steps (default 10)."),
          monitor_layer: int = typer.Option(None, help="Direction layer to watch (default: its best layer)."),
          monitor_probes: str = typer.Option(None, help="Question set used as probes (default core)."),
          monitor_probe_count: int = typer.Option(None, help="Only the first N probe questions (default: all)."),
          monitor_threshold: float = typer.Option(None, help="Warn when z passes this (default 2)."),
          as_json: bool = JsonOption):
    """Fine-tune a chat model (TRL SFTTrainer + PEFT) with the EM paper's settings by default."""
    from turncoat.training import load_config  # pulls in torch: loaded when the command runs
    from turncoat.workflows.finetune import fine_tune as run_training  # pulls in torch: loaded when the command runs

    def listed(value, cast=str, flag=""):
        try:
            return None if value is None else [cast(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise InputError(f"{flag} {value!r}: expected comma-separated {cast.__name__} values") from None

    overrides = {"model": model, "data": data, "out": out, "subsample": subsample, "holdout": holdout,
                 "method": method, "r": r, "lora_alpha": lora_alpha, "layers": listed(layers, int, "--layers"),
                 "target_modules": listed(target_modules), "learning_rate": learning_rate, "epochs": epochs,
                 "max_steps": max_steps, "per_device_batch_size": batch_size, "gradient_accumulation_steps": grad_accum,
                 "max_length": max_length, "seed": seed, "save_steps": save_steps, "save_total_limit": save_total_limit,
                 "device": device, "dtype": dtype, "report_to": report_to or None,
                 "merge": merge, "group_by_length": group_by_length,
                 "padding_free": padding_free, "monitor_direction": monitor_direction, "monitor_every": monitor_every,
                 "monitor_layer": monitor_layer, "monitor_probes": monitor_probes,
                 "monitor_probe_count": monitor_probe_count,
                 "monitor_threshold": monitor_threshold}
    settings = load_config(config, overrides)
    summary = run_training(settings, progress=not as_json)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun / accelerate launch, the main process reports
        emit(summary, as_json, lambda f: console.print_json(data=f))
