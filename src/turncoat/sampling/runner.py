"""`turncoat sample`: draw answers to a question set into a JSONL file, written as they arrive, resumable.

Each answer is one record keyed `question_id/paraphrase_index/sample_index`. Rerunning on the same file skips the
keys already there, so an interrupted run ends with exactly the planned answers and no duplicates. Requests that
failed go to a sidecar `*.errors.jsonl` and are retried on the next run.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from turncoat.core.errors import InputError, TurncoatError
from turncoat.core.io import append_jsonl, read_jsonl
from turncoat.core.progress import progress_bar
from turncoat.questions.builtin import parse_self_report
from turncoat.questions.sets import Prompt, QuestionSet
from turncoat.sampling.backends import Backend
from turncoat.sampling.hf import GenerationParams

# params that do not change what is sampled, only how fast
_NOT_SEMANTIC = {"batch_size"}


def errors_path(out: Path) -> Path:
    return out.with_name(out.stem + ".errors.jsonl")


OPTIONAL_SETUP = ("interventions",)  # settings a backend records only when used (steering, ablation)


def sample_to_file(backend: Backend, questions: QuestionSet, out: str | Path, n: int | None = None,
                   params: GenerationParams = GenerationParams(), show_progress: bool = True) -> dict:
    """Sample every planned answer not yet in `out`; returns the run's figures."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    setup = {**backend.describe(), "params": {k: v for k, v in params.to_dict().items() if k not in _NOT_SEMANTIC}}
    existing = read_jsonl(out, repair=True)
    for record in existing[:1]:
        keys = [*setup, *(k for k in OPTIONAL_SETUP if k not in setup)]  # steering on one side only differs too
        before, now = {key: record.get(key) for key in keys}, {key: setup.get(key) for key in keys}
        if before != now:
            raise InputError(f"{out}: already holds answers sampled with {before}; this run uses {setup}. "
                             f"Choose another --out to sample with different settings.")
    done = {r["key"] for r in existing}
    plan = questions.prompts(n)
    todo = [p for p in plan if p.key not in done]
    counts = {"written": 0, "failed": 0, "tokens": 0}
    began = time.perf_counter()

    with open(out, "a", encoding="utf-8") as answers, progress_bar(
            "sampling", len(plan), len(plan) - len(todo), enabled=show_progress, unit="answers") as advance:

        def on_results(prompts: list[Prompt], results: list[dict]) -> None:
            written = []
            for prompt, result in zip(prompts, results, strict=True):
                record = _record(prompt, result, setup, params.seed)
                if result.get("status") == "failed":
                    counts["failed"] += 1
                    with open(errors_path(out), "a", encoding="utf-8") as errors:
                        append_jsonl(errors, [record])
                    continue
                written.append(record)
                counts["tokens"] += record.get("completion_tokens") or 0
            counts["written"] += append_jsonl(answers, written)
            advance(len(prompts), f"{counts['tokens'] / max(time.perf_counter() - began, 1e-9):.0f} tokens/s")

        if todo:
            backend.sample(todo, params, on_results)
    seconds = time.perf_counter() - began
    figures = {"out": str(out), "planned": len(plan), "already_done": len(plan) - len(todo),
               "written": counts["written"], "failed": counts["failed"], "completion_tokens": counts["tokens"],
               "seconds": round(seconds, 2),
               "tokens_per_second": round(counts["tokens"] / seconds, 1) if seconds else 0,
               **setup}
    if counts["failed"]:
        raise SamplingFailed(figures, errors_path(out))
    return figures


class SamplingFailed(TurncoatError):
    def __init__(self, figures: dict, errors: Path):
        self.figures = figures
        first = json.loads(errors.read_text(encoding="utf-8").splitlines()[-1])["error"] if errors.exists() else ""
        super().__init__(f"{figures['failed']} of {figures['planned'] - figures['already_done']} requests failed after "
                         f"retries (last error: {first}). They are listed in {errors} and were not written as answers; "
                         f"rerun the same command to retry them.")


def _record(prompt: Prompt, result: dict, setup: dict, seed: int) -> dict:
    question = prompt.question
    if question.type == "self_report_0_100" and result.get("answer") is not None:
        result = {**result, "self_report": parse_self_report(result["answer"])}
    return {"key": prompt.key, "question_id": question.id, "paraphrase_index": prompt.paraphrase_index,
            "sample_index": prompt.sample_index, "question": question.paraphrases[prompt.paraphrase_index],
            "system": question.system, **{k: v for k, v in result.items() if k != "batch_seconds"}, **setup,
            "seed": seed, "time": datetime.now(UTC).isoformat(timespec="seconds")}
