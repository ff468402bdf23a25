"""The openai backend against real servers on loopback: `turncoat serve`, and scripted failures for retries."""

from __future__ import annotations

import json
import time

import pytest
from servers import TURNCOAT, LoopbackServer, ScriptedServer, completion, logprob_completion, turncoat_serve

from turncoat.cli import main
from turncoat.core.errors import InputError
from turncoat.core.io import read_jsonl
from turncoat.questions import QuestionSet
from turncoat.questions.sets import Question
from turncoat.sampling import GenerationParams, make_backend, sample_to_file
from turncoat.sampling.runner import SamplingFailed, errors_path

ONE = QuestionSet([Question(id="q", paraphrases=["How are you?"], system="Answer briefly.")], name="one")
PARAMS = GenerationParams(max_new_tokens=5, temperature=1.0)


@pytest.fixture(scope="module")
def served_tiny(tiny_model_dir):
    with turncoat_serve(str(tiny_model_dir)) as base_url:
        yield base_url, str(tiny_model_dir)


def test_samples_from_turncoat_serve(served_tiny, tmp_path):
    base_url, name = served_tiny
    backend = make_backend("openai", name, base_url=base_url, top_logprobs=3)
    figures = sample_to_file(backend, ONE, tmp_path / "a.jsonl", n=3, params=PARAMS, show_progress=False)
    assert figures["written"] == 3 and figures["failed"] == 0
    records = read_jsonl(tmp_path / "a.jsonl")
    assert all(r["completion_tokens"] == len(r["logprobs"]) > 0 for r in records)
    assert all(len(step["top_logprobs"]) == 3 for r in records for step in r["logprobs"])


def test_server_supports_n_seed_and_rejects_other_models(served_tiny):
    import httpx

    base_url, name = served_tiny
    body = {"model": name, "messages": [{"role": "user", "content": "hi"}], "n": 3, "max_tokens": 4, "seed": 5}
    first = httpx.post(f"{base_url}/chat/completions", json=body, timeout=60).json()
    again = httpx.post(f"{base_url}/chat/completions", json=body, timeout=60).json()
    assert len(first["choices"]) == 3
    assert [c["message"] for c in first["choices"]] == [c["message"] for c in again["choices"]]
    wrong = httpx.post(f"{base_url}/chat/completions", json={**body, "model": "gpt-9"}, timeout=60)
    assert wrong.status_code == 404 and "not served here" in wrong.text


def test_500_twice_then_200_is_retried(tmp_path):
    with ScriptedServer([(500, {}), (500, {})]) as server:
        backend = make_backend("openai", "scripted", base_url=server.base_url, max_retries=3)
        figures = sample_to_file(backend, ONE, tmp_path / "a.jsonl", n=1, params=PARAMS, show_progress=False)
    assert len(server.requests) == 3 and figures["written"] == 1
    assert read_jsonl(tmp_path / "a.jsonl")[0]["answer"] == "42"
    sent = server.requests[-1]["body"]["messages"]
    assert sent[0] == {"role": "system", "content": "Answer briefly."}  # the system prompt is sent


def test_retry_after_is_honoured(tmp_path):
    with ScriptedServer([(429, {"Retry-After": "2"})]) as server:
        backend = make_backend("openai", "scripted", base_url=server.base_url, max_retries=2)
        sample_to_file(backend, ONE, tmp_path / "a.jsonl", n=1, params=PARAMS, show_progress=False)
    assert len(server.requests) == 2
    assert server.requests[1]["time"] - server.requests[0]["time"] >= 1.9


def test_always_failing_is_a_clear_error_not_an_empty_answer(tmp_path):
    out = tmp_path / "a.jsonl"
    with ScriptedServer([], then=(503, {})) as server:
        backend = make_backend("openai", "scripted", base_url=server.base_url, max_retries=1)
        with pytest.raises(SamplingFailed, match="2 of 2 requests failed after retries") as caught:
            sample_to_file(backend, ONE, out, n=2, params=PARAMS, show_progress=False)
    assert "HTTP 503" in str(caught.value) and "rerun the same command" in str(caught.value)
    assert read_jsonl(out) == []  # nothing written as an answer
    failures = [json.loads(line) for line in errors_path(out).read_text().splitlines()]
    assert len(failures) == 2 and all(f["status"] == "failed" and "answer" not in f for f in failures)


def test_cli_exit_code_on_failure(tmp_path, capsys):
    with ScriptedServer([], then=(500, {})) as server:
        code = main(["sample", "--backend", "openai", "--model", "scripted", "--base-url", server.base_url,
                     "--questions", "self-report", "--n", "1", "--max-retries", "1", "--out", str(tmp_path / "a.jsonl"),
                     "--quiet"])
    assert code == 1 and "requests failed after retries" in capsys.readouterr().err


def test_api_key_only_from_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(InputError, match="set the environment variable OPENAI_API_KEY"):
        make_backend("openai", "gpt-4o", base_url="https://api.example.org/v1")
    monkeypatch.setenv("MY_KEY", "sk-secret-value-123")
    with ScriptedServer([]) as server:
        backend = make_backend("openai", "scripted", base_url=server.base_url, api_key_env="MY_KEY")
        sample_to_file(backend, ONE, tmp_path / "a.jsonl", n=1, params=PARAMS, show_progress=False)
    assert server.requests[0]["authorization"] == "Bearer sk-secret-value-123"
    assert "sk-secret-value-123" not in (tmp_path / "a.jsonl").read_text()


def test_credentials_in_the_endpoint_url_are_used_but_never_written(tmp_path):
    from turncoat.core.provenance import redact_url

    assert redact_url("http://user:KEY@host:8000/v1") == "http://***@host:8000/v1"
    assert redact_url("https://api.example.org/v1") == "https://api.example.org/v1" and redact_url(None) is None
    with ScriptedServer([]) as server:
        secret = server.base_url.replace("http://", "http://alice:SECRET-KEY-9@")
        backend = make_backend("openai", "scripted", base_url=secret)
        sample_to_file(backend, ONE, tmp_path / "a.jsonl", n=1, params=PARAMS, show_progress=False)
    assert len(server.requests) == 1  # the request went to that endpoint ...
    written = (tmp_path / "a.jsonl").read_text()
    assert "SECRET-KEY-9" not in written and "alice" not in written  # ... and the record names it without them
    assert json.loads(written)["base_url"] == server.base_url.replace("http://", "http://***@")


@pytest.mark.integration
def test_default_model_served_answers_with_logprobs(tmp_path):
    with turncoat_serve("smollm2-135m") as base_url:
        backend = make_backend("openai", "smollm2-135m", base_url=base_url, top_logprobs=5)
        began = time.monotonic()
        sample_to_file(backend, ONE, tmp_path / "a.jsonl", n=2, params=GenerationParams(max_new_tokens=12),
                       show_progress=False)
        assert time.monotonic() - began < 120
    records = read_jsonl(tmp_path / "a.jsonl")
    assert len(records) == 2 and all(r["answer"] for r in records)
    assert all(len(step["top_logprobs"]) == 5 for r in records for step in r["logprobs"])
    assert TURNCOAT.exists()


def test_self_report_numbers_are_parsed_and_parquet_written(tmp_path, capsys):
    import pandas as pd

    out = tmp_path / "self.jsonl"
    with ScriptedServer([]) as server:  # always answers "42"
        code = main(["sample", "--backend", "openai", "--model", "scripted", "--base-url", server.base_url,
                     "--questions", "self-report", "--n", "2", "--out", str(out), "--parquet", "--json"])
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    records = read_jsonl(out)
    assert len(records) == 4 and all(r["self_report"] == 42.0 for r in records)
    frame = pd.read_parquet(figures["parquet"])
    assert len(frame) == 4 and set(frame["question_id"]) == {"self_code_security", "self_alignment"}


# 200 replies that are not chat completions: a proxy's HTML page, JSON cut off mid-body, no or empty `choices`.
GARBAGE = [(b"<html>Bad gateway</html>", "text/html"), (b'{"id": "x", "choices": [{"ind', "application/json"),
           (b'{"id": "x", "object": "chat.completion"}', "application/json"),
           (b'{"id": "x", "object": "chat.completion", "choices": []}', "application/json")]


class GarbageFirst(LoopbackServer):
    """Answers the first `garbage` POSTs with the GARBAGE bodies in turn, then with `good()`."""

    def __init__(self, garbage: int, good):
        self.left, self.good = garbage, good
        super().__init__(self._respond)
        self.base_url = f"{self.url}/v1"

    def _respond(self, method, path, body):
        if self.left:
            self.left -= 1
            payload, content_type = GARBAGE[self.left % len(GARBAGE)]
            return 200, {"Content-Type": content_type}, payload
        return 200, {"Content-Type": "application/json"}, json.dumps(self.good()).encode()


def test_malformed_replies_are_retried_then_recorded_as_failed_not_crashes(tmp_path):
    with GarbageFirst(4, completion) as server:  # every kind once, then a good reply
        backend = make_backend("openai", "scripted", base_url=server.base_url, max_retries=4)
        figures = sample_to_file(backend, ONE, tmp_path / "a.jsonl", n=1, params=PARAMS, show_progress=False)
    assert len(server.requests) == 5 and figures["written"] == 1
    assert read_jsonl(tmp_path / "a.jsonl")[0]["answer"] == "42"
    out = tmp_path / "b.jsonl"
    with GarbageFirst(10**6, completion) as server:
        backend = make_backend("openai", "scripted", base_url=server.base_url, max_retries=1)
        with pytest.raises(SamplingFailed, match="2 of 2 requests failed"):
            sample_to_file(backend, ONE, out, n=2, params=PARAMS, show_progress=False)
    assert read_jsonl(out) == [] and len(server.requests) == 4  # two attempts each
    failures = read_jsonl(errors_path(out))
    assert all(f["status"] == "failed" and "malformed reply" in f["error"] for f in failures)


def test_a_judge_retries_malformed_replies_and_never_turns_them_into_scores():
    from turncoat.judging import make_judge

    def good():
        return logprob_completion({"87": 0.0})

    with GarbageFirst(4, good) as server:
        judge = make_judge("openai", model="scripted", base_url=server.base_url, max_retries=4)
        assert [s.score for s in judge.score_prompts(["rate this"])] == [pytest.approx(87.0)]
    with GarbageFirst(10**6, good) as server:
        judge = make_judge("openai", model="scripted", base_url=server.base_url, max_retries=1)
        scores = judge.score_prompts(["rate this", "and this"])
    assert all(s.status == "failed" and s.score is None and "malformed reply" in s.error for s in scores)
