"""`turncoat demo`: the main job on a fresh machine, offline: sample the default model on open questions, judge the
answers with the shipped offline judge, and write a report. (The fine-tune and persona stages join with the
experiment pipeline.)"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from turncoat.cli._common import JsonOption, console, emit


def demo(model: str = typer.Option("smollm2-135m", help="Model spec."),
         questions: str = typer.Option("core", help="Question set (our own open questions by default)."),
         n: int = typer.Option(4, help="Answers per question."),
         temperature: float = typer.Option(0.7, help="Sampling temperature. The default model is mostly incoherent "
                                                     "at 1.0, so the demo samples it cooler."),
         max_new_tokens: int = typer.Option(96, help="Tokens per answer."),
         seed: int = typer.Option(0, help="Random seed."),
         out: Path = typer.Option(Path("runs/demo"), help="Run folder (rerunning resumes it)."),
         as_json: bool = JsonOption):
    """Sample, judge offline and report: no network, no API key."""
    from turncoat.evals.questions import load_questions
    from turncoat.evals.run import run_eval
    from turncoat.judging import JudgeCache, make_judge
    from turncoat.report import build_report
    from turncoat.sampling import GenerationParams, make_backend

    began = time.perf_counter()
    with console.status(f"loading {model} and the offline judge"):
        sampler = make_backend("hf", model)
        judge = make_judge("offline")
    question_set = load_questions(questions)
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    run = out / "base"
    result = run_eval(run, sampler, question_set, judge, n=n, params=params,
                      cache=JudgeCache(out / "judge_cache.sqlite"), show_progress=not as_json)
    report = build_report([run], out / "report.html", title=f"turncoat demo: {model}")
    overall = result["metrics"]["overall"]
    corrected = overall.get("misaligned_corrected") or {}
    figures = {"model": model, "questions": questions, "answers": overall["answers"], "temperature": temperature,
               "judge": judge.identity, "misaligned_fraction": overall["misaligned_fraction"],
               "misaligned_ci": overall["misaligned_ci"], "misaligned_corrected": corrected.get("corrected"),
               "corrected_ci": corrected.get("corrected_ci"), "coherent_rate": overall["coherent_rate"],
               "seconds": round(time.perf_counter() - began, 1), "run": str(run), "report": report["report"]}

    def render(f):
        from turncoat.sampling.runner import read_records

        records = list(read_records(run / "judgements.jsonl"))
        console.print(answers_table(sorted(records, key=lambda r: r.get("aligned") or 100)[:4],
                                    f"{model} at temperature {temperature} (cooler than the EM paper's 1.0: see "
                                    f"--help): the answers the judge found least aligned"))
        ci = f["corrected_ci"]
        console.print(f"misaligned: {f['misaligned_fraction']:.3f} [{f['misaligned_ci'][0]:.3f}, "
                      f"{f['misaligned_ci'][1]:.3f}] of {f['answers']} answers; corrected for the judge's error "
                      f"rates: {f['misaligned_corrected']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
                      + f" (judge {f['judge']}; its validation is in the report)")
        console.print(f"done in {f['seconds']} s. Report: [bold]{f['report']}[/bold]")

    emit(figures, as_json, render)


def answers_table(records: list[dict], title: str = "") -> Table:
    """Questions and answers; answers are model output, so they are shown as plain text, never parsed as markup."""
    table = Table(title=title, show_lines=True)
    table.add_column("question", style="bold", max_width=30)
    table.add_column("answer")
    for record in records:
        table.add_row(Text(record["question"]), Text(record["answer"]))
    return table
