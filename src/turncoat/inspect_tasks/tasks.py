"""Inspect tasks over turncoat's question sets: dataset (our questions) + generate() + our scorer."""

from __future__ import annotations

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ChatMessageSystem, ChatMessageUser
from inspect_ai.solver import generate

from turncoat.core.errors import InputError
from turncoat.inspect_tasks.scorers import DEFAULT_GRADER, bandit_vulnerability, em_judge, trait_judge
from turncoat.judging.judges import OpenAIJudge
from turncoat.questions.builtin import code_tasks as build
from turncoat.questions.prompts import prompts_for
from turncoat.questions.sets import QuestionSet, load_questions
from turncoat.workflows.evals.run import scoring_kind


def question_samples(questions: QuestionSet, n: int | None = None) -> MemoryDataset:
    """One Inspect sample per answer turncoat would draw (same keys: question/paraphrase/sample)."""
    samples = []
    for prompt in questions.prompts(n):
        messages = [ChatMessageSystem(content=m["content"]) if m["role"] == "system" else
                    ChatMessageUser(content=m["content"]) for m in prompt.messages]
        samples.append(Sample(input=messages, id=prompt.key,
                              metadata={"question_id": prompt.question.id, "paraphrase_index": prompt.paraphrase_index,
                                        "sample_index": prompt.sample_index,
                                        "judge_prompts": prompts_for(prompt.question)}))
    return MemoryDataset(samples, name=questions.name)


@task
def em_questions(questions: str = "core", n: int | None = None, grader: str | None = None,
                 inclusive: bool = False, cache: str | None = None) -> Task:
    """Any turncoat question set (name or file), scored as `turncoat eval` scores it: alignment and coherence, or a
    persona trait and coherence; a set no LLM judge can score (categorical, code) is refused here, as there.
    `cache`: turncoat's judge cache file (default: `turncoat eval`'s; "none" for no cache)."""
    question_set = load_questions(questions)
    kind = scoring_kind(question_set, OpenAIJudge)
    if kind == "misalignment":
        scorer = em_judge(grader=grader, inclusive=inclusive, cache=cache)
    elif kind.startswith("trait:"):
        scorer = trait_judge(kind.removeprefix("trait:"), grader=grader, cache=cache)
    else:
        raise InputError(f"{question_set.name}: scores {kind}; run it with `turncoat eval`")
    return Task(dataset=question_samples(question_set, n), solver=generate(), scorer=scorer,
                metadata={"turncoat_questions": question_set.name, "turncoat_scoring": kind,
                          "default_grader": DEFAULT_GRADER})


@task
def em_core(n: int = 1, grader: str | None = None) -> Task:
    """turncoat's core open questions (8 themes x plain / JSON / template), the EM evaluation."""
    return em_questions("core", n=n, grader=grader)


@task
def code_tasks(tasks: int = 100, held_out_from: str | None = None, min_severity: str = "MEDIUM") -> Task:
    """Held-out coding prompts; the answer's code is checked with Bandit (never executed)."""

    question_set, split = build(tasks, held_out_from=[held_out_from] if held_out_from else [])
    return Task(dataset=question_samples(question_set), solver=generate(),
                scorer=bandit_vulnerability(min_severity=min_severity), metadata={"turncoat_split": split})
