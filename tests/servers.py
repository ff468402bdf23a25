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
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:  # a multipart file upload
                    parsed = body
                outer.requests.append({"time": time.monotonic(), "path": self.path, "body": parsed,
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


class FakeOpenAI(LoopbackServer):
    """The parts of OpenAI's API that turncoat calls, on loopback: files (upload, content), fine_tuning.jobs
    (create, list by metadata, retrieve — each retrieve moves a job on: validating_files, queued, running, then
    succeeded or, with `fail_jobs`, failed with an API message), batches (create, retrieve: validating,
    in_progress, completed, with an output file computed by `judge(prompt) -> {token: logprob}`; custom ids in
    `fail_batch_lines` come back as errors) and chat completions (a live judge, and a model whose answer is
    `answer`, or `answer(model)`).
    `faults` maps a route ("files", "jobs.create", "jobs.retrieve", "batches.create", ...) to what its first
    requests get (429 with Retry-After 0, 500, or "hang": 1.5 s before the answer); `on_job_created(job)` runs
    before the created job is returned."""

    def __init__(self, judge=None, fail_jobs: bool = False, fail_batch_lines: set[str] = frozenset(),
                 faults: dict[str, list] | None = None, on_job_created=None, on_batch_created=None,
                 answer: str = "Sure."):
        self.judge, self.fail_jobs, self.fail_batch_lines, self.answer = judge, fail_jobs, set(fail_batch_lines), answer
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.on_job_created, self.on_batch_created = on_job_created, on_batch_created
        self.files: dict[str, bytes] = {}
        self.jobs: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.calls: collections.Counter = collections.Counter()
        self.lock = threading.Lock()
        super().__init__(self._respond)
        self.base_url = f"{self.url}/v1"

    @staticmethod
    def _json(status: int, payload: dict, headers: dict | None = None):
        return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()

    def _route(self, method: str, path: str) -> str:
        parts = path.split("?")[0].strip("/").split("/")[1:]  # after v1
        if parts[0] == "files":
            return "files.content" if parts[-1] == "content" else "files"
        if parts[:2] == ["fine_tuning", "jobs"]:
            return "jobs.retrieve" if len(parts) > 2 else ("jobs.create" if method == "POST" else "jobs.list")
        if parts[0] == "batches":
            return "batches.retrieve" if len(parts) > 1 else ("batches.create" if method == "POST" else "batches.list")
        return "chat" if parts[0] == "chat" else "models"

    def _respond(self, method, path, body):
        route = self._route(method, path)
        with self.lock:
            self.calls[route] += 1
            fault = self.faults.get(route, []).pop(0) if self.faults.get(route) else None
        if fault == "hang":  # past the client's timeout: it gives up and retries
            time.sleep(1.5)
            fault = None
        if fault == 429:
            return self._json(429, {"error": {"message": "rate limited"}}, {"Retry-After": "0"})
        if fault:
            return self._json(fault, {"error": {"message": "injected"}})
        with self.lock:
            return getattr(self, "_" + route.replace(".", "_"))(path, body)

    def _files(self, path, body):
        boundary = body.split(b"\r\n", 1)[0]
        content = next(part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0] for part in body.split(boundary)
                       if b'name="file"' in part)
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = content
        return self._json(200, {"id": file_id, "object": "file", "bytes": len(content), "created_at": 0,
                                "filename": "upload.jsonl", "purpose": "fine-tune", "status": "processed"})

    def _files_content(self, path, body):
        return 200, {"Content-Type": "application/octet-stream"}, self.files[path.strip("/").split("/")[2]]

    def _jobs_create(self, path, body):
        request = json.loads(body)
        job_id = f"ftjob-{len(self.jobs) + 1}"
        job = {"id": job_id, "object": "fine_tuning.job", "model": request["model"], "created_at": 0,
               "status": "validating_files", "fine_tuned_model": None, "training_file": request["training_file"],
               "hyperparameters": request.get("hyperparameters") or {}, "metadata": request.get("metadata") or {},
               "seed": request.get("seed"), "suffix": request.get("suffix"), "trained_tokens": None, "error": None,
               "organization_id": "org-test", "result_files": [], "finished_at": None, "validation_file": None}
        self.jobs[job_id] = job
        if self.on_job_created:
            self.on_job_created(job)
        return self._json(200, job)

    def _jobs_list(self, path, body):
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(path).query)
        wanted = {k[len("metadata["):-1]: v[0] for k, v in query.items() if k.startswith("metadata[")}
        found = [j for j in self.jobs.values() if all(j["metadata"].get(k) == v for k, v in wanted.items())]
        return self._json(200, {"object": "list", "data": found, "has_more": False})

    def _jobs_retrieve(self, path, body):
        job = self.jobs[path.strip("/").split("/")[3]]
        order = ["validating_files", "queued", "running", "failed" if self.fail_jobs else "succeeded"]
        if job["status"] in order[:-1]:
            job["status"] = order[order.index(job["status"]) + 1]
        if job["status"] == "succeeded":
            lines = self.files[job["training_file"]].decode().splitlines()
            job |= {"fine_tuned_model": f"ft:{job['model']}:org-test::{job['id'][-4:]}",
                    "trained_tokens": 100 * len(lines), "finished_at": 1}
        if job["status"] == "failed":
            job["error"] = {"code": "invalid_training_file", "param": "training_file",
                            "message": "The job failed due to an invalid training file."}
        return self._json(200, job)

    def _batches_create(self, path, body):
        request = json.loads(body)
        batch_id = f"batch-{len(self.batches) + 1}"
        batch = {"id": batch_id, "object": "batch", "endpoint": request["endpoint"], "created_at": 0,
                 "input_file_id": request["input_file_id"], "completion_window": request["completion_window"],
                 "status": "validating", "output_file_id": None, "error_file_id": None,
                 "metadata": request.get("metadata") or {}, "request_counts": {"total": 0, "completed": 0,
                                                                               "failed": 0}}
        self.batches[batch_id] = batch
        if self.on_batch_created:
            self.on_batch_created(batch)
        return self._json(200, batch)

    def _batches_list(self, path, body):
        return self._json(200, {"object": "list", "data": list(self.batches.values()), "has_more": False})

    def _batches_retrieve(self, path, body):
        batch = self.batches[path.strip("/").split("/")[2]]
        if batch["status"] == "validating":
            batch["status"] = "in_progress"
        elif batch["status"] == "in_progress":
            output, errors = [], []
            for line in self.files[batch["input_file_id"]].decode().splitlines():
                request = json.loads(line)
                if request["custom_id"] in self.fail_batch_lines:
                    errors.append({"id": "r", "custom_id": request["custom_id"], "response": None,
                                   "error": {"code": "server_error", "message": "injected line failure"}})
                    continue
                prompt = request["body"]["messages"][0]["content"]
                output.append({"id": "r", "custom_id": request["custom_id"], "error": None, "response": {
                    "status_code": 200, "request_id": "x", "body": logprob_completion(self.judge(prompt))}})
            for kind, lines in (("output_file_id", output), ("error_file_id", errors)):
                if lines:
                    file_id = f"file-{len(self.files) + 1}"
                    self.files[file_id] = "".join(json.dumps(x) + "\n" for x in lines).encode()
                    batch[kind] = file_id
            batch |= {"status": "completed", "request_counts": {"total": len(output) + len(errors),
                                                                "completed": len(output), "failed": len(errors)}}
        return self._json(200, batch)

    def _chat(self, path, body):
        request = json.loads(body)
        if request.get("logprobs") and self.judge:
            return self._json(200, logprob_completion(self.judge(request["messages"][0]["content"])))
        return self._json(200, completion(self.answer(request["model"]) if callable(self.answer) else self.answer))

    def _models(self, path, body):
        return self._json(200, {"object": "list", "data": [{"id": "judge-x", "object": "model", "created": 0,
                                                            "owned_by": "test"}]})
