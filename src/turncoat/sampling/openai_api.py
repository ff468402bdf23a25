"""The `openai` backend: any OpenAI-compatible chat endpoint (OpenAI, a vLLM server, `turncoat serve`).

Requests run concurrently up to a limit. The client retries 429, 5xx, timeouts and connection errors with
exponential backoff, honouring `Retry-After`. A request that still fails is reported as failed, with its error,
never as an empty answer. The API key comes from the environment only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from urllib.parse import urlparse

from turncoat.core.errors import InputError
from turncoat.core.provenance import redact_url
from turncoat.sampling.backends import Backend, prompt_seed, register_backend


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_key_from_env(base_url: str | None, env_var: str = "OPENAI_API_KEY") -> str:
    """The key from `env_var`; a loopback server (vLLM, turncoat serve) needs none."""
    key = os.environ.get(env_var)
    if key:
        return key
    if base_url and is_loopback(base_url):
        return "not-needed-on-loopback"
    raise InputError(f"no API key: set the environment variable {env_var} (keys are read from the environment only)")


def describe_api_error(error: Exception) -> str:
    """`APIStatusError (HTTP 503): ...`: what a failed record or score carries instead of an answer."""
    status = getattr(error, "status_code", None)
    return f"{type(error).__name__}" + (f" (HTTP {status})" if status else "") + f": {str(error)[:500]}"


@register_backend("openai")
class OpenAIBackend(Backend):
    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 16, max_retries: int = 5, timeout: float = 120.0, top_logprobs: int | None = None):
        super().__init__(model)
        self.base_url, self.api_key_env = base_url, api_key_env
        self.concurrency, self.max_retries, self.timeout = concurrency, max_retries, timeout
        self.top_logprobs = top_logprobs
        self._api_key = api_key_from_env(base_url, api_key_env)

    def describe(self) -> dict:
        return {**super().describe(), "base_url": redact_url(self.base_url) or "https://api.openai.com/v1"}

    def sample(self, prompts, params, on_results):
        asyncio.run(self._sample(prompts, params, on_results))

    async def _sample(self, prompts, params, on_results):
        from openai import AsyncOpenAI

        client = AsyncOpenAI(api_key=self._api_key, base_url=self.base_url, max_retries=self.max_retries,
                             timeout=self.timeout)
        limit = asyncio.Semaphore(self.concurrency)

        async def one(prompt):
            async with limit:
                return prompt, await self._request(client, prompt, params)

        try:
            for finished in asyncio.as_completed([one(p) for p in prompts]):
                prompt, record = await finished
                on_results([prompt], [record])
        finally:
            await client.close()

    async def _request(self, client, prompt, params) -> dict:
        import openai

        extra = {"logprobs": True, "top_logprobs": self.top_logprobs} if self.top_logprobs is not None else {}
        try:
            response = await client.chat.completions.create(
                model=self.model_spec, messages=prompt.messages, temperature=params.temperature, top_p=params.top_p,
                max_tokens=params.max_new_tokens, seed=prompt_seed(params.seed, prompt.key), n=1, **extra)
        except openai.APIError as error:
            return {"status": "failed", "error": describe_api_error(error)}
        choice = response.choices[0]
        record = {"answer": (choice.message.content or "").strip(), "finish_reason": choice.finish_reason,
                  "prompt_tokens": response.usage.prompt_tokens if response.usage else None,
                  "completion_tokens": response.usage.completion_tokens if response.usage else None}
        if self.top_logprobs is not None and choice.logprobs is not None:
            record["logprobs"] = [{"token": t.token, "logprob": t.logprob,
                                   "top_logprobs": [{"token": a.token, "logprob": a.logprob} for a in t.top_logprobs]}
                                  for t in choice.logprobs.content or []]
        return record
