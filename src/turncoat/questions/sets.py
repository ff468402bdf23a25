"""Question sets: the EM paper's YAML format, persona trait files, and a registry of named sets.

The YAML format (a list of entries with `id`, `type`, `paraphrases`, `samples_per_paraphrase`, optional `system`,
`judge`, `judge_prompts`; anchors allowed) is loaded as the paper's authors wrote it: every question keeps its
system prompt, and `samples_per_paraphrase` is honoured unless a run asks for `n` answers per question.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from turncoat.core.errors import InputError
from turncoat.core.io import load_yaml, loads_line, not_utf8

QUESTION_TYPES = ("free_form", "free_form_judge", "free_form_judge_0_100", "self_report_0_100", "trait_0_100",
                  "code_task")


class Question(BaseModel):
    """One evaluation question: paraphrases of the same user turn, an optional system prompt, judge prompts."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1)
    type: str = "free_form_judge_0_100"
    paraphrases: list[str] = Field(min_length=1)
    samples_per_paraphrase: int = Field(default=1, ge=1)
    system: str | None = None
    judge: str | None = None
    judge_prompts: dict[str, str] = Field(default_factory=dict)

    @field_validator("paraphrases")
    @classmethod
    def _no_empty_paraphrase(cls, paraphrases: list[str]) -> list[str]:
        empty = [i for i, text in enumerate(paraphrases) if not text.strip()]
        if empty:
            raise ValueError(f"paraphrase {empty[0]} is empty (a model would be asked nothing)")
        broken = [(i, not_utf8(text)) for i, text in enumerate(paraphrases) if not_utf8(text)]
        if broken:
            raise ValueError(f"paraphrase {broken[0][0]} {broken[0][1]}")
        return paraphrases

    def messages(self, paraphrase_index: int) -> list[dict]:
        """The chat sent to the model: the system prompt (if any) then the paraphrase as the user turn."""
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + [{"role": "user", "content": self.paraphrases[paraphrase_index]}]


@dataclass(frozen=True)
class Prompt:
    """One answer to draw: which question, which paraphrase, which sample."""

    question: Question
    paraphrase_index: int
    sample_index: int

    @property
    def key(self) -> str:
        return f"{self.question.id}/{self.paraphrase_index}/{self.sample_index}"

    @property
    def messages(self) -> list[dict]:
        return self.question.messages(self.paraphrase_index)


class QuestionSet(Sequence[Question]):
    def __init__(self, questions: list[Question], name: str, source: str = ""):
        ids = [q.id for q in questions]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise InputError(f"{source or name}: duplicate question ids: {', '.join(duplicated)}")
        self.questions, self.name, self.source = questions, name, source
        self._by_id = {q.id: q for q in questions}

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, index):
        return self.questions[index]

    def __iter__(self) -> Iterator[Question]:
        return iter(self.questions)

    def get(self, question_id: str) -> Question:
        return self._by_id[question_id]

    def with_prefix(self, text: str) -> QuestionSet:
        """The same questions with `text` on its own line before every paraphrase (e.g. a backdoor trigger)."""
        changed = [q.model_copy(update={"paraphrases": [f"{text}\n{p}" for p in q.paraphrases]}) for q in self]
        return QuestionSet(changed, name=f"{self.name}+{text}", source=self.source)

    def with_suffix(self, text: str) -> QuestionSet:
        """The same questions with `text` on its own line after every paraphrase (e.g. an answer-format request)."""
        changed = [q.model_copy(update={"paraphrases": [f"{p}\n{text}" for p in q.paraphrases]}) for q in self]
        return QuestionSet(changed, name=f"{self.name}+format", source=self.source)

    def first(self, count: int) -> QuestionSet:
        """The first `count` questions (smoke runs of a recipe keep its set but ask only a few)."""
        return QuestionSet(self.questions[:count], name=self.name, source=self.source)

    def prompts(self, n: int | None = None) -> list[Prompt]:
        """Every answer to draw. Default: `samples_per_paraphrase` per paraphrase. With `n`: exactly n answers per
        question, cycling through its paraphrases in order."""
        prompts = []
        for question in self.questions:
            if n is None:
                for p in range(len(question.paraphrases)):
                    prompts.extend(Prompt(question, p, s) for s in range(question.samples_per_paraphrase))
            else:
                prompts.extend(Prompt(question, s % len(question.paraphrases), s) for s in range(n))
        return prompts


def _read_text(path: Path) -> str:
    """A question or trait file's text; unreadable or non-UTF-8 files are input errors naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None


def load_questions_yaml(path: str | Path, name: str = "") -> QuestionSet:
    """Load a question file in the EM paper's format; errors name the file, the entry and the field."""
    path = Path(path)
    try:
        entries = load_yaml(_read_text(path))
    except yaml.YAMLError as error:
        raise InputError(f"{path}: invalid YAML: {error}") from error
    if not isinstance(entries, list):
        raise InputError(f"{path}: expected a list of question entries, got {type(entries).__name__}")
    questions = []
    for number, entry in enumerate(entries, start=1):
        label = f"{path}: entry {number}" + (f" (id {entry.get('id')!r})" if isinstance(entry, dict) else "")
        if not isinstance(entry, dict):
            raise InputError(f"{label}: expected a mapping, got {type(entry).__name__}")
        try:
            question = Question.model_validate(entry)
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "(entry)"
            raise InputError(f"{label}: {field}: {first['msg']}") from None
        if question.type not in QUESTION_TYPES:
            raise InputError(f"{label}: type: unknown question type {question.type!r} "
                             f"(known: {', '.join(QUESTION_TYPES)})")
        questions.append(question)
    return QuestionSet(questions, name=name or path.stem, source=str(path))


def load_trait_questions(path: str | Path, name: str = "") -> QuestionSet:
    """A persona-vectors trait file's questions; its `eval_prompt` becomes the judge prompt named after the trait."""
    path = Path(path)
    trait = path.stem
    try:
        data = loads_line(_read_text(path))
        texts, eval_prompt = data["questions"], data["eval_prompt"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise InputError(f"{path}: not a trait file (needs 'questions' and 'eval_prompt'): {error}") from error
    if not isinstance(texts, list) or not texts:
        raise InputError(f"{path}: questions: expected a non-empty list of strings, got {type(texts).__name__}")
    for number, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{path}: questions[{number}]: expected a non-empty string, got {text!r}")
    if not isinstance(eval_prompt, str) or not eval_prompt.strip():
        raise InputError(f"{path}: eval_prompt: expected a non-empty string")
    if not_utf8(eval_prompt):
        raise InputError(f"{path}: eval_prompt: {not_utf8(eval_prompt)}")
    questions = [Question(id=f"{trait}_{i}", type="trait_0_100", paraphrases=[text], judge_prompts={trait: eval_prompt})
                 for i, text in enumerate(texts)]
    return QuestionSet(questions, name=name or f"trait-{trait}", source=str(path))


# -- registry -------------------------------------------------------------------------------------------------------

QUESTION_SETS: dict[str, tuple[Callable[[], QuestionSet], str]] = {}


def question_set(name: str, description: str):
    """Register a function returning a QuestionSet under `name` (usable as `--questions NAME`)."""

    def register(build: Callable[[], QuestionSet]):
        QUESTION_SETS[name] = (build, description)
        return build

    return register


def load_questions(spec: str | Path) -> QuestionSet:
    """A registered set by name, or a question file (.yaml in the paper's format, .json trait file)."""
    if str(spec) in QUESTION_SETS:
        return QUESTION_SETS[str(spec)][0]()
    path = Path(spec)
    if path.is_file():
        return load_trait_questions(path) if path.suffix == ".json" else load_questions_yaml(path)
    raise InputError(f"unknown question set {str(spec)!r}: not a file, and not one of: {', '.join(QUESTION_SETS)}")
