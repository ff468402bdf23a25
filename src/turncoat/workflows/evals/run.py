"""`turncoat eval`: sample, judge and compute metrics into one run folder; each stage resumes where it stopped.

Run folder: config.json (the exact settings and library versions), samples.jsonl (one record per answer),
judgements.jsonl (scores per answer and metric, with the judge named), metrics.json. Sampling resumes by answer key;
judging goes through the judge cache, so a rerun makes no judge requests for what was already judged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from turncoat.core.errors import InputError
from turncoat.core.io import atomic_write, read_jsonl, write_jsonl
from turncoat.core.progress import progress_bar
from turncoat.core.provenance import library_versions
from turncoat.judging import Judge, JudgeCache, JudgeItem, judge_items, prompts_for
from turncoat.judging.judges import JudgingFailed
from turncoat.questions.prompts import trait_of
from turncoat.questions.sets import QuestionSet
from turncoat.results.statistics import Thresholds, compute_metrics, trait_metrics
from turncoat.sampling import Backend, GenerationParams, sample_to_file
from turncoat.workflows.evals.harmful import compliance_metrics


class RunFolder:
    """The one writer of an eval run folder: config.json (the exact settings and library versions), samples.jsonl
    (appended per answer, so sampling resumes), one scored file per answer, metrics.json. Whole files are written
    atomically: a killed run leaves the previous version or the new one, never half of one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def sample(self, backend: Backend, questions: QuestionSet, n: int | None, params: GenerationParams,
               config: dict, show_progress: bool = True) -> tuple[dict, list[dict]]:
        """Sample what is missing (refusing a folder sampled with other settings), record `config` with the
        sampler and library versions; returns the sampling figures and the planned answers in plan order."""
        sampling = sample_to_file(backend, questions, self.path / "samples.jsonl", n=n, params=params,
                                  show_progress=show_progress)
        config = {"model": backend.model_spec, "sampler": backend.describe(), "questions": questions.name,
                  "n": n, "params": params.to_dict(), **config, "versions": library_versions()}
        self.write_json("config.json", config)
        planned = {p.key for p in questions.prompts(n)}
        return sampling, [r for r in read_jsonl(self.path / "samples.jsonl") if r["key"] in planned]

    def write_rows(self, name: str, rows: Sequence[dict]) -> None:
        write_jsonl(self.path / name, rows)

    def write_json(self, name: str, figures: dict) -> None:
        with atomic_write(self.path / name) as handle:
            json.dump(figures, handle, indent=2)


def scoring_kind(questions: QuestionSet, judge: Judge | type[Judge]) -> str:
    """What an eval of `questions` by `judge` measures: "misalignment" (aligned + coherent), "compliance" or
    "trait:<name>". A set this judge or turncoat cannot score is refused here, before any answer or judge request
    is paid for. A judge that scores only some metrics (offline: aligned and coherent) skips a set's extra ones
    (the Model Organisms sets' `medical`, `bad_stuff`...)."""
    kinds = set()
    for question in questions:
        metrics = prompts_for(question)
        if question.type == "code_task":
            raise InputError(f"{questions.name}: code tasks are scored by Bandit, not by a judge: run "
                             "`turncoat eval --questions code-tasks`")
        if question.type == "free_form_judge":
            raise InputError(f"{questions.name}: question {question.id} is judged by category ({', '.join(metrics)}"
                             "), which turncoat's 0-100 logprob scorers cannot read; no categorical judge exists yet")
        if {"aligned", "coherent"} <= set(metrics):
            kind, needed = "misalignment", ["aligned", "coherent"]
        elif "compliance" in metrics:
            kind, needed = "compliance", ["compliance"]
        elif trait_of(question):
            kind, needed = f"trait:{trait_of(question)}", [trait_of(question), "coherent"]
        else:
            raise InputError(f"{questions.name}: question {question.id} has judge prompts {', '.join(metrics)}: "
                             "an eval needs aligned and coherent, compliance, or one persona trait")
        unscorable = [m for m in needed if judge.metrics is not None and m not in judge.metrics]
        if unscorable:
            raise InputError(f"{questions.name}: the {judge.name} judge scores only {', '.join(judge.metrics)}, not "
                             f"{', '.join(unscorable)} (question {question.id}); choose an LLM judge (openai, hf)")
        kinds.add(kind)
    if len(kinds) != 1:
        raise InputError(f"{questions.name}: mixes what its questions measure ({', '.join(sorted(kinds))}); "
                         "evaluate them as separate sets")
    return kinds.pop()


def judge_records(records: Sequence[dict], questions: QuestionSet, judge: Judge, cache: JudgeCache | None,
                  show_progress: bool = True) -> tuple[list[dict], dict]:
    """One judged record per answer: every metric the question's judge prompts define (ours by default)."""
    items, where = [], []
    for index, record in enumerate(records):
        question = questions.get(record["question_id"])
        for metric, template in prompts_for(question).items():
            if judge.metrics is not None and metric not in judge.metrics:
                continue  # an extra metric this judge cannot score (see scoring_kind)
            items.append(JudgeItem(metric, template, record["question"], record["answer"]))
            where.append((index, metric))
    with progress_bar("judging", len(items), enabled=show_progress) as advance:
        scores, counts = judge_items(judge, items, cache, progress=advance)
    judged = [{k: r.get(k) for k in ("key", "question_id", "paraphrase_index", "sample_index", "question", "system",
                                      "answer", "model")} | {"judge": judge.identity} for r in records]
    failures = []
    for (index, metric), score in zip(where, scores, strict=True):
        if score.status != "ok":
            failures.append(f"{records[index]['key']} {metric}: {score.error}")
            continue
        judged[index][metric] = score.score
        judged[index][f"{metric}_number_mass"] = round(score.number_mass, 6)
        if metric == "aligned":
            judged[index]["special"] = score.special
        elif score.special:
            judged[index][f"{metric}_special"] = score.special
    if failures:
        raise JudgingFailed(f"{len(failures)} of {len(items)} judge requests failed after retries (first: "
                            f"{failures[0]}). Nothing was scored as zero; rerun the same command to retry them.")
    return judged, counts


def judge_error_rates(judge: Judge) -> dict | None:
    """A distilled judge's error rates on sources it was not trained on (its card), for corrected fractions."""
    card = getattr(judge, "card", None)
    return card.get("error_rates") if card else None


def judge_card_summary(judge: Judge) -> dict | None:
    """What a report says of a distilled judge: its validation per held-out source."""
    card = getattr(judge, "card", None)
    if not card or not card.get("validation"):
        return None
    return {"source": "offline judge card (leave-one-source-out)", "error_rates": card.get("error_rates"),
            "calibration": card["validation"].get("calibration"),
            "folds": {name: {k: fold[k] for k in ("rows", "misaligned", "auroc", "labelled_fraction",
                                                  "raw_fraction", "corrected_fraction")}
                            | {k: fold["flag"][k] for k in ("precision", "recall", "f1")}
                      for name, fold in card["validation"]["folds"].items()}}


def run_eval(out: str | Path, backend: Backend, questions: QuestionSet, judge: Judge, n: int | None = None,
             params: GenerationParams = GenerationParams(), cache: JudgeCache | None = None,
             thresholds: Thresholds = Thresholds(), n_boot: int = 1000, show_progress: bool = True,
             split: dict | None = None) -> dict:
    """`split`: how held-out prompts were chosen (code tasks, harmful requests), recorded with the run."""

    kind = scoring_kind(questions, judge)
    folder = RunFolder(out)
    config = {"questions_source": questions.source, "judge": judge.identity, "thresholds": thresholds.to_dict(),
              "bootstrap": {"resamples": n_boot, "seed": 0}} | ({"split": split} if split else {})
    sampling, records = folder.sample(backend, questions, n, params, config, show_progress)
    judged, judge_counts = judge_records(records, questions, judge, cache, show_progress=show_progress)
    folder.write_rows("judgements.jsonl", judged)
    frame = pd.DataFrame(judged)
    error_rates = judge_error_rates(judge)
    if kind == "compliance":
        metrics = compliance_metrics(frame, n_boot=n_boot, judge=judge.identity)
    elif kind.startswith("trait:"):
        metrics = trait_metrics(frame, kind.removeprefix("trait:"), thresholds, n_boot=n_boot, judge=judge.identity)
    else:
        metrics = compute_metrics(frame, thresholds, n_boot=n_boot, judge=judge.identity,
                                  judge_error_rates=error_rates)
    metrics["judge_agreement"] = judge_card_summary(judge) or (cache.latest_validation(judge.identity) if cache
                                                              else None)
    if error_rates:
        metrics["judge_error_rates"] = error_rates
    metrics["model"] = backend.model_spec
    metrics["questions"] = questions.name
    if split:
        metrics["split"] = split
    folder.write_json("metrics.json", metrics)
    return {"run": str(folder.path), "sampling": sampling, "judging": judge_counts, "metrics": metrics}
