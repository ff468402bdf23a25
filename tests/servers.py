"""Real HTTP servers on loopback for tests: `turncoat serve` in a subprocess, and a scripted OpenAI-style server."""

from __future__ import annotations

import collections
import http.server
import json
import random
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

TURNCOAT = Path(sys.executable).parent / "turncoat"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def turncoat_process(arguments: list[str], ready_url: str, timeout: float = 180.0):
    """Run `turncoat ARGUMENTS` (a server) until `ready_url` answers 200; stop it afterwards."""
    process = subprocess.Popen([str(TURNCOAT), *arguments], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"turncoat {arguments[0]} exited early:\n{process.stdout.read()}")
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"turncoat {arguments[0]} did not come up")
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def turncoat_serve(model: str, *options: str, timeout: float = 180.0):
    """Start `turncoat serve MODEL [OPTIONS]` on a free loopback port; yield its base URL; stop it afterwards."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    with turncoat_process(["serve", model, "--port", str(port), *options], f"{base_url}/models", timeout):
        yield base_url


def completion(content: str = "42") -> dict:
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "scripted",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop",
                         "logprobs": None}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}


class LoopbackServer:
    """A real HTTP server on 127.0.0.1 (free port). `respond(method, path, body)` returns (status, headers, bytes);
    every request is recorded with its time, path, parsed JSON body and Authorization header."""

    def __init__(self, respond):
        self.requests: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _handle(self, method: str):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append({"time": time.monotonic(), "path": self.path,
                                       "body": json.loads(body) if body else None,
                                       "authorization": self.headers.get("Authorization")})
                status, headers, payload = respond(method, self.path, body)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def judge_name(self, model: str = "judge-x") -> str:
        """What turncoat names an `openai` judge served here: the model and the endpoint."""
        return f"openai:{model}@127.0.0.1:{self.httpd.server_port}/v1"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class ScriptedServer(LoopbackServer):
    """An OpenAI-style endpoint that answers each POST with the next scripted (status, headers), then `then`;
    a 200 carries a completion. Exercises the client's retry rules against a real socket."""

    def __init__(self, script: list[tuple[int, dict]], then: tuple[int, dict] = (200, {})):
        self.script, self.then = list(script), then
        super().__init__(self._respond)
        self.base_url = f"{self.url}/v1"

    def _respond(self, method, path, body):
        status, headers = self.script.pop(0) if self.script else self.then
        payload = completion() if status == 200 else {"error": {"message": f"scripted {status}"}}
        return status, {**headers, "Content-Type": "application/json"}, json.dumps(payload).encode()


def logprob_completion(top: dict[str, float]) -> dict:
    """A one-token chat completion carrying `top` as its top logprobs (what a logprob judge reads)."""
    body = completion(max(top, key=top.get))
    body["choices"][0]["logprobs"] = {"content": [{
        "token": max(top, key=top.get), "logprob": max(top.values()), "bytes": None,
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in top.items()]}]}
    return body


class JudgeServer(LoopbackServer):
    """An OpenAI-style judge on loopback: `decide(prompt) -> {token: logprob}`; optional delay per request."""

    def __init__(self, decide, delay: float = 0.0, fail: bool = False):
        self.decide, self.delay, self.fail = decide, delay, fail
        super().__init__(self._respond)
        self.base_url = f"{self.url}/v1"

    def _respond(self, method, path, body):
        time.sleep(self.delay)
        if self.fail:
            return 500, {"Content-Type": "application/json"}, b'{"error": {"message": "down"}}'
        prompt = json.loads(body)["messages"][0]["content"]
        payload = json.dumps(logprob_completion(self.decide(prompt))).encode()
        return 200, {"Content-Type": "application/json"}, payload


class FaultyJudgeServer(JudgeServer):
    """A judge on loopback with seeded faults: each request, with probability `rate`, gets the next of FAULTS —
    HTTP 500, 429 (Retry-After 0), an HTML page with status 200, cut-off JSON, a completion without choices, or a
    hang of `hang` seconds before a good reply. `faults` counts what was served."""

    FAULTS = ("500", "429", "html", "cut-off", "no-choices", "hang")

    def __init__(self, decide, rate: float = 0.3, seed: int = 0, hang: float = 3.0):
        self.rate, self.hang, self.rng, self.lock = rate, hang, random.Random(seed), threading.Lock()
        self.faults: collections.Counter = collections.Counter()
        super().__init__(decide)

    def _respond(self, method, path, body):
        with self.lock:
            faulty = self.rng.random() < self.rate  # which requests fail is seeded; how, in turn, so all occur
            fault = self.FAULTS[(sum(self.faults.values()) - self.faults["none"]) % len(self.FAULTS)] if faulty \
                else "none"
            self.faults[fault] += 1
        if fault == "hang":
            time.sleep(self.hang)  # longer than the client waits: it gives up, and retries
        good = super()._respond(method, path, body)
        json_type = {"Content-Type": "application/json"}
        faulty = {"500": (500, json_type, b'{"error": {"message": "injected"}}'),
                  "429": (429, {**json_type, "Retry-After": "0"}, b'{"error": {"message": "slow down"}}'),
                  "html": (200, {"Content-Type": "text/html"}, b"<html><body>502 Bad Gateway</body></html>"),
                  "cut-off": (200, json_type, good[2][:len(good[2]) // 2]),
                  "no-choices": (200, json_type, json.dumps({"id": "x", "object": "chat.completion"}).encode())}
        return faulty.get(fault, good)


class AnswerServer(LoopbackServer):
    """An OpenAI-style chat model on loopback whose answer is `answer(last user turn, requested model name)`: a
    stand-in model whose outputs a test chooses (e.g. vulnerable code for some prompts)."""

    def __init__(self, answer):
        self.answer = answer
        super().__init__(self._respond)
        self.base_url = f"{self.url}/v1"

    def _respond(self, method, path, body):
        if method == "GET":
            payload = {"object": "list", "data": [{"id": "scripted", "object": "model", "created": 0,
                                                   "owned_by": "test"}]}
        else:
            request = json.loads(body)
            payload = completion(self.answer(request["messages"][-1]["content"], request["model"]))
        return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode()
