"""`--model turncoat/<spec>`: any model turncoat loads (alias, folder, GGUF file, adapter run) as an Inspect model,
generating through turncoat's `hf` sampling path (so an adapter trained by `turncoat train` evaluates as it is).
Returns logprobs when asked, so it can also serve as the `grader` role."""

from __future__ import annotations

import asyncio
from typing import Any

from inspect_ai.model import (
    ChatCompletionChoice,
    ChatMessageAssistant,
    GenerateConfig,
    Logprob,
    Logprobs,
    ModelAPI,
    ModelOutput,
    ModelUsage,
    TopLogprob,
    modelapi,
)

from turncoat.models import load
from turncoat.sampling.hf import GenerationParams, generate_chat


class TurncoatModelAPI(ModelAPI):
    def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                 config: GenerateConfig = GenerateConfig(), **model_args: Any) -> None:
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, config=config)

        self.loaded = load(model_name, **model_args)
        self.lock = asyncio.Lock()  # one generation at a time on the local model

    async def generate(self, input, tools, tool_choice, config: GenerateConfig) -> ModelOutput:
        messages = [{"role": m.role, "content": m.text} for m in input if m.role in ("system", "user", "assistant")]
        params = GenerationParams(max_new_tokens=config.max_tokens or 600,
                                  temperature=1.0 if config.temperature is None else config.temperature,
                                  top_p=1.0 if config.top_p is None else config.top_p,
                                  seed=0 if config.seed is None else config.seed, batch_size=1)
        top = (config.top_logprobs or 0) if config.logprobs else None
        async with self.lock:
            result = (await asyncio.to_thread(generate_chat, self.loaded, [messages], params, None, (), top))[0]
        logprobs = None
        if "logprobs" in result:
            logprobs = Logprobs(content=[
                Logprob(token=e["token"], logprob=e["logprob"],
                        top_logprobs=[TopLogprob(token=t["token"], logprob=t["logprob"]) for t in e["top_logprobs"]])
                for e in result["logprobs"]])
        choice = ChatCompletionChoice(message=ChatMessageAssistant(content=result["answer"], model=self.model_name),
                                      stop_reason="max_tokens" if result["finish_reason"] == "length" else "stop",
                                      logprobs=logprobs)
        usage = ModelUsage(input_tokens=result["prompt_tokens"], output_tokens=result["completion_tokens"],
                           total_tokens=result["prompt_tokens"] + result["completion_tokens"])
        return ModelOutput(model=self.model_name, choices=[choice], usage=usage)

    def max_connections(self) -> int:
        return 1


@modelapi(name="turncoat")
def turncoat_provider():
    return TurncoatModelAPI
