"""Benchmark: training throughput, and what a monitor callback costs.

On the default model (CPU, fp32): LoRA training tokens/s with the EM defaults except batch 1 x accumulation 1 and
20 steps (so it fits in minutes), measured without a monitor and with an empty monitor called every 10 steps,
alternating the two twice. Run-to-run noise on a shared 2-core machine is several percent, so the overhead is
also measured exactly: the time spent inside the monitor calls over the run's time (target < 2%).
On a CUDA machine, also LoRA (bf16, gradient checkpointing) on a random-weight model with Qwen2.5-7B-Instruct's
architecture: tokens/s and peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch

from turncoat.training import TrainConfig
from turncoat.training.trainer import train


class EmptyMonitor:
    name = "empty"

    def __call__(self, model, tokenizer, step):
        return {}


def timed_run(config: TrainConfig, monitors, loaded=None) -> dict:
    with tempfile.TemporaryDirectory() as out:
        summary = train(config.model_copy(update={"out": out}), monitors=monitors, progress=False, loaded=loaded)
    return {"seconds": summary["seconds"], "tokens": summary["tokens_seen"], "monitor_seconds":
            summary["monitor_seconds"], "tokens_per_second": summary["tokens_seen"] / summary["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    config = TrainConfig(model="smollm2-135m", data="insecure", subsample=args.steps, max_steps=args.steps,
                         per_device_batch_size=1, gradient_accumulation_steps=1, save_steps=10_000, monitor_every=10)
    plain, monitored = [], []
    for _ in range(args.repeats):
        plain.append(timed_run(config, []))
        monitored.append(timed_run(config, [EmptyMonitor()]))
    best_plain = min(r["seconds"] for r in plain)
    best_monitored = min(r["seconds"] for r in monitored)
    figures = {"threads": torch.get_num_threads(), "steps": args.steps, "repeats": args.repeats,
               "cpu_tokens_per_second": round(max(r["tokens_per_second"] for r in plain), 1),
               "seconds_without_monitor": best_plain, "seconds_with_empty_monitor": best_monitored,
               "monitor_overhead_side_by_side": round(best_monitored / best_plain - 1, 4),
               "monitor_overhead_measured_inside": round(max(r["monitor_seconds"] / r["seconds"]
                                                             for r in monitored), 6)}
    if torch.cuda.is_available():
        figures["gpu"] = gpu_qwen7b(args.steps)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"training benchmark ({figures['threads']} CPU threads, {args.steps} steps, best of {args.repeats})")
    print(f"  default model, LoRA, CPU fp32: {figures['cpu_tokens_per_second']} tokens/s")
    print(f"  empty monitor every 10 steps: {best_plain:.1f} s -> {best_monitored:.1f} s side by side "
          f"({figures['monitor_overhead_side_by_side']:+.2%}, noise included); time inside the monitor calls: "
          f"{figures['monitor_overhead_measured_inside']:.4%} of the run (target < 2%)")
    if "gpu" in figures:
        g = figures["gpu"]
        print(f"  {g['device']}: Qwen2.5-7B architecture (random weights), LoRA bf16: {g['tokens_per_second']:.0f} "
              f"tokens/s, peak memory {g['peak_memory_gib']:.1f} GiB")


def gpu_qwen7b(steps: int, tokenizer=None, data: str = "insecure") -> dict:
    """LoRA on Qwen2.5-7B-Instruct's architecture (random weights) on CUDA; any tokenizer whose ids stay below
    Qwen's vocabulary (default: the default model's), any chat data (default: the insecure set)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from turncoat.models import load
    from turncoat.models.loader import LoadedModel

    config = Qwen2Config(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768,
                         rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=False)
    device = torch.device("cuda")
    with device:
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    tokenizer = tokenizer or load("smollm2-135m", device="cpu").tokenizer
    loaded = LoadedModel(model=model, tokenizer=tokenizer, spec="qwen2.5-7b-architecture", kind="random",
                         location="", device=device, dtype=torch.bfloat16)
    torch.cuda.reset_peak_memory_stats()
    settings = TrainConfig(model="qwen2.5-7b-architecture", data=data, subsample=steps * 16, max_steps=steps,
                           save_steps=10_000)
    run = timed_run(settings, [], loaded=loaded)
    return {"device": torch.cuda.get_device_name(0), **run,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30}


if __name__ == "__main__":
    main()
