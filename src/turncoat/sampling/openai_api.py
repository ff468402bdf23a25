"""The `openai` backend: any OpenAI-compatible chat endpoint (OpenAI, a vLLM server, `turncoat serve`).

Requests go through the shared client (`turncoat.sampling.openai_client`): concurrent up to a limit, retried with
backoff, the key from the environment only. A request that still fails is reported as failed, with its error,
never as an empty answer.
"""

from __future__ import annotations

from turncoat.core.provenance import redact_url
from turncoat.models.specs import openai_fine_tune
from turncoat.sampling.backends import Backend, prompt_seed, register_backend
from turncoat.sampling.openai_client import EndpointClient, describe_api_error


@register_backend("openai")
class OpenAIBackend(Backend):
    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 16, max_retries: int = 5, timeout: float = 120.0, top_logprobs: int | None = None):
        self.run = model if openai_fine_tune(model) else None  # an OpenAI fine-tuning run samples its model
        super().__init__(openai_fine_tune(model) or model)
        self.base_url = base_url
        self.top_logprobs = top_logprobs
        self.endpoint = EndpointClient(base_url, api_key_env, concurrency, max_retries, timeout)

    def describe(self) -> dict:
        return {**super().describe(), "base_url": redact_url(self.base_url) or "https://api.openai.com/v1",
                **({"fine_tuning_run": str(self.run)} if self.run else {})}

    def sample(self, prompts, params, on_results):
        self.endpoint.fan_out(prompts, lambda client, prompt: self._request(client, prompt, params),
                              lambda error: {"status": "failed", "error": error},
                              lambda index, record: on_results([prompts[index]], [record]))

    async def _request(self, client, prompt, params) -> dict:
        import openai  # the SDK's import costs ~0.5 s: only API runs pay

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
