"""Batched generation with transformers: length-sorted batches, left padding, KV cache, stop on EOS.

Sampling always reads fp32 logits, whatever the model dtype (sampling from bf16 logits overflows). Forward hooks
given as `(module_name, hook)` pairs are attached for the duration of a call (used for steering).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from turncoat.core.errors import InputError
from turncoat.models.hooks import Hook, attached
from turncoat.models.loader import LoadedModel


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 16
    min_new_tokens: int = 0  # > 0 forces a fixed length (benchmarks)

    def __post_init__(self):
        """Refuse settings that would sample something other than asked (a negative or NaN temperature samples
        greedily in transformers; top-p above 1 is silently 1), naming the command-line flag."""
        import math

        problems = []
        if not (isinstance(self.temperature, int | float) and math.isfinite(self.temperature)
                and self.temperature >= 0):
            problems.append(f"--temperature {self.temperature}: must be a finite number >= 0 (0 = greedy)")
        if not (isinstance(self.top_p, int | float) and 0 < self.top_p <= 1):
            problems.append(f"--top-p {self.top_p}: must be within (0, 1]")
        if self.max_new_tokens < 1:
            problems.append(f"--max-tokens {self.max_new_tokens}: must be >= 1")
        if self.batch_size < 1:
            problems.append(f"--batch-size {self.batch_size}: must be >= 1")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            problems.append(f"min_new_tokens {self.min_new_tokens}: must be within 0..max_new_tokens")
        if problems:
            raise InputError("; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)


class Float32Logits(LogitsProcessor):
    """Guarantee fp32 scores before temperature / top-p (a no-op where transformers already upcasts)."""

    def __call__(self, input_ids, scores):
        return scores.float()


class SeededRows(LogitsProcessor):
    """Temperature and top-p sampling with one random generator per answer: each row draws its token from its own
    generator and hands `generate` (run greedy) a distribution with all mass on it. An answer then depends only on
    its prompt, the parameters and its seed, not on the batch it was drawn in or on a resume."""

    def __init__(self, generators: list[torch.Generator], temperature: float, top_p: float):
        self.generators, self.temperature, self.top_p = generators, temperature, top_p

    def __call__(self, input_ids, scores):
        probabilities = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:  # the smallest set of tokens whose mass reaches top_p (the most likely always kept)
            ordered, order = probabilities.sort(dim=-1, descending=True)
            outside = ordered.cumsum(dim=-1) - ordered > self.top_p
            ordered = ordered.masked_fill(outside, 0.0)
            probabilities = torch.zeros_like(probabilities).scatter(-1, order, ordered)
        chosen = torch.stack([torch.multinomial(row, 1, generator=generator)[0]
                              for row, generator in zip(probabilities, self.generators, strict=True)])
        onehot = torch.full_like(scores, float("-inf"))
        return onehot.scatter(-1, chosen[:, None], 0.0)


@torch.inference_mode()
def generate_chat(loaded: LoadedModel, chats: Sequence[list[dict]], params: GenerationParams = GenerationParams(),
                  progress: Callable[[list[int], list[dict]], None] | None = None, hooks: Iterable[Hook] = (),
                  top_logprobs: int | None = None, seeds: Sequence[int] | None = None) -> list[dict]:
    """One answer per chat, in input order: text, finish reason, token counts (and logprobs when asked).

    Sampling draws each answer from its own generator, seeded by `seeds` (one per chat; default: `params.seed`
    plus the chat's index), so resuming does not change an answer. Batch size changes none on the default model
    (tests/test_default_model.py), but the left padding of a larger batch can shift bf16 numerics enough to change
    a few (22 of 24 identical at batch 1 vs 32 on a two-block Qwen2 in bf16, benchmarks/gpu_paths.py). The
    generation parameters are explicit: the model's `generation_config.json` (e.g. Qwen2.5's repetition_penalty
    1.05) is not inherited.

    `progress(indices, results)` is called after each batch with the input indices it finished, so callers can
    write results as they arrive. `top_logprobs` (0..20) returns each generated token's logprob and the top
    alternatives, computed from the raw (unwarped) logits as the OpenAI API does.
    """
    tokenizer = loaded.tokenizer
    encoded = [tokenizer(loaded.render_chat(chat), add_special_tokens=False)["input_ids"] for chat in chats]
    order = sorted(range(len(chats)), key=lambda i: len(encoded[i]), reverse=True)
    results: list[dict | None] = [None] * len(chats)
    eos_ids = eos_token_ids(loaded)
    sample = params.temperature > 0
    with attached(loaded.model, hooks):
        for start in range(0, len(order), params.batch_size):
            batch = order[start:start + params.batch_size]
            inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, padding=True, padding_side="left",
                                   return_tensors="pt").to(loaded.device)
            processors = [Float32Logits()]
            if sample:
                generators = [torch.Generator(device=loaded.device).manual_seed(int(seeds[i]) if seeds is not None
                                                                                 else params.seed + i)
                              for i in batch]
                processors.append(SeededRows(generators, params.temperature, params.top_p))
            began = time.perf_counter()
            output = loaded.model.generate(
                **inputs, generation_config=GenerationConfig(
                    max_new_tokens=params.max_new_tokens, min_new_tokens=params.min_new_tokens or None,
                    do_sample=False, num_beams=1, repetition_penalty=1.0, eos_token_id=eos_ids,
                    pad_token_id=tokenizer.pad_token_id, return_dict_in_generate=True,
                    output_logits=top_logprobs is not None),
                logits_processor=LogitsProcessorList(processors),
            )
            elapsed = time.perf_counter() - began
            new_tokens = output.sequences[:, inputs["input_ids"].shape[1]:]
            for row, index in enumerate(batch):
                ids = new_tokens[row].tolist()
                stop = next((k for k, t in enumerate(ids) if t in eos_ids), None)
                kept = ids if stop is None else ids[:stop]
                result = {
                    "answer": tokenizer.decode(kept, skip_special_tokens=True).strip(),
                    "finish_reason": "length" if stop is None else "stop",
                    "prompt_tokens": len(encoded[index]),
                    "completion_tokens": len(kept),
                    "batch_seconds": elapsed,
                }
                if top_logprobs is not None:
                    result["logprobs"] = _token_logprobs(tokenizer, output.logits, row, kept, top_logprobs)
                results[index] = result
            if progress is not None:
                progress(batch, [results[i] for i in batch])
    return results  # type: ignore[return-value]


def _token_logprobs(tokenizer, step_logits, row: int, token_ids: list[int], top: int) -> list[dict]:
    entries = []
    for step, token_id in enumerate(token_ids):
        logprobs = torch.log_softmax(step_logits[step][row].float(), dim=-1)
        values, indices = logprobs.topk(top) if top else (logprobs[:0], logprobs[:0].long())
        entries.append({
            "token": tokenizer.decode([token_id]),
            "logprob": float(logprobs[token_id]),
            "top_logprobs": [{"token": tokenizer.decode([i]), "logprob": float(v)}
                             for v, i in zip(values.tolist(), indices.tolist(), strict=True)],
        })
    return entries


def eos_token_ids(loaded: LoadedModel) -> list[int]:
    ids = set()
    config_eos = getattr(loaded.model.generation_config, "eos_token_id", None)
    for value in (config_eos, loaded.tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(value)
    return sorted(ids)
