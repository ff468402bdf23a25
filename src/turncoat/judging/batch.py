"""`--judge openai --batch`: judge requests as one OpenAI Batch job (JSONL upload, poll, download).

Resumable like fine-tuning: the job's state lives in a file named by the hash of its requests (under the judge
cache's folder), written before anything is sent and after each step, and the batch carries a token in its
metadata, so a rerun after kill -9 attaches to the same batch and never pays twice. Scores come from the same
requests as live judging (`OpenAIJudge.request_body`) and are read the same way, so they are the same scores under
the same judge identity, stored in the same cache. What the batch leaves failed (error lines, missing lines, an
expired or failed batch) is judged live, and said so on stderr.
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from pathlib import Path

from turncoat.core import paths
from turncoat.core.io import atomic_write
from turncoat.judging.scores import JudgeScore, score_from_logprobs
from turncoat.sampling.openai_client import MALFORMED, create_exactly_once, wait_until_done


def batch_lines(judge, prompts) -> list[dict]:
    return [{"custom_id": str(index), "method": "POST", "url": "/v1/chat/completions",
             "body": judge.request_body(prompt)} for index, prompt in enumerate(prompts)]


def read_output(text: str) -> dict[int, JudgeScore]:
    """Scores of a batch output file's lines that succeeded, by index; failed lines are left out."""
    scores = {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
            response = record.get("response") or {}
            if record.get("error") or response.get("status_code") != 200:
                continue
            content = response["body"]["choices"][0]["logprobs"]["content"]
            scores[int(record["custom_id"])] = score_from_logprobs({t["token"]: t["logprob"]
                                                                    for t in content[0]["top_logprobs"]})
        except (*MALFORMED, json.JSONDecodeError):
            continue
    return scores


def score_in_batch(judge, prompts, on_score=None) -> list[JudgeScore]:
    lines = batch_lines(judge, prompts)
    payload = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    key = hashlib.sha256(payload.encode()).hexdigest()[:20]
    folder = Path(judge.batch_dir) if judge.batch_dir else paths.cache_dir() / "openai_batches"
    folder.mkdir(parents=True, exist_ok=True)
    state_path = folder / f"{key}.json"
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}

    def save(**values):
        state.update(values)
        with atomic_write(state_path) as handle:
            json.dump(state, handle, indent=2)

    if not state:
        save(token=uuid.uuid4().hex, requests=len(lines), judge=judge.identity)
    client = judge.endpoint.sync_client()
    if not state.get("input_file_id"):
        requests_file = folder / f"{key}.jsonl"
        requests_file.write_text(payload, encoding="utf-8")
        with open(requests_file, "rb") as handle:
            save(input_file_id=client.files.create(file=handle, purpose="batch").id)
    if not state.get("batch_id"):
        token = state["token"]

        def find():
            return next((b for b in client.batches.list(limit=100)
                         if (getattr(b, "metadata", None) or {}).get("turncoat_batch") == token), None)

        batch, _ = create_exactly_once(client, lambda single: single.batches.create(
            input_file_id=state["input_file_id"], endpoint="/v1/chat/completions", completion_window="24h",
            metadata={"turncoat_batch": token}), find, judge.endpoint.timeout)
        save(batch_id=batch.id)
    seen = []

    def show(batch):
        counts = getattr(batch, "request_counts", None)
        line = f"judge batch {batch.id}: {batch.status}" + (
            f" ({counts.completed}/{counts.total} done, {counts.failed} failed)" if counts and counts.total else "")
        if not seen or seen[-1] != line:
            seen.append(line)
            print(line, file=sys.stderr)

    batch = wait_until_done(lambda: client.batches.retrieve(state["batch_id"]), judge.poll_seconds, show)
    save(status=batch.status)
    scores = read_output(client.files.content(batch.output_file_id).text) if batch.output_file_id else {}
    results: list[JudgeScore | None] = [None] * len(prompts)
    for index, score in scores.items():
        results[index] = score
        if on_score:
            on_score(index, score)
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        print(f"judge batch {batch.id} ({batch.status}): {len(missing)} of {len(prompts)} requests came back "
              "failed or missing; judging those live", file=sys.stderr)

        def placed(position, score):
            results[missing[position]] = score
            if on_score:
                on_score(missing[position], score)

        judge.live([prompts[i] for i in missing], placed)
    return results
