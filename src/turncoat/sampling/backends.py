"""Sampling backends behind one interface, registered by name (`--backend hf|vllm|openai`).

A backend turns prompts into answer records; it reports each finished group through `on_results` so the caller can
write results as they arrive, and marks a failed request as failed (never as an empty answer).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from turncoat.core.errors import TurncoatError
from turncoat.core.registry import Registry
from turncoat.models import LoadedModel, hf_location, load, resolve_spec
from turncoat.models.hooks import Hook
from turncoat.questions.sets import Prompt
from turncoat.sampling.hf import GenerationParams, generate_chat

ResultsCallback = Callable[[Sequence[Prompt], Sequence[dict]], None]
BACKENDS = Registry("backend")
register_backend = BACKENDS.register


def make_backend(name: str, model, **options) -> Backend:
    return BACKENDS.create(name, model, **options)


def prompt_seed(seed: int, key: str) -> int:
    """A per-answer seed derived from the run seed and the answer's key (independent of batching)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:4], "little")


class Backend(ABC):
    name = "backend"

    def __init__(self, model: str):
        self.model_spec = model

    @abstractmethod
    def sample(self, prompts: Sequence[Prompt], params: GenerationParams, on_results: ResultsCallback) -> None:
        """Draw one answer per prompt; call `on_results(prompts, records)` as groups finish."""

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model_spec}


@register_backend("hf")
class HFBackend(Backend):
    """transformers `generate`, batched: the default, on CPU (fp32) or CUDA (bf16)."""

    def __init__(self, model, device: str = "auto", dtype: str = "auto", hooks: Iterable[Hook] = (),
                 chat_template: str | None = None):
        if isinstance(model, LoadedModel):
            self.loaded = model
        else:
            self.loaded = load(model, device=device, dtype=dtype, chat_template=chat_template)
        super().__init__(self.loaded.spec)
        self.hooks = list(hooks)
        self.interventions: list[dict] = []  # what the hooks do (steering, ablation), recorded with the run

    def sample(self, prompts, params, on_results):
        def report(indices, results):
            on_results([prompts[i] for i in indices], results)

        generate_chat(self.loaded, [p.messages for p in prompts], params, progress=report, hooks=self.hooks,
                      seeds=[prompt_seed(params.seed, p.key) for p in prompts])

    def describe(self) -> dict:
        dtype = self.loaded.dtype_name
        described = {**super().describe(), "device": str(self.loaded.device), "dtype": dtype}
        return described | ({"interventions": self.interventions} if self.interventions else {})


@register_backend("vllm")
class VLLMBackend(Backend):
    """vLLM's offline engine (GPU): tensor parallel over all visible GPUs, LoRA adapters via LoRARequest."""

    chunk = 1024  # prompts per engine call, so results are written as they arrive

    def __init__(self, model: str, tensor_parallel_size: int | None = None, dtype: str = "auto",
                 gpu_memory_utilization: float = 0.9, max_lora_rank: int = 64):
        super().__init__(model)
        try:
            import torch
            from vllm import LLM
        except ImportError as error:
            raise TurncoatError("the vllm backend needs vLLM: pip install 'turncoat[gpu]' (CUDA machines)") from error

        resolved = resolve_spec(model)
        self.lora = None
        if resolved.kind == "adapter":
            import json

            from vllm.lora.request import LoRARequest

            config = json.loads((Path(resolved.location) / "adapter_config.json").read_text())
            base = config["base_model_name_or_path"]
            self.lora = LoRARequest("adapter", 1, resolved.location)
            resolved = resolve_spec(base)
        parallel = tensor_parallel_size or max(torch.cuda.device_count(), 1)
        self.llm = LLM(model=hf_location(resolved), tensor_parallel_size=parallel,
                       dtype="bfloat16" if dtype == "auto" else dtype, enable_lora=self.lora is not None,
                       max_lora_rank=max_lora_rank, gpu_memory_utilization=gpu_memory_utilization)

    def sample(self, prompts, params, on_results):
        from vllm import SamplingParams

        for start in range(0, len(prompts), self.chunk):
            group = prompts[start:start + self.chunk]
            sampling = [SamplingParams(n=1, temperature=params.temperature, top_p=params.top_p,
                                       max_tokens=params.max_new_tokens, min_tokens=params.min_new_tokens,
                                       seed=prompt_seed(params.seed, p.key)) for p in group]
            outputs = self.llm.chat([p.messages for p in group], sampling, lora_request=self.lora, use_tqdm=False)
            records = []
            for output in outputs:
                completion = output.outputs[0]
                records.append({"answer": completion.text.strip(), "finish_reason": completion.finish_reason,
                                "prompt_tokens": len(output.prompt_token_ids),
                                "completion_tokens": len(completion.token_ids)})
            on_results(group, records)
