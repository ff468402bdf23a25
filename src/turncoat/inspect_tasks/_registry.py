"""What the `inspect_ai` entry point imports: every task, scorer and model provider turncoat registers."""

from turncoat.inspect_tasks.provider import turncoat_provider  # noqa: F401
from turncoat.inspect_tasks.scorers import bandit_vulnerability, em_judge  # noqa: F401
from turncoat.inspect_tasks.tasks import code_tasks, em_core, em_questions  # noqa: F401
