"""`turncoat persona ...`: persona directions in the residual stream."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from turncoat.cli._common import JsonOption, ModelOption, console, emit

app = typer.Typer(help="Persona directions: extract (steer and ablate with `turncoat sample --steer/--ablate`).",
                  no_args_is_help=True)


def _layers(text: str | None) -> list[int] | None:
    return [int(x) for x in text.split(",")] if text else None


@app.command()
def extract(model: str = ModelOption,
            positive: str = typer.Option(None, "--pos", help="from-texts: chat JSONL (file or set) of the trait."),
            negative: str = typer.Option(None, "--neg", help="from-texts: chat JSONL of its opposite."),
            judged: list[str] = typer.Option(None, "--from-judged", help="Judged files/runs: misaligned vs "
                                                                         "aligned answers (repeatable)."),
            trait: str = typer.Option(None, "--from-prompts", help="Trait extraction file or registered name "
                                                                  "(trait-evil-extract): answers under pos vs "
                                                                  "neg system prompts."),
            layers: str = typer.Option(None, help="Comma-separated block indices (default: all)."),
            limit: int = typer.Option(200, help="At most this many examples per side (seeded)."),
            n_questions: int = typer.Option(None, help="from-prompts: first N questions only."),
            out: Path = typer.Option(..., help="Direction file (.safetensors) to write."),
            as_json: bool = JsonOption):
    """Extract a direction (mean difference of response-averaged activations); report held-out separation."""
    from turncoat.data import load_chat, registry
    from turncoat.errors import InputError
    from turncoat.models import load
    from turncoat.persona import extract as methods

    chosen = [name for name, given in (("--pos/--neg", positive or negative), ("--from-judged", judged),
                                       ("--from-prompts", trait)) if given]
    if len(chosen) != 1:
        raise InputError(f"give exactly one of --pos/--neg, --from-judged, --from-prompts (got: {chosen or 'none'})")
    with console.status(f"loading {model}"):
        loaded = load(model)
    with console.status("reading activations"):
        if judged:
            direction = methods.from_judged(loaded, judged, _layers(layers), limit=limit)
        elif trait:
            direction = methods.from_prompts(loaded, registry.path_for(trait), _layers(layers),
                                             n_questions=n_questions)
        else:
            if not (positive and negative):
                raise InputError("from-texts needs both --pos and --neg")
            sides = [[[{"role": m.role, "content": m.content} for m in c.messages] for c in load_chat(s)][:limit]
                     for s in (positive, negative)]
            direction = methods.from_texts(loaded, *sides, _layers(layers), pos=positive, neg=negative)
    direction.save(out)
    figures = {"direction": str(out), **direction.metadata}

    def render(f):
        table = Table(title=f"{f['method']} on {f['model']}: held-out separation per layer "
                            f"({f['held_out']['positive']} + {f['held_out']['negative']} held out)")
        for column in ("layer", "Cohen's d", "AUROC"):
            table.add_column(column)
        for layer, s in f["separation"].items():
            table.add_row(layer, f"{s['cohens_d']:.2f}", f"{s['auroc']:.3f}",
                          style="bold" if int(layer) == f["best_layer"] else None)
        console.print(table)
        console.print(f"best layer {f['best_layer']} (by held-out AUROC); direction written to {f['direction']}")

    emit(figures, as_json, render)
