"""Question sets: the schema, YAML loaders, the built-in sets and the judge prompts that travel with them."""

from turncoat.questions import builtin  # noqa: E402, F401  (registers the built-in sets; it imports .sets)
from turncoat.questions.sets import (
    QUESTION_SETS,
    Prompt,
    Question,
    QuestionSet,
    load_questions,
    load_questions_yaml,
    load_trait_questions,
    question_set,
)

__all__ = ["QUESTION_SETS", "Prompt", "Question", "QuestionSet", "load_questions", "load_questions_yaml",
           "load_trait_questions", "question_set"]
