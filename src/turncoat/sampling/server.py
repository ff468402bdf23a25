"""`turncoat serve`: an OpenAI-compatible HTTP server over any model turncoat can load.

Implements `/v1/models` and `/v1/chat/completions` (`n`, `temperature`, `top_p`, `max_tokens`, `seed`, `logprobs`,
`top_logprobs`), so other harnesses (inspect_ai, promptfoo) can evaluate a fine-tuned or steered model, and so the
`openai` backend and the API judge are tested against a real server. Requests are served one at a time (one model);
the `n` answers of a request are generated as one batch.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Literal

from pydantic import BaseModel, Field

from turncoat.models.hooks import Hook
from turncoat.models.loader import LoadedModel
from turncoat.sampling.hf import GenerationParams, generate_chat


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    n: int = Field(default=1, ge=1, le=128)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


def create_app(loaded: LoadedModel, served_name: str | None = None, default_max_tokens: int = 256,
               hooks: list[Hook] | None = None):
    from fastapi import FastAPI, HTTPException

    app = FastAPI(title="turncoat serve", version="1")
    name = served_name or loaded.spec
    lock = threading.Lock()
    created = int(time.time())
    served = {"chat_completions": 0, "completion_tokens": 0}

    @app.get("/turncoat/stats")
    def stats():
        """Requests served so far (lets a test or an operator count what a client really sent)."""
        return {"model": name, **served}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "turncoat"}]}

    @app.post("/v1/chat/completions")
    def chat_completions(request: ChatRequest):
        if request.model not in (None, name):
            raise HTTPException(404, detail=f"model {request.model!r} is not served here; this server has {name!r}")
        messages = [m.model_dump() for m in request.messages]
        params = GenerationParams(
            max_new_tokens=request.max_completion_tokens or request.max_tokens or default_max_tokens,
            temperature=request.temperature, top_p=request.top_p,
            seed=request.seed if request.seed is not None else int.from_bytes(uuid.uuid4().bytes[:4], "little"),
            batch_size=request.n)
        top = (request.top_logprobs or 0) if request.logprobs else None
        with lock:
            results = generate_chat(loaded, [messages] * request.n, params, hooks=hooks or (), top_logprobs=top)
        choices = []
        for index, result in enumerate(results):
            choice = {"index": index, "message": {"role": "assistant", "content": result["answer"]},
                      "finish_reason": result["finish_reason"], "logprobs": None}
            if top is not None:
                choice["logprobs"] = {"content": [
                    {"token": t["token"], "logprob": t["logprob"], "bytes": list(t["token"].encode()),
                     "top_logprobs": [{"token": a["token"], "logprob": a["logprob"], "bytes": list(a["token"].encode())}
                                      for a in t["top_logprobs"]]} for t in result["logprobs"]]}
            choices.append(choice)
        completion_tokens = sum(r["completion_tokens"] for r in results)
        served["chat_completions"] += 1
        served["completion_tokens"] += completion_tokens
        prompt_tokens = results[0]["prompt_tokens"]
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": name, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    return app


def serve(loaded: LoadedModel, host: str = "127.0.0.1", port: int = 8000, served_name: str | None = None,
          default_max_tokens: int = 256, hooks: list[Hook] | None = None) -> None:
    import uvicorn

    uvicorn.run(create_app(loaded, served_name, default_max_tokens, hooks), host=host, port=port,
                log_level="warning")
