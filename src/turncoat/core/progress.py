"""One progress bar for long work (rich), shared by sampling and judging; a no-op when disabled."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(label: str, total: int, completed: int = 0, enabled: bool = True,
                 unit: str = "") -> Iterator[Callable[..., None]]:
    """Yields `advance(n, note="")`: moves the bar by n and shows `note` (e.g. tokens/s) beside it."""
    if not enabled:
        yield lambda n, note="": None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                  TextColumn("{task.fields[note]}"), TimeRemainingColumn()) as bar:
        task = bar.add_task(label, total=total, completed=completed, note="")

        def advance(n: int, note: str = "") -> None:
            bar.update(task, advance=n, note=note)

        yield advance
