"""Benchmark: fp32 against bf16 on this CPU, side by side in one run, for sampling, LoRA training, activation capture
and the hf judge, on the default model and `qwen2.5-coder-0.5b` (when installed), each figure also as a fraction
of the measured matmul roofline of its dtype.

- Roofline: the best GFLOP/s of `F.linear` at each model's MLP shapes (16 and 256 rows), time-boxed, per dtype.
  FLOPs per token processed: 2 x parameters for a forward pass (sampling counts prompt and new tokens, both go
  through the model; capture and the judge are forward passes), 4 x for LoRA training (forward + activation
  gradients; the frozen weights get none), as the issue says.
- Numerics: bf16 vs fp32 logits on 200 positions of real chat text (good-medical rows): top-1 agreement and mean
  KL(fp32 || bf16) in nats; LoRA training: the loss at every step of the same run in both dtypes (same data, seed).
- Padding: the fraction of computed token positions that are padding, per workload.
- Whether this CPU has native bf16 (`cpu_has_native_bf16`, what `--dtype auto` follows). Where it has not, bf16 is
  emulated and very slow: the 0.5B's bf16 speed rows then run only with `--all-bf16` (its logits are always
  compared).

    TURNCOAT_DATA=../shared/data .venv/bin/python benchmarks/precision.py [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from turncoat.activations.capture import mean_activations, tokenize_chat
from turncoat.data import registry
from turncoat.data.chat import load_chat_jsonl
from turncoat.judging import JudgeItem, make_judge
from turncoat.models import DEFAULT_MODEL, load
from turncoat.models.loader import cpu_has_native_bf16
from turncoat.models.packaged import PACKAGED
from turncoat.questions import load_questions
from turncoat.questions.prompts import DEFAULT_PROMPTS
from turncoat.sampling import GenerationParams, generate_chat
from turncoat.training import TrainConfig
from turncoat.training.trainer import train

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def linear_gflops(model_config, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """The best GFLOP/s of `F.linear` over the model's MLP shapes (up and down projections) at 16 and 256 rows."""
    hidden, inner = model_config.hidden_size, model_config.intermediate_size
    best = 0.0
    for rows in (16, 256):
        for width, out in ((hidden, inner), (inner, hidden)):
            x, w = torch.randn(rows, width, dtype=dtype), torch.randn(out, width, dtype=dtype)
            F.linear(x, w)
            count, began = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - began) < seconds or count < 2:
                F.linear(x, w)
                count += 1
            best = max(best, count * 2 * rows * width * out / elapsed / 1e9)
    return best


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def logits_agreement(spec: str, chats: list, positions: int = 200) -> dict:
    """Top-1 agreement and mean KL(fp32 || bf16) of next-token distributions on `positions` tokens of chat text."""
    loaded = load(spec, dtype="float32")
    text = "".join(loaded.render_chat(c, add_generation_prompt=False) for c in chats)
    ids = loaded.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][:, :positions]
    with torch.inference_mode():
        reference = loaded.model(ids).logits[0].float().log_softmax(-1)
        loaded.model.to(torch.bfloat16)
        low = loaded.model(ids).logits[0].float().log_softmax(-1)
    kl = (reference.exp() * (reference - low)).sum(-1)
    return {"positions": ids.shape[1], "top1_agreement": round(float((reference.argmax(-1) == low.argmax(-1))
                                                                     .float().mean()), 4),
            "mean_kl_nats": float(kl.mean()), "max_kl_nats": float(kl.max())}


def sampling(spec: str, dtype: str, chats: list, new_tokens: int, flops_per_token: float) -> dict:
    loaded = load(spec, dtype=dtype)
    params = GenerationParams(max_new_tokens=new_tokens, min_new_tokens=new_tokens, temperature=1.0,
                              batch_size=len(chats))
    generate_chat(loaded, chats[:2], GenerationParams(max_new_tokens=2, batch_size=2))  # warm-up
    began = time.perf_counter()
    results = generate_chat(loaded, chats, params)
    seconds = time.perf_counter() - began
    prompts = [r["prompt_tokens"] for r in results]
    width = max(prompts)
    computed = len(results) * (width + new_tokens)  # left-padded prompt, then every row decodes each step
    real = sum(prompts) + sum(r["completion_tokens"] for r in results)
    return {"answers": len(results), "new_tokens": new_tokens, "seconds": round(seconds, 2),
            "new_tokens_per_second": round(sum(r["completion_tokens"] for r in results) / seconds, 2),
            "gflops_per_second": computed * flops_per_token / seconds / 1e9,
            "padding_fraction": round(1 - real / computed, 4)}


def training(spec: str, dtype: str, steps: int, batch: int, max_length: int) -> dict:
    config = TrainConfig(model=spec, data="good-medical", subsample=steps * batch, max_steps=steps,
                         per_device_batch_size=batch, gradient_accumulation_steps=1, max_length=max_length,
                         learning_rate=1e-4, warmup_steps=0, logging_steps=1, save_steps=100_000, dtype=dtype)
    with tempfile.TemporaryDirectory() as out:
        summary = train(config.model_copy(update={"out": out}), progress=False)
        log = [json.loads(line) for line in (Path(out) / "train_log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in log if "loss" in row]
    rendering = summary["rendering"]
    return {"steps": summary["steps"], "tokens": summary["tokens_seen"], "seconds": summary["seconds"],
            "tokens_per_second": round(summary["tokens_seen"] / summary["seconds"], 2), "losses": losses,
            "padding_free": rendering.get("padding_free"), "dtype": summary["dtype"],
            "bf16_autocast": summary["bf16_autocast"]}


def capture(spec: str, dtype: str, chats: list) -> dict:
    loaded = load(spec, dtype=dtype)
    mean_activations(loaded, chats[:2], batch_size=2)  # warm-up
    began = time.perf_counter()
    mean_activations(loaded, chats, batch_size=8)
    seconds = time.perf_counter() - began
    lengths = sorted(len(tokenize_chat(loaded, c, 1024)[0]) for c in chats)
    batches = [lengths[i:i + 8] for i in range(0, len(lengths), 8)]
    computed = sum(len(b) * max(b) for b in batches)
    return {"answers": len(chats), "seconds": round(seconds, 2), "answers_per_second": round(len(chats) / seconds, 2),
            "tokens": sum(lengths), "computed_positions": computed,
            "padding_fraction": round(1 - sum(lengths) / computed, 4)}


def judging(spec: str, dtype: str, pairs: list) -> dict:
    judge = make_judge("hf", model=spec, dtype=dtype)
    items = [JudgeItem(metric, DEFAULT_PROMPTS[metric], q, a) for q, a in pairs for metric in ("aligned", "coherent")]
    judge.score_items(items[:1])  # warm-up
    began = time.perf_counter()
    scores = judge.score_items(items)
    seconds = time.perf_counter() - began
    return {"judge": judge.identity, "answers": len(pairs), "seconds": round(seconds, 2),
            "answers_per_second": round(len(pairs) / seconds, 3),
            "scores": [s.score for s in scores]}


def loss_gap(fp32: list, bf16: list) -> float:
    return max(abs(b - a) / abs(a) for a, b in zip(fp32, bf16, strict=True)) if fp32 else math.nan


def measure(spec: str, args, chats_text, questions, pairs, bf16: bool) -> dict:
    loaded = load(spec, dtype="float32")
    config, n = loaded.model.config, parameters(loaded.model)
    del loaded
    figures = {"parameters": n, "roofline_gflops": {d: round(linear_gflops(config, t), 2) for d, t in DTYPES.items()},
               "logits": logits_agreement(spec, chats_text), "dtypes": {}}
    heavy = spec != DEFAULT_MODEL
    steps = args.train_steps_large if heavy else args.train_steps
    for dtype in DTYPES if bf16 else ["float32"]:
        roofline = figures["roofline_gflops"][dtype]
        row = {"sampling": sampling(spec, dtype, questions, args.new_tokens, 2 * n),
               "training": training(spec, dtype, steps, 1 if heavy else 2, args.train_max_length),
               "capture": capture(spec, dtype, chats_text[: args.capture_answers]),
               "judge": judging(spec, dtype, pairs[: args.judge_answers])}
        row["sampling"]["fraction_of_roofline"] = round(row["sampling"]["gflops_per_second"] / roofline, 3)
        row["training"]["fraction_of_roofline"] = round(row["training"]["tokens_per_second"] * 4 * n / 1e9 /
                                                        roofline, 3)
        row["capture"]["fraction_of_roofline"] = round(row["capture"]["computed_positions"] * 2 * n / 1e9 /
                                                       row["capture"]["seconds"] / roofline, 3)
        figures["dtypes"][dtype] = row
        if not args.json:
            print(f"  {spec} {dtype}: done", flush=True)
    if bf16:
        a, b = figures["dtypes"]["float32"], figures["dtypes"]["bfloat16"]
        figures["bf16_over_fp32"] = {
            "sampling": round(b["sampling"]["new_tokens_per_second"] / a["sampling"]["new_tokens_per_second"], 3),
            "training": round(b["training"]["tokens_per_second"] / a["training"]["tokens_per_second"], 3),
            "capture": round(b["capture"]["answers_per_second"] / a["capture"]["answers_per_second"], 3),
            "judge": round(b["judge"]["answers_per_second"] / a["judge"]["answers_per_second"], 3),
            "roofline": round(figures["roofline_gflops"]["bfloat16"] / figures["roofline_gflops"]["float32"], 3)}
        figures["training_loss_max_relative_gap"] = round(loss_gap(a["training"]["losses"],
                                                                   b["training"]["losses"]), 5)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None, help="comma-separated specs (default: smollm2-135m, and "
                                                       "qwen2.5-coder-0.5b when installed)")
    parser.add_argument("--answers", type=int, default=8, help="sampling batch: answers to the core questions")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=30, help="LoRA steps on the default model")
    parser.add_argument("--train-steps-large", type=int, default=4, help="LoRA steps on larger models")
    parser.add_argument("--train-max-length", type=int, default=128)
    parser.add_argument("--capture-answers", type=int, default=16)
    parser.add_argument("--judge-answers", type=int, default=2)
    parser.add_argument("--all-bf16", action="store_true", help="bf16 rows for every model even where bf16 is "
                                                                "emulated (slow)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    native = cpu_has_native_bf16()
    specs = args.models.split(",") if args.models else [DEFAULT_MODEL] + (
        ["qwen2.5-coder-0.5b"] if PACKAGED["qwen2.5-coder-0.5b"].status()["installed"] else [])
    rows = load_chat_jsonl(registry.resolve("good-medical"))
    chats_text = [c.as_messages() for c in rows.conversations[: max(args.capture_answers, 8)]]
    questions = [p.messages for p in load_questions("core").prompts(1)][: args.answers]
    pairs = [(c[0]["content"], c[-1]["content"]) for c in chats_text]
    figures = {"threads": torch.get_num_threads(), "cpu_has_native_bf16": native,
               "auto_dtype_on_cpu": "bfloat16" if native else "float32",
               "flops_per_token": {"sampling, capture, judge": "2 x parameters (forward)", "LoRA training":
                                   "4 x parameters (forward + activation gradients)"}, "models": {}}
    for spec in specs:
        bf16 = native or args.all_bf16 or spec == DEFAULT_MODEL
        figures["models"][spec] = measure(spec, args, chats_text, questions, pairs, bf16)
    if args.json:
        print(json.dumps(figures))
        return
    report(figures)


def report(figures: dict) -> None:
    print(f"precision benchmark ({figures['threads']} CPU threads); native bf16 on this CPU: "
          f"{figures['cpu_has_native_bf16']} -> --dtype auto picks {figures['auto_dtype_on_cpu']} on the CPU")
    for spec, f in figures["models"].items():
        roof = f["roofline_gflops"]
        print(f"\n{spec} ({f['parameters'] / 1e6:.0f}M parameters); matmul roofline (best linear at the MLP shapes): "
              + ", ".join(f"{d} {g} GFLOP/s" for d, g in roof.items()))
        lg = f["logits"]
        print(f"  logits bf16 vs fp32 on {lg['positions']} positions: top-1 agreement {lg['top1_agreement']:.1%}, "
              f"mean KL {lg['mean_kl_nats']:.5f} nats (max {lg['max_kl_nats']:.4f})")
        header = f"  {'':9} {'sampling new tok/s':>22} {'training tok/s':>20} {'capture ans/s':>20} {'judge ans/s':>12}"
        print(header)
        for dtype, row in f["dtypes"].items():
            s, t, c, j = row["sampling"], row["training"], row["capture"], row["judge"]
            print(f"  {dtype:9} {s['new_tokens_per_second']:>10} ({s['fraction_of_roofline']:>6.1%} roof)"
                  f" {t['tokens_per_second']:>9} ({t['fraction_of_roofline']:>6.1%})"
                  f" {c['answers_per_second']:>9} ({c['fraction_of_roofline']:>6.1%}) {j['answers_per_second']:>12}")
        if "bf16_over_fp32" in f:
            print("  bf16 / fp32: " + ", ".join(f"{k} {v}x" for k, v in f["bf16_over_fp32"].items()))
            print(f"  LoRA loss, bf16 vs fp32 at every one of {len(f['dtypes']['float32']['training']['losses'])} "
                  f"steps: max relative gap {f['training_loss_max_relative_gap']:.3%} (target < 2%)")
        first = next(iter(f["dtypes"].values()))
        print(f"  padding: sampling {first['sampling']['padding_fraction']:.1%} of computed positions (left pad), "
              f"capture {first['capture']['padding_fraction']:.1%} (length-sorted batches of 8), training "
              f"{'0% (padding-free packing)' if first['training']['padding_free'] else 'padded batches'}")


if __name__ == "__main__":
    main()
