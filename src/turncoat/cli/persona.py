"""`turncoat persona ...`: persona directions in the residual stream."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from turncoat.cli._common import JsonOption, ModelOption, console, emit
from turncoat.core.errors import InputError
from turncoat.core.progress import progress_bar
from turncoat.data import load_chat
from turncoat.data.transforms import subsample

app = typer.Typer(help="Persona directions: extract, score, screen training data (monitor with `turncoat train "
                       "--monitor-direction`; steer and ablate with `turncoat sample|serve --steer/--ablate`).",
                  no_args_is_help=True)


def _layers(text: str | None) -> list[int] | None:
    return [int(x) for x in text.split(",")] if text else None


@app.command()
def extract(model: str = ModelOption,
            positive: str = typer.Option(None, "--pos", help="from-texts: chat JSONL (file or set) of the trait."),
            negative: str = typer.Option(None, "--neg", help="from-texts: chat JSONL of its opposite."),
            judged: list[str] = typer.Option(None, "--from-judged", help="Judged files/runs: misaligned vs "
                                                                         "aligned answers (repeatable)."),
            trait: str = typer.Option(None, "--from-prompts", help="Trait extraction file, registered name "
                                                                  "(trait-evil-extract) or `misaligned` (ours): "
                                                                  "answers under pos vs neg system prompts."),
            diff: str = typer.Option(None, "--diff", help="Model diffing: the base model to subtract from --model "
                                                         "(`adapter-off` for --model's own base with its LoRA "
                                                         "switched off), on --questions."),
            questions: str = typer.Option("core", help="--diff: the question set the fine-tuned model answers."),
            judge: str = typer.Option(None, help="--from-prompts: keep only pairs this judge confirms "
                                                 "(e.g. offline)."),
            layers: str = typer.Option(None, help="Comma-separated block indices (default: all)."),
            limit: int = typer.Option(200, help="At most this many examples per side (seeded)."),
            n_questions: int = typer.Option(None, help="from-prompts: first N questions only."),
            out: Path = typer.Option(..., help="Direction file (.safetensors) to write."),
            as_json: bool = JsonOption):
    """Extract a direction (mean difference of response-averaged activations); report held-out separation."""
    from turncoat.models import load  # pulls in torch: loaded when the command runs
    from turncoat.report.plots import separation_by_layer  # pulls in matplotlib: loaded when the command runs
    from turncoat.workflows.persona import extract as methods  # pulls in torch: loaded when the command runs

    chosen = [name for name, given in (("--pos/--neg", positive or negative), ("--from-judged", judged),
                                       ("--from-prompts", trait), ("--diff", diff)) if given]
    if len(chosen) != 1:
        raise InputError(f"give exactly one of --pos/--neg, --from-judged, --from-prompts, --diff "
                         f"(got: {chosen or 'none'})")
    with console.status(f"loading {model}"):
        loaded = load(model)
    with console.status("reading activations"):
        if judged:
            direction = methods.from_judged(loaded, judged, _layers(layers), limit=limit)
        elif trait:
            from turncoat.judging import make_judge  # pulls in torch: loaded when the command runs

            direction = methods.from_prompts(loaded, methods.trait_path(trait), _layers(layers),
                                             n_questions=n_questions, judge=make_judge(judge) if judge else None)
        elif diff:
            from turncoat.workflows.persona.monitor import probe_prompts  # pulls in torch: loaded when the command runs

            base = None if diff == "adapter-off" else load(diff)
            direction = methods.from_diff(loaded, probe_prompts(questions, limit), base, _layers(layers),
                                          questions=questions)
        else:
            if not (positive and negative):
                raise InputError("from-texts needs both --pos and --neg")
            sides = [[c.as_messages() for c in load_chat(s)][:limit] for s in (positive, negative)]
            direction = methods.from_texts(loaded, *sides, _layers(layers), pos=positive, neg=negative)
    direction.save(out)

    meta = direction.metadata
    plot = separation_by_layer({"held-out AUROC": {int(k): v["auroc"] for k, v in meta["separation"].items()}},
                               out.with_suffix(".png"), f"{meta['method']} on {meta['model']}: held-out separation",
                               chosen={"held-out AUROC": meta["best_layer"]})
    figures = {"direction": str(out), "plot": str(plot), **meta}

    def render(f):
        table = Table(title=f"{f['method']} on {f['model']}: held-out separation per layer "
                            f"({f['held_out']['positive']} + {f['held_out']['negative']} held out, "
                            f"{f['held_out'].get('split', 'by example')})")
        for column in ("layer", "Cohen's d", "AUROC"):
            table.add_column(column)
        for layer, s in f["separation"].items():
            table.add_row(layer, f"{s['cohens_d']:.2f}", f"{s['auroc']:.3f}",
                          style="bold" if int(layer) == f["best_layer"] else None)
        console.print(table)
        console.print(f"best layer {f['best_layer']} (by held-out AUROC); direction written to {f['direction']}, "
                      f"plot to {f['plot']}")

    emit(figures, as_json, render)


@app.command()
def score(model: str = ModelOption,
          direction: Path = typer.Option(..., help="Direction file (.safetensors)."),
          questions: str = typer.Option("core", help="Question set the model answers (first paraphrase each)."),
          reference: str = typer.Option(None, help="Reference model (e.g. the base) answering the same questions: "
                                                   "z-score of --model's mean against its distribution."),
          layer: int = typer.Option(None, help="Direction layer (default: its best layer)."),
          max_tokens: int = typer.Option(96, help="Tokens per answer (greedy)."),
          out: Path = typer.Option(None, help="Write one JSON line per answer (question, answer, projection)."),
          as_json: bool = JsonOption):
    """Project the model's own answers onto a direction: one number per answer, their mean, and z vs a reference."""
    import json

    from turncoat.activations.directions import Direction  # pulls in torch: loaded when the command runs
    from turncoat.models import load  # pulls in torch: loaded when the command runs
    from turncoat.sampling import GenerationParams  # pulls in torch: loaded when the command runs
    from turncoat.workflows.persona.monitor import probe_prompts  # pulls in torch: loaded when the command runs
    from turncoat.workflows.persona.score import (  # pulls in torch: loaded when the command runs
        own_answers,
        pick_layer,
        projections,
        summary,
    )

    chosen = Direction.load(direction)
    layer = pick_layer(chosen, layer)
    prompts = probe_prompts(questions)
    params = GenerationParams(max_new_tokens=max_tokens, temperature=0.0)
    measured = {}
    for role, spec in (("model", model), ("reference", reference)):
        if spec is None:
            continue
        with console.status(f"{spec}: answering {len(prompts)} questions and reading the answers"):
            loaded = load(spec)
            chats = own_answers(loaded, prompts, params)
            measured[role] = (chats, projections(loaded, chosen, chats, layer))
    chats, values = measured["model"]
    figures = {"model": model, "direction": str(direction), "layer": layer, "questions": questions,
               "reference": reference, **summary(values, measured["reference"][1] if reference else None),
               "answers": [{"question": c[-2]["content"], "projection": float(v)}
                           for c, v in zip(chats, values, strict=True)]}
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps({"question": c[-2]["content"], "answer": c[-1]["content"],
                                           "projection": float(v)}) + "\n" for c, v in zip(chats, values, strict=True)))
        figures["out"] = str(out)

    def render(f):
        table = Table(title=f"{f['model']}: projection of its own answers on {f['direction']} at layer {f['layer']}")
        table.add_column("question", max_width=60)
        table.add_column("projection", justify="right")
        for row in sorted(f["answers"], key=lambda r: -r["projection"]):
            table.add_row(Text(row["question"]), f"{row['projection']:.2f}")
        console.print(table)
        line = f"mean {f['mean']:.3f} (SD {f['sd']:.3f}, {f['n']} answers)"
        if f.get("reference"):
            line += f"; {f['reference']}: mean {f['reference_mean']:.3f} (SD {f['reference_sd']:.3f}); z {f['z']:+.2f}"
        console.print(line)

    emit(figures, as_json, render)


@app.command()
def screen(data: str = typer.Option(..., help="Chat JSONL (file or registered set) to screen."),
           direction: Path = typer.Option(..., help="Direction file (.safetensors)."),
           model: str = ModelOption,
           layer: int = typer.Option(None, help="Direction layer (default: its best layer)."),
           limit: int = typer.Option(None, help="Screen N examples (seeded subsample of distinct ones)."),
           seed: int = typer.Option(0, help="Subsample seed."),
           max_tokens: int = typer.Option(96, help="Tokens of the model's own (greedy) answer per prompt."),
           out: Path = typer.Option(..., help="Per-example JSONL, written as it goes (rerun resumes); the ranked "
                                              "list goes beside it as .ranked.csv."),
           top: int = typer.Option(10, help="Show the N highest-scoring examples."),
           as_json: bool = JsonOption):
    """Flag training examples that push towards the direction: projection of each example's response minus that of
    the model's own answer to the same prompt, ranked; and the data set's mean."""
    import pandas as pd

    from turncoat.activations.directions import Direction  # pulls in torch: loaded when the command runs
    from turncoat.models import load  # pulls in torch: loaded when the command runs
    from turncoat.sampling import GenerationParams  # pulls in torch: loaded when the command runs
    from turncoat.workflows.persona.score import screen as screen_examples  # pulls in torch, as above

    dataset = load_chat(data)
    dataset = subsample(dataset, limit, seed=seed) if limit else dataset
    with console.status(f"loading {model}"):
        loaded = load(model)
    params = GenerationParams(max_new_tokens=max_tokens, temperature=0.0)
    with progress_bar("screening", len(dataset), enabled=not as_json, unit="examples") as advance:
        records = screen_examples(loaded, dataset, Direction.load(direction), out, layer, params, progress=advance)
    ranked = pd.DataFrame(records).sort_values("difference", ascending=False)
    ranked_path = out.with_suffix(".ranked.csv")
    ranked.to_csv(ranked_path, index=False)
    figures = {"data": data, "examples": len(records), "model": model, "direction": str(direction),
               "layer": int(ranked["layer"].iloc[0]), "mean_difference": float(ranked["difference"].mean()),
               "sd_difference": float(ranked["difference"].std()),
               "mean_projection_example": float(ranked["projection_example"].mean()),
               "mean_projection_own": float(ranked["projection_own"].mean()),
               "top": ranked.head(top)[["index", "difference", "prompt"]].to_dict("records"),
               "out": str(out), "ranked": str(ranked_path)}

    def render(f):
        table = Table(title=f"{f['data']}: examples furthest along {f['direction']} (layer {f['layer']}) beyond "
                            f"{f['model']}'s own answers")
        for column in ("example", "difference", "prompt"):
            table.add_column(column)
        for row in f["top"]:
            table.add_row(str(row["index"] + 1), f"{row['difference']:+.2f}", Text(row["prompt"][:80]))
        console.print(table)
        console.print(f"data set mean projection difference {f['mean_difference']:+.3f} (SD {f['sd_difference']:.3f}, "
                      f"{f['examples']} examples); ranked list: {f['ranked']}")

    emit(figures, as_json, render)
