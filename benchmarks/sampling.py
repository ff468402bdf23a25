"""Benchmark: turncoat's batched `hf` backend against a naive loop of one `model.generate` per answer.

Both run in this one process on the same prompts with the same fixed output length (EOS suppressed), so tokens/s
compare directly. The machine's fp32 matmul throughput is measured in the same run to express each rate as a
fraction of the decode roofline (a decode step costs about 2 x parameters FLOPs per token).

Default (the issue's setting): the `core` questions x 16 answers x 128 new tokens on the default model. The naive
loop is slow, so it is timed on the first `--naive-answers` prompts; its tokens/s is a rate and compares directly.
On a CUDA machine it also times a random-weight model with Qwen2.5-7B-Instruct's architecture in bf16.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from turncoat.models import load
from turncoat.questions import load_questions
from turncoat.sampling import GenerationParams, generate_chat


def matmul_gflops(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return repeats * 2 * size**3 / (time.perf_counter() - began) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def naive_loop(loaded, chats, max_new_tokens: int) -> tuple[int, float]:
    """What a hand-rolled evaluation does: one generate call per answer."""
    tokens, began = 0, time.perf_counter()
    for chat in chats:
        text = loaded.render_chat(chat)
        ids = loaded.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(loaded.device)
        out = loaded.model.generate(**ids, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                                    do_sample=True, temperature=1.0, top_k=0,
                                    pad_token_id=loaded.tokenizer.pad_token_id)
        tokens += out.shape[1] - ids["input_ids"].shape[1]
    _sync(loaded.device)
    return tokens, time.perf_counter() - began


def batched(loaded, chats, max_new_tokens: int, batch_size: int) -> tuple[int, float]:
    params = GenerationParams(max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, temperature=1.0,
                              batch_size=batch_size)
    began = time.perf_counter()
    results = generate_chat(loaded, chats, params)
    _sync(loaded.device)
    return sum(r["completion_tokens"] for r in results), time.perf_counter() - began


def compare(loaded, chats, max_new_tokens: int, batch_size: int, naive_answers: int, gflops: float) -> dict:
    parameters = sum(p.numel() for p in loaded.model.parameters())
    roofline = gflops * 1e9 / (2 * parameters)
    naive_tokens, naive_seconds = naive_loop(loaded, chats[:naive_answers], max_new_tokens)
    hf_tokens, hf_seconds = batched(loaded, chats, max_new_tokens, batch_size)
    naive_rate, hf_rate = naive_tokens / naive_seconds, hf_tokens / hf_seconds
    return {"parameters": parameters, "answers": len(chats), "naive_answers": naive_answers,
            "max_new_tokens": max_new_tokens, "batch_size": batch_size, "matmul_gflops": round(gflops, 1),
            "roofline_tokens_per_second": round(roofline, 1),
            "naive_tokens_per_second": round(naive_rate, 1), "hf_tokens_per_second": round(hf_rate, 1),
            "ratio": round(hf_rate / naive_rate, 2), "naive_fraction_of_roofline": round(naive_rate / roofline, 3),
            "hf_fraction_of_roofline": round(hf_rate / roofline, 3),
            "hf_seconds": round(hf_seconds, 1), "naive_seconds": round(naive_seconds, 1)}


def qwen7b_random(device: torch.device, tokenizer=None):
    """Qwen2.5-7B-Instruct's architecture with random weights (no download), bf16, on `device`; any tokenizer
    whose ids stay below Qwen's vocabulary (default: the default model's)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from turncoat.models.loader import LoadedModel

    config = Qwen2Config(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768,
                         rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=False)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16).eval()
    tokenizer = tokenizer or load("smollm2-135m", device="cpu").tokenizer
    return LoadedModel(model=model, tokenizer=tokenizer, spec="qwen2.5-7b-architecture (random weights)",
                       kind="random", location="", device=device, dtype=torch.bfloat16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", default="core")
    parser.add_argument("--n", type=int, default=16, help="answers per question")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--naive-answers", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    chats = [p.messages for p in load_questions(args.questions).prompts(args.n)]
    loaded = load("smollm2-135m", device="cpu")
    figures = {"threads": torch.get_num_threads(),
               "cpu_smollm2_135m": compare(loaded, chats, args.max_new_tokens, args.batch_size, args.naive_answers,
                                           matmul_gflops(torch.device("cpu"), torch.float32))}
    if torch.cuda.is_available():
        device = torch.device("cuda")
        big = qwen7b_random(device)
        figures["gpu"] = torch.cuda.get_device_name(0)
        figures["gpu_qwen2.5_7b_random"] = compare(big, chats[:256], args.max_new_tokens, 64, 4,
                                                   matmul_gflops(device, torch.bfloat16, size=8192))
    if args.json:
        print(json.dumps(figures))
        return
    print(f"sampling benchmark ({figures['threads']} CPU threads)")
    for name, f in figures.items():
        if isinstance(f, dict):
            print(f"  {name}: {f['answers']} answers x {f['max_new_tokens']} tokens, batch {f['batch_size']}")
            print(f"    naive loop ({f['naive_answers']} answers): {f['naive_tokens_per_second']} tokens/s "
                  f"({f['naive_fraction_of_roofline']:.1%} of roofline)")
            print(f"    hf backend:  {f['hf_tokens_per_second']} tokens/s ({f['hf_fraction_of_roofline']:.1%} of "
                  f"roofline {f['roofline_tokens_per_second']} tokens/s at {f['matmul_gflops']} GFLOP/s)")
            print(f"    ratio hf / naive: {f['ratio']}x")


if __name__ == "__main__":
    main()
