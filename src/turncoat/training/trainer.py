"""`turncoat train`: supervised fine-tuning through TRL's SFTTrainer and PEFT (no hand-written loop).

The output folder holds the adapter (or full weights) as safetensors in Hugging Face format, `turncoat_train.json`
(the exact config, data name and sha256, library versions, rendering and truncation counts, held-out losses),
`train_log.jsonl` (one line per step: loss, lr, grad norm, tokens/s, and monitor metrics), and `checkpoints/` for
resuming: rerunning the same command after an interrupt continues from the last checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

from turncoat.activations.hooks import intervention_hooks
from turncoat.core.errors import InputError
from turncoat.core.io import append_jsonl, atomic_write, read_jsonl, write_jsonl
from turncoat.core.provenance import library_versions
from turncoat.data import ChatDataset, load_chat
from turncoat.data.transforms import dataset_sha256, holdout_split
from turncoat.models import load
from turncoat.training.config import TrainConfig
from turncoat.training.rendering import assistant_loss, render_dataset


class Monitor(Protocol):
    """Called every K steps with the live model and tokenizer; returns metrics for the step log."""

    name: str

    def __call__(self, model, tokenizer, step: int) -> dict[str, float]: ...

class StepLog(TrainerCallback):
    """One JSON line per logged step, with tokens/s; monitor metrics are added to the same file."""

    def __init__(self, path: Path):
        self.path = path
        self.last: tuple[float, int] | None = None

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            append_jsonl(handle, [record])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        now, seen = time.perf_counter(), state.num_input_tokens_seen
        rate = None
        if self.last is not None and now > self.last[0]:
            rate = (seen - self.last[1]) / (now - self.last[0])
        self.last = (now, seen)
        self.write({"step": state.global_step, "epoch": logs.get("epoch"), "loss": logs.get("loss"),
                    "learning_rate": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm"),
                    "tokens_seen": seen, "tokens_per_second": rate})

class MonitorCallback(TrainerCallback):
    def __init__(self, monitors: Sequence[Monitor], every: int, tokenizer, log: StepLog):
        self.monitors, self.every, self.tokenizer, self.log = list(monitors), every, tokenizer, log
        self.seconds = 0.0  # time spent in monitors, reported so their cost is known

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        """Monitors that compare against the base model measure it now; a fresh run logs step 0."""
        if not state.is_world_process_zero:
            return
        for monitor in self.monitors:
            if hasattr(monitor, "begin"):
                monitor.begin(model, self.tokenizer)
        if state.global_step == 0:
            self._run(state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if not self.monitors or state.global_step % self.every or not state.is_world_process_zero:
            return
        self._run(state, model)

    def _run(self, state, model) -> None:
        began = time.perf_counter()
        for monitor in self.monitors:
            was_training = model.training
            metrics = monitor(model, self.tokenizer, state.global_step)
            model.train(was_training)
            self.log.write({"step": state.global_step, "monitor": monitor.name, **metrics})
        self.seconds += time.perf_counter() - began

TRAJECTORY = "trajectory"


class Trajectory(TrainerCallback):
    """The weights every `every` optimiser steps, at step 0 and at the end, each saved as a model turncoat loads
    (`out/trajectory/step-N`): what EM-vs-step curves and the LoRA phase-transition plot read. A resumed run
    rewrites the steps after its checkpoint, as the uninterrupted run wrote them."""

    def __init__(self, out: Path, every: int, tokenizer, base_spec: str | None):
        self.folder, self.every, self.tokenizer, self.base_spec = out / TRAJECTORY, every, tokenizer, base_spec

    def save(self, state, model) -> None:
        if not state.is_world_process_zero:
            return
        target = self.folder / f"step-{state.global_step}"
        model.save_pretrained(target, safe_serialization=True)
        self.tokenizer.save_pretrained(target)
        if self.base_spec:
            _point_adapter_at(target, self.base_spec)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0:
            self.save(state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.save(state, model)


def trajectory_steps(out: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every kept snapshot of a training run, in step order."""
    folder = Path(out) / TRAJECTORY
    found = [(int(p.name.split("-", 1)[1]), p) for p in folder.glob("step-*") if p.name.split("-", 1)[1].isdigit()
             and any(p.glob("*.safetensors"))] if folder.is_dir() else []
    return sorted(found)


# settings that change only bookkeeping: a resumed run may differ in these and still continue the same training
BOOKKEEPING = {"out", "save_steps", "save_total_limit", "save_every", "logging_steps", "merge", "device", "report_to",
               "monitor_every", "monitor_probes", "monitor_probe_count", "monitor_threshold", "monitor_layer",
               "monitor_direction"}
FINGERPRINT = "turncoat_fingerprint.json"


def fingerprint(config: TrainConfig, train_set: ChatDataset, holdout: ChatDataset) -> dict:
    """What must be the same for a checkpoint to be continued: the model, the exact training examples and every
    setting that changes the optimisation."""
    return {"model": config.model, "data_sha256": dataset_sha256(train_set),
            "holdout_sha256": dataset_sha256(holdout) if len(holdout) else None,
            "config": config.model_dump(exclude=BOOKKEEPING | {"model"})}


def check_fingerprint(out: Path, expected: dict, checkpoints: list[Path]) -> None:
    """A rerun continues `out`'s checkpoints only if they were made by the same training; otherwise exit 2 naming
    what differs (resuming another model's or another data set's optimiser state would be silently wrong)."""
    path = out / FINGERPRINT
    if not checkpoints:
        with atomic_write(path) as handle:
            json.dump(expected, handle, indent=2)
        return
    if not path.is_file():
        raise InputError(f"{out}: holds checkpoints but no {FINGERPRINT}, so they cannot be checked against this "
                         f"training; use another --out, or delete {out / 'checkpoints'} to start over")
    found = json.loads(path.read_text(encoding="utf-8"))
    differs = [key for key in ("model", "data_sha256", "holdout_sha256") if found.get(key) != expected[key]]
    old, new = found.get("config", {}), expected["config"]
    differs += [f"{key} ({old.get(key)!r} there, {new.get(key)!r} now)" for key in sorted(set(old) | set(new))
                if old.get(key) != new.get(key)]
    if differs:
        raise InputError(f"{out}: its checkpoints are of another training; differs: {', '.join(differs)}. Use "
                         f"another --out, or delete {out / 'checkpoints'} to start over")


def complete_checkpoints(folder: Path) -> list[Path]:
    """The checkpoints the Trainer finished writing, oldest first. It writes trainer_state.json last, so a
    checkpoint whose state does not parse, or names another step, was cut off mid-write (kill -9): it is removed,
    and training resumes from the newest complete one."""
    import shutil

    if not folder.is_dir():
        return []
    complete = []
    for candidate in sorted(folder.glob("checkpoint-*"), key=checkpoint_step):
        try:
            step = json.loads((candidate / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
            whole = step == checkpoint_step(candidate)
        except (OSError, ValueError, KeyError, TypeError):
            whole = False
        if whole:
            complete.append(candidate)
        elif candidate.is_dir():
            shutil.rmtree(candidate)
            print(f"turncoat train: removed {candidate}: an incomplete checkpoint (its write was interrupted)",
                  file=sys.stderr)
    return complete


def checkpoint_step(folder: str | Path) -> int:
    """N of a `checkpoint-N` folder (-1 for a name without one)."""
    tail = Path(folder).name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def keep_log_until(path: Path, step: int) -> None:
    """A resumed run logs again from the checkpoint's step on: drop what an interrupted run logged after it, so
    every step is logged once."""
    if path.is_file():
        write_jsonl(path, [r for r in read_jsonl(path) if r.get("step", 0) <= step])


def mean_train_loss(path: Path) -> float | None:
    """Mean loss per optimiser step over the whole training, read from the step log (the Trainer's own figure
    covers only the steps since the last resume); each logged loss averages the steps since the one before."""
    losses = sorted((r["step"], r["loss"]) for r in read_jsonl(path) if "loss" in r and "monitor" not in r)
    steps = [b - a for a, b in zip([0] + [s for s, _ in losses], [s for s, _ in losses], strict=False)]
    return sum(w * loss for w, (_, loss) in zip(steps, losses, strict=True)) / sum(steps) if sum(steps) else None


class Interventions(TrainerCallback):
    """Steering or ablation hooks attached for each optimiser step's forward and backward passes only: monitors,
    held-out losses and the saved adapter see the model without them. First in the callback list, so the hooks are
    off before any other step-end callback runs."""

    def __init__(self, steer: Sequence[str], ablate: Sequence[str]):
        self.steer, self.ablate, self.hooks, self.handles = list(steer), list(ablate), None, []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if self.hooks is None:  # named on the model being trained (PEFT wraps the base and renames its blocks)
            self.hooks = intervention_hooks(model, self.steer, self.ablate)[0]
        modules = dict(model.named_modules())
        self.handles = [modules[name].register_forward_hook(hook) for name, hook in self.hooks]

    def on_step_end(self, args, state, control, **kwargs):
        for handle in self.handles:
            handle.remove()
        self.handles = []

    on_train_end = on_step_end


def split_data(config: TrainConfig) -> tuple[ChatDataset, ChatDataset]:
    """The config's training examples and held-out examples (`turncoat.data.transforms.holdout_split`)."""
    return holdout_split(load_chat(config.data), config.holdout, config.subsample, config.seed)

def packing_is_exact(model, table, width: int = 48) -> bool:
    """Padding-free batches are right only if the model turns restarting position ids into per-example attention
    (transformers' masking utilities do for eager, sdpa and flash attention; older model code may not). Checked on
    two training examples, without a KV cache as in training: their log-probs packed in one row must match each
    alone."""
    import torch

    rows = [list(table[i]["input_ids"][:width]) for i in range(min(2, len(table)))]
    if len(rows) < 2:
        return True
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        alone = torch.cat([model(input_ids=torch.tensor([r], device=device), use_cache=False).logits[0] for r in rows])
        positions = [p for r in rows for p in range(len(r))]
        together = model(input_ids=torch.tensor([rows[0] + rows[1]], device=device),
                         position_ids=torch.tensor([positions], device=device), use_cache=False).logits[0]
    model.train(was_training)
    gap = (alone.float().log_softmax(-1) - together.float().log_softmax(-1)).abs().max().item()
    return gap < (1e-3 if alone.dtype == torch.float32 else 5e-2)

def _device(config: TrainConfig) -> str:
    import torch

    if config.device == "auto" and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return f"cuda:{os.environ['LOCAL_RANK']}"  # one GPU per process under accelerate launch
    return config.device

def train(config: TrainConfig, monitors: Sequence[Monitor] = (), callbacks: Sequence[TrainerCallback] = (),
          progress: bool = True, loaded=None) -> dict:
    """Fine-tune per `config`; `loaded` (a LoadedModel) replaces loading `config.model` (benchmarks use it)."""
    import torch
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    config = config.resolved()
    train_set, holdout = split_data(config)  # bad data is refused before the model loads or --out is made
    loaded = loaded or load(config.model, device=_device(config), dtype=config.dtype, trainable=True)
    blocks = getattr(loaded.model.config, "num_hidden_layers", None)
    if config.layers and blocks is not None and max(config.layers) >= blocks:
        raise InputError(f"layers (--layers) {','.join(map(str, config.layers))}: {config.model} has {blocks} "
                         f"blocks, 0..{blocks - 1}")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)  # only once the data, the model and the settings are known to be good
    checkpoints = complete_checkpoints(out / "checkpoints")
    check_fingerprint(out, fingerprint(config, train_set, holdout), checkpoints)
    last = str(checkpoints[-1]) if checkpoints else None
    tokenizer = loaded.tokenizer
    table, rendering = render_dataset(tokenizer, train_set, config.max_length)
    if len(table) == 0:
        raise InputError(f"{config.data}: no training example keeps any answer token within max_length "
                         f"{config.max_length} ({rendering['dropped_no_answer_left']} dropped); raise max_length")
    began = time.perf_counter()
    base_holdout_loss = assistant_loss(loaded.model, tokenizer, holdout, config.max_length) if len(holdout) else None

    cuda = loaded.device.type == "cuda"
    continuing = loaded.kind == "adapter"  # train the adapter further (re-alignment), not a new one on top
    mixed_bf16 = loaded.dtype == torch.bfloat16
    if mixed_bf16 and not cuda and config.method == "full" and not continuing:
        loaded.model.float()  # fp32 master weights and optimizer state; bf16 autocast does the matmuls
    packed = config.padding_free and packing_is_exact(loaded.model, table)
    rendering["padding_free"] = packed
    checkpointing = cuda if config.gradient_checkpointing is None else config.gradient_checkpointing
    peft_config = None
    if continuing:
        if config.method == "full":
            raise InputError(f"{config.model} is a LoRA adapter: full fine-tuning needs merged weights "
                             f"(`turncoat train --merge` writes them)")
        if not any(parameter.requires_grad for parameter in loaded.model.parameters()):
            raise InputError(f"{config.model}: the adapter was loaded frozen; load it with trainable=True")
    elif config.method != "full":
        peft_config = LoraConfig(r=config.r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules=config.target_modules, use_rslora=config.use_rslora,
                                 layers_to_transform=config.layers, task_type="CAUSAL_LM")
    args = SFTConfig(
        output_dir=str(out / "checkpoints"), per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type, warmup_steps=config.warmup_steps,
        num_train_epochs=config.epochs, max_steps=config.max_steps, weight_decay=config.weight_decay,
        seed=config.seed, data_seed=config.seed, logging_steps=config.logging_steps, save_steps=config.save_steps,
        save_total_limit=config.save_total_limit, max_length=None if packed else config.max_length, padding_free=packed,
        bf16=mixed_bf16,  # autocast; LoRA weights stay fp32 (PEFT upcasts adapters), so does the optimizer state
        gradient_checkpointing=checkpointing, include_num_input_tokens_seen="non_padding",
        report_to=list(config.report_to),
        disable_tqdm=not progress, use_cpu=not cuda, dataloader_num_workers=0, ddp_find_unused_parameters=False,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
    )
    if config.monitor_direction and not any(getattr(m, "name", "") == "persona" for m in monitors):
        raise InputError("monitor_direction is set but no persona monitor was passed: train through "
                         "turncoat.workflows.finetune.fine_tune, which builds it from the config")
    interventions = intervention_hooks(loaded.model, config.steer, config.ablate)[1]  # bad files refused now
    step_log = StepLog(out / "train_log.jsonl")
    if last:
        keep_log_until(step_log.path, checkpoint_step(last))
    elif step_log.path.exists():
        step_log.path.unlink()  # a fresh start: the log of a run that never reached a checkpoint is not this one's
    monitoring = MonitorCallback(monitors, config.monitor_every, tokenizer, step_log)
    base_spec = (loaded.base if continuing else config.model) if peft_config is not None or continuing else None
    snapshots = [Trajectory(out, config.save_every, tokenizer, base_spec)] if config.save_every else []
    trainer = SFTTrainer(model=loaded.model, args=args, train_dataset=table, processing_class=tokenizer,
                         peft_config=peft_config,
                         callbacks=[*([Interventions(config.steer, config.ablate)] if interventions else []),
                                    step_log, monitoring, *snapshots, *callbacks])
    if not progress:  # quiet (e.g. --json): the step log file has every figure; keep stdout clean
        trainer.remove_callback(PrinterCallback)
    result = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - began
    summary = {"out": str(out), "model": config.model, "method": config.method, "data": config.data,
               "train_examples": len(train_set), "holdout_examples": len(holdout), "rendering": rendering,
               "steps": trainer.state.global_step, "resumed_from": last,
               "train_loss": mean_train_loss(step_log.path) or result.training_loss,
               "seconds": round(seconds, 1), "tokens_seen": trainer.state.num_input_tokens_seen,
               "monitor_seconds": round(monitoring.seconds, 4), "interventions": interventions,
               "dtype": loaded.dtype_name, "bf16_autocast": mixed_bf16}
    if not trainer.is_world_process_zero():
        return summary
    model = trainer.model
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if base_spec:
        _point_adapter_at(out, base_spec)
    if len(holdout):
        summary["holdout_loss_base"] = base_holdout_loss
        summary["holdout_loss_trained"] = assistant_loss(model, tokenizer, holdout, config.max_length)
    if config.merge and (peft_config is not None or continuing):
        merged = model.merge_and_unload()
        merged.save_pretrained(out / "merged", safe_serialization=True)
        tokenizer.save_pretrained(out / "merged")
        summary["merged"] = str(out / "merged")
    record = {**summary, "config": config.model_dump(), "data_sha256": dataset_sha256(train_set),
              "holdout_sha256": dataset_sha256(holdout) if len(holdout) else None, "versions": library_versions()}
    with atomic_write(out / "turncoat_train.json") as handle:
        json.dump(record, handle, indent=2)
    return summary

def _point_adapter_at(out: Path, base_spec: str) -> None:
    """The adapter names its base by the spec turncoat was given (an alias, path or Hub id), so it reloads anywhere
    turncoat runs."""
    path = out / "adapter_config.json"
    adapter = json.loads(path.read_text())
    adapter["base_model_name_or_path"] = base_spec
    path.write_text(json.dumps(adapter, indent=2))

