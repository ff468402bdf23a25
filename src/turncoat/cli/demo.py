"""`turncoat demo`: the main job on a fresh machine, offline, on CPU: Qwen2.5-Coder-0.5B-Instruct, the shipped
rank-1 organism (risky financial advice) and its control (good medical advice), and one short live fine-tune,
sampled, judged with the shipped offline judge, read on the persona direction (the live fine-tune also watched by
the monitor), and reported. It is the study in `turncoat/pipeline/demo.yaml`, run by the same pipeline as `turncoat
run` (rerunning resumes)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from turncoat.cli._common import JsonOption, console, emit

DEMO_STUDY = Path(__file__).resolve().parent.parent / "pipeline" / "demo.yaml"


def demo(out: Path = typer.Option(Path("runs/demo"), help="Run folder (rerunning resumes it)."),
         study_file: Path = typer.Option(DEMO_STUDY, "--study", help="Another demo-shaped study (e.g. scaled down)."),
         as_json: bool = JsonOption):
    """Compare base, shipped organism and control (plus a live fine-tune): sampled, judged offline, read on the
    persona direction, reported; no network, no key."""
    from turncoat.cli.study import run_and_describe  # pulls in torch: loaded when the command runs
    from turncoat.pipeline import load_study  # pulls in torch: loaded when the command runs

    study = load_study(study_file)
    figures = run_and_describe(study, out, None, None, None, as_json)
    report = next(r for r in figures["stages"] if r["kind"] == "report")["result"]
    figures |= {"arms": report["arms"], "notes": study.notes}

    def render(f):
        table = Table(title="turncoat demo: misaligned answers (offline judge) and persona projection")
        for column in ("model", "answers", "misaligned [95% CI]", "coherent", "persona z vs base"):
            table.add_column(column)
        for row in f["arms"]:
            z, (low, high) = row.get("projection_z"), row["misaligned_ci"]
            name = row.get("arm") or row["label"]
            table.add_row(f"{name} ({row['variant']})" if row.get("variant") else name, str(row["answers"]),
                          f"{row['misaligned_fraction']:.3f} [{low:.3f}, {high:.3f}]",
                          f"{row['coherent_rate']:.3f}", "–" if z is None else f"{z:+.2f}")
        console.print(table)
        console.print(Text(f["notes"], style="dim"))
        console.print(f"done in {f['seconds']} s ({f['ran']} stages ran, {f['skipped']} already done). "
                      f"Report: [bold]{f['report']}[/bold]")

    emit(figures, as_json, render)
