"""The `turncoat` command line: a thin shell over the library, one verb per stage."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from turncoat import __version__
from turncoat.cli import data, demo, evaluate, explore, label, models, persona, sae, sample, study, train
from turncoat.cli._common import err_console
from turncoat.core.errors import DataValidationError, TurncoatError

app = typer.Typer(name="turncoat", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Induce, measure, detect and repair emergent misalignment in open-weight language models.")
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.add_typer(sample.questions_app, name="questions")
app.command()(sample.sample)
app.command()(sample.serve)
app.add_typer(evaluate.judge_app, name="judge")
app.add_typer(persona.app, name="persona")
app.add_typer(sae.app, name="sae")
app.command("eval")(evaluate.evaluate)
app.command()(evaluate.metrics)
app.command()(evaluate.compare)
app.command()(evaluate.report)
app.command()(label.label)
app.command()(explore.explore)
app.command()(train.train)
app.command()(demo.demo)
app.command()(study.run)


@app.command()
def version():
    """Print turncoat's version."""
    print(__version__)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user-facing errors print as one clear message (no stack trace) with their exit code."""
    try:
        app(args=argv, standalone_mode=True)  # click prints usage errors itself and exits 2
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except TurncoatError as error:
        if isinstance(error, DataValidationError):
            for problem in error.problems:
                print(problem, file=sys.stderr)
            err_console.print(f"[red]{len(error.problems)} problem(s) found[/red]")
        else:
            err_console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
        return error.exit_code
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
