"""The one OpenAI-compatible client that the `openai` sampler and the `openai` judge share: the API key from the
environment only, the SDK's retries (429, 5xx, timeouts, connection errors; exponential backoff honouring
`Retry-After`), and a bounded fan-out of async requests whose results are handed over as they arrive. A request that
still fails comes back as the caller's failed record, never as an empty answer or a zero."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlparse

from turncoat.core.errors import InputError


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


# What reading a 200 reply that is not a chat completion raises (an HTML page, cut-off JSON, no `choices`): such a
# reply is retried like a 5xx, and when the retries run out the item is recorded as failed.
MALFORMED = (AttributeError, IndexError, KeyError, TypeError, ValueError)


class EndpointClient:
    """Settings of one endpoint; `fan_out` opens the async client for one batch of requests and closes it after."""

    def __init__(self, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 16,
                 max_retries: int = 5, timeout: float = 120.0):
        self.base_url, self.api_key_env = base_url, api_key_env
        self.concurrency, self.max_retries, self.timeout = concurrency, max_retries, timeout
        self._api_key = api_key_from_env(base_url, api_key_env)

    def fan_out(self, items: Sequence, request: Callable[[Any, Any], Awaitable[Any]],
                failed: Callable[[str], Any], on_result: Callable[[int, Any], None] | None = None) -> list:
        """`await request(client, item)` for every item, at most `concurrency` at a time; `on_result(index, result)`
        as each finishes (so callers can write results as they arrive); returns the results in input order. A
        malformed reply is retried with backoff; after `max_retries` the item's result is `failed(error text)`."""
        return asyncio.run(self._fan_out(items, request, failed, on_result))

    async def _attempts(self, client, request, item, failed):
        for attempt in range(self.max_retries + 1):
            try:
                return await request(client, item)
            except MALFORMED as error:
                problem = f"malformed reply ({type(error).__name__}: {str(error)[:200]})"
                if attempt < self.max_retries:
                    await asyncio.sleep(min(0.5 * 2 ** attempt, 8.0))
        return failed(f"{problem} after {self.max_retries + 1} attempts")

    async def _fan_out(self, items, request, failed, on_result):
        from openai import AsyncOpenAI  # the SDK's import costs ~0.5 s: only API runs pay

        client = AsyncOpenAI(api_key=self._api_key, base_url=self.base_url, max_retries=self.max_retries,
                             timeout=self.timeout)
        limit = asyncio.Semaphore(self.concurrency)
        results: list = [None] * len(items)

        async def one(index, item):
            async with limit:
                return index, await self._attempts(client, request, item, failed)

        try:
            for finished in asyncio.as_completed([one(i, item) for i, item in enumerate(items)]):
                index, result = await finished
                results[index] = result
                if on_result is not None:
                    on_result(index, result)
        finally:
            await client.close()
        return results
