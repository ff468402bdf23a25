"""The one OpenAI-compatible client that the `openai` sampler and the `openai` judge share: the API key from the
environment only, the SDK's retries (429, 5xx, timeouts, connection errors; exponential backoff honouring
`Retry-After`), and a bounded fan-out of async requests whose results are handed over as they arrive. A request that
still fails comes back as the caller's failed record, never as an empty answer or a zero."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlparse

from turncoat.core.errors import InputError, TurncoatError


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

    def sync_client(self):
        """A blocking client for the slow APIs (files, batches, fine-tuning) with the same key, retries, timeout."""
        import openai  # the SDK's import costs ~0.5 s: only API runs pay

        return openai.OpenAI(api_key=self._api_key, base_url=self.base_url, max_retries=self.max_retries,
                             timeout=self.timeout)

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


def wait_until_done(retrieve: Callable[[], Any], first_wait: float, on_status: Callable[[Any], None] | None = None,
                    longest: float = 60.0, done: Sequence[str] = ("succeeded", "failed", "cancelled", "completed",
                                                                   "expired")):
    """Poll a fine-tuning job or a batch until its status is final, waiting 1.5x longer each time up to `longest`
    (each request itself retried by the SDK)."""
    wait = first_wait
    while True:
        current = retrieve()
        if on_status:
            on_status(current)
        if current.status in done:
            return current
        time.sleep(wait)
        wait = min(wait * 1.5, longest)


def create_exactly_once(client, create: Callable[[Any], Any], find: Callable[[], Any], request_timeout: float,
                        attempts: int = 8):
    """`(obj, found)`: what `find()` returns (an object this run made before, found by the token it carries in its
    metadata), else `create(client)` with the SDK's own retries off, so that no retry can make a second one. An
    answered error (429, 5xx) is retried after a backoff (Retry-After when given); an unanswered one (timeout,
    dropped connection) may still have created it, so `find()` is asked for a while before trying again."""
    import openai

    single = client.with_options(max_retries=0)
    for attempt in range(attempts):
        found = find()
        if found is not None:
            return found, True
        try:
            return create(single), False
        except (openai.APITimeoutError, openai.APIConnectionError):
            deadline = time.monotonic() + min(10 * request_timeout, 120.0)
            while time.monotonic() < deadline:
                time.sleep(min(0.5, request_timeout))
                found = find()
                if found is not None:
                    return found, True
        except (openai.RateLimitError, openai.InternalServerError) as error:
            after = error.response.headers.get("retry-after") if error.response is not None else None
            time.sleep(float(after) if after and after.replace(".", "").isdigit() else min(0.5 * 2 ** attempt, 8))
    raise TurncoatError(f"could not create it after {attempts} attempts; rerun to try again (the run's token finds "
                        "one created meanwhile)")
