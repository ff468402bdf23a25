"""Errors a user can act on. The CLI prints their message (no stack trace) and exits with `exit_code`."""

from __future__ import annotations


class TurncoatError(Exception):
    """Base class: a problem with the user's input or environment, explained in its message."""

    exit_code = 1


class InputError(TurncoatError):
    """Bad input (file, argument, config): exit code 2, like a usage error."""

    exit_code = 2


class DataValidationError(InputError):
    """A data file broke the schema; carries every problem found, each naming file, line and field."""

    def __init__(self, problems: list, max_shown: int = 50):
        self.problems = list(problems)
        shown = [str(p) for p in self.problems[:max_shown]]
        more = len(self.problems) - len(shown)
        if more > 0:
            shown.append(f"... and {more} more problem(s)")
        super().__init__("\n".join(shown))


class DataUnavailableError(TurncoatError):
    """A registered data set is neither local nor downloadable."""


class ChecksumMismatchError(TurncoatError):
    """A file's sha256 differs from the pinned one: it is never used silently."""


class ModelLoadError(TurncoatError):
    """A model spec could not be resolved or loaded."""


class ModelSpecError(ModelLoadError):
    """A --model value that names nothing: no such file, an empty folder, not an alias or a Hub id (bad input)."""

    exit_code = 2


class ModelPackageError(ModelLoadError):
    """A model package is missing or its files do not match their pinned sha256 (exit 2: reinstall it)."""

    exit_code = 2


class ChatTemplateMissingError(ModelLoadError):
    """The tokenizer has no chat template and none was given."""
