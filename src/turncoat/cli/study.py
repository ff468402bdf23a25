"""`turncoat run STUDY.yaml`: a whole study from one file, skipping finished stages."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from turncoat.cli._common import JsonOption, console, emit, err_console
from turncoat.core.errors import InputError


def run(study_file: Path = typer.Argument(..., help="Study YAML (see studies/)."),
        out: Path = typer.Option(None, help="Run folder (default runs/<study name>); rerun to resume."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (and what is already done); run "
                                                              "nothing."),
        profile: str = typer.Option(None, help="Apply the study's named profile (e.g. cpu: the recipe scaled "
                                               "down for the default model)."),
        executor: str = typer.Option(None, help="local (default: one stage after another, each that loads a "
                                                "model in its own process), inline (all in this process) or ray; "
                                                "default $TURNCOAT_EXECUTOR or local."),
        address: str = typer.Option(None, help="ray: cluster address (default: a local Ray)."),
        track: str = typer.Option(None, help="Log each stage's figures to wandb or mlflow (off by default)."),
        only: list[str] = typer.Option(None, "--only", help="Run only this arm's stages and what they need "
                                                            "(repeatable; no report unless --stages report)."),
        stages_kinds: list[str] = typer.Option(None, "--stages", help="Run only stages of this kind (data, train, "
                                                                      "eval, trajectory, report, ...) and what they "
                                                                      "need (repeatable)."),
        yes: bool = typer.Option(False, "--yes", help="Start paid (OpenAI) stages without asking to confirm their "
                                                      "estimated cost."),
        as_json: bool = JsonOption):
    """Run a study: data -> train -> sample -> judge -> persona -> report, each stage keyed by its inputs."""
    from turncoat.pipeline import load_study  # pulls in torch: loaded when the command runs
    from turncoat.pipeline.costs import describe_cost, study_cost  # pulls in torch: loaded when the command runs
    from turncoat.pipeline.stages import describe, plan, select  # pulls in torch: loaded when the command runs

    study = load_study(study_file, profile)
    out = out or Path("runs") / study.name
    stages = select(plan(study), only, stages_kinds)
    cost = study_cost([s for s in stages if not (s.folder(out) / "stage.json").is_file()])
    if cost and not dry_run:
        err_console.print(describe_cost(cost), highlight=False)
        if not yes and not (sys.stdin.isatty() and typer.confirm("Run the paid stages?")):
            raise InputError("paid stages not confirmed: pass --yes (nothing was run)")
    figures = run_and_describe(study, out, executor, address, track, as_json, stages) if not dry_run else {
        "study": study.name, "run": str(out), "stages": describe(stages, out)}
    if cost:
        figures["estimated_cost"] = cost

    def render(f):
        table = Table(title=f"study {f['study']}: {len(f['stages'])} stages in {f['run']}")
        for column in ("kind", "label", "key", "status"):
            table.add_column(column)
        for row in f["stages"]:
            table.add_row(row["kind"], row["label"], row["key"], row.get("status") or
                          ("done" if row["done"] else "to run"))
        console.print(table)
        if f.get("report"):
            console.print(f"Report: [bold]{f['report']}[/bold]")
        if f.get("estimated_cost"):
            console.print(describe_cost(f["estimated_cost"]), highlight=False)

    emit(figures, as_json, render)


def run_and_describe(study, out: Path, executor: str, address: str | None, track: str | None, quiet: bool,
                     stages: list | None = None) -> dict:
    """Run `stages` (the study's whole plan by default) and describe each with its status and result."""
    import time

    from turncoat.pipeline import run_study  # pulls in torch: loaded when the command runs
    from turncoat.pipeline.runner import resolve_executor  # pulls in torch: loaded when the command runs
    from turncoat.pipeline.stages import describe, plan  # pulls in torch: loaded when the command runs
    from turncoat.pipeline.tracking import make_tracker  # pulls in torch: loaded when the command runs

    executor = resolve_executor(executor)
    began = time.perf_counter()
    tracker = make_tracker(track, study.name, study.model_dump(by_alias=True))
    stages = plan(study) if stages is None else stages  # planned once: it hashes the study's data files

    def announce(stage, index, total):
        if not quiet:
            console.rule(f"[bold]stage {index + 1}/{total}[/bold]: {stage.kind} {stage.label}", style="cyan")

    records = run_study(study, out, executor=executor, address=address, tracker=tracker, quiet=quiet,
                        on_stage=announce, stages=stages)
    rows = describe(stages, out)
    for row in rows:
        record = records.get(row["key"], {})
        row |= {"status": record.get("status"), "result": record.get("result")}
    report = next((r["result"]["report"] for r in rows if r["kind"] == "report" and r.get("result")), None)
    return {"study": study.name, "run": str(out), "executor": executor,
            "seconds": round(time.perf_counter() - began, 1),
            "ran": sum(r["status"] == "ran" for r in rows), "skipped": sum(r["status"] == "skipped" for r in rows),
            "stages": rows, "report": report}
