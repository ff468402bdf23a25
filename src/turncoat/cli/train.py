"""`turncoat train`: a thin shell over `turncoat.training.train` (a YAML config, flags on top)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from turncoat.cli._common import JsonOption, console, emit, err_console
from turncoat.core.errors import InputError


def train(config: Path = typer.Option(None, "--config", help="YAML with TrainConfig fields; flags override it."),
          backend: str = typer.Option("local", help="local (TRL + PEFT on this machine) or openai (OpenAI's "
                                                    "fine-tuning API; the paper's GPT-4o experiment)."),
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
          save_every: int = typer.Option(None, help="Also keep the weights every K steps (and at steps 0 and "
                                                    "last) in OUT/trajectory/step-N, each a loadable model."),
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
          steer: list[str] = typer.Option(None, help="D@L:ALPHA: add alpha x unit direction at block L in training "
                                                     "forward passes only (preventative steering; repeatable)."),
          ablate: list[str] = typer.Option(None, help="D: project the direction out of every block in training "
                                                      "forward passes only (CAFT; repeatable)."),
          monitor_direction: str = typer.Option(None, help="Persona direction (.safetensors) to watch: every "
                                                           "--monitor-every steps the z-score of the model's own "
                                                           "answers against the base goes into train_log.jsonl."),
          monitor_every: int = typer.Option(None, help="Monitor every N steps (default 10)."),
          monitor_layer: int = typer.Option(None, help="Direction layer to watch (default: its best layer)."),
          monitor_probes: str = typer.Option(None, help="Question set used as probes (default core)."),
          monitor_probe_count: int = typer.Option(None, help="Only the first N probe questions (default: all)."),
          monitor_threshold: float = typer.Option(None, help="Warn when z passes this (default 2)."),
          learning_rate_multiplier: float = typer.Option(None, help="openai: learning-rate multiplier (default 2, "
                                                                    "the paper's)."),
          suffix: str = typer.Option(None, help="openai: added to the fine-tuned model's name."),
          base_url: str = typer.Option(None, help="openai: the API's endpoint (default OpenAI's)."),
          api_key_env: str = typer.Option(None, help="openai: variable holding the API key (default "
                                                     "OPENAI_API_KEY)."),
          poll_seconds: float = typer.Option(None, help="openai: first wait between status checks (default 10)."),
          request_timeout: float = typer.Option(None, help="openai: seconds a request may take before it is "
                                                           "retried (default 120)."),
          prices: Path = typer.Option(None, help="openai: price table YAML (default the shipped, dated one)."),
          yes: bool = typer.Option(False, "--yes", help="openai: start without asking to confirm the estimated "
                                                        "cost."),
          as_json: bool = JsonOption):
    """Fine-tune a chat model (TRL SFTTrainer + PEFT, or OpenAI's API) with the EM paper's settings by default."""
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
                 "save_every": save_every,
                 "device": device, "dtype": dtype, "report_to": report_to or None, "steer": steer or None,
                 "ablate": ablate or None,
                 "merge": merge, "group_by_length": group_by_length,
                 "padding_free": padding_free, "monitor_direction": monitor_direction, "monitor_every": monitor_every,
                 "monitor_layer": monitor_layer, "monitor_probes": monitor_probes,
                 "monitor_probe_count": monitor_probe_count,
                 "monitor_threshold": monitor_threshold}
    if backend == "openai":
        emit(_train_openai(config, overrides, {"learning_rate_multiplier": learning_rate_multiplier,
                                               "suffix": suffix, "base_url": base_url, "api_key_env": api_key_env,
                                               "poll_seconds": poll_seconds, "request_timeout": request_timeout},
                           prices, yes, as_json), as_json,
             lambda f: console.print_json(data=f))
        return
    if backend != "local":
        raise InputError(f"--backend {backend!r}: choose local or openai")
    api_only = [f"--{k.replace('_', '-')}" for k, v in {"learning_rate_multiplier": learning_rate_multiplier,
                                                         "suffix": suffix, "base_url": base_url,
                                                         "api_key_env": api_key_env, "poll_seconds": poll_seconds,
                                                         "request_timeout": request_timeout,
                                                         "prices": prices}.items() if v is not None]
    if api_only:
        raise InputError(f"{', '.join(api_only)}: only with --backend openai")
    settings = load_config(config, overrides)
    summary = run_training(settings, progress=not as_json)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun / accelerate launch, the main process reports
        emit(summary, as_json, lambda f: console.print_json(data=f))


def _train_openai(config, overrides: dict, api: dict, prices, yes: bool, quiet: bool) -> dict:
    """`--backend openai`: the job's settings, the cost shown (and confirmed) before anything is sent."""
    import sys

    from turncoat.sampling.openai_costs import Prices
    from turncoat.training.openai_finetune import OpenAIFineTuneConfig, fine_tune_openai

    mapped = {"per_device_batch_size": "batch_size"}
    values = {mapped.get(k, k): v for k, v in overrides.items() if v is not None}
    local_only = sorted(k for k in values if k not in OpenAIFineTuneConfig.model_fields)
    if local_only:
        raise InputError(f"{', '.join('--' + k.replace('_', '-') for k in local_only)}: not a setting of OpenAI "
                         "fine-tuning (--backend openai takes --epochs, --batch-size, --learning-rate-multiplier, "
                         "--seed, --suffix, --subsample)")
    settings = load_openai_config(config, values | {k: v for k, v in api.items() if v is not None})
    table = Prices.load(prices)  # a bad table is refused before anything else

    def confirm(figures: dict) -> bool:
        err_console.print(f"OpenAI fine-tuning of {settings.model} on {figures['examples']} examples x "
                      f"{figures['epochs']} epoch(s): about {figures['training_tokens']:,} training tokens, "
                      f"estimated ${figures['cost_usd']:,.2f} ({figures['prices']})", highlight=False)
        if yes:
            return True
        if not sys.stdin.isatty():
            raise InputError("no terminal to confirm the estimated cost: pass --yes")
        return typer.confirm("Start the job?")

    seen = []

    def show(job) -> None:  # each status once, as the job moves on
        if not quiet and (not seen or seen[-1] != job.status):
            seen.append(job.status)
            tokens = getattr(job, "trained_tokens", None)
            err_console.print(f"job {job.id}: {job.status}" + (f" ({tokens:,} tokens trained)" if tokens else ""),
                              highlight=False)

    return fine_tune_openai(settings, confirm=confirm, on_status=show, prices=table)


def load_openai_config(config, values: dict):
    from turncoat.training import load_config  # pulls in torch: loaded when the command runs
    from turncoat.training.openai_finetune import OpenAIFineTuneConfig

    return load_config(config, values, schema=OpenAIFineTuneConfig)
