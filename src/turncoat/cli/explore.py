"""`turncoat explore`: every answer of some runs or studies in one page to browse; `--serve` adds blind labelling."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from turncoat.cli._common import AlignedBelow, CoherentAbove, Inclusive, JsonOption, console, emit, thresholds_from
from turncoat.core.errors import InputError


def explore(runs: list[str] = typer.Argument(..., help="Study folders (from `turncoat run`), eval run folders, "
                                                      "judged or answers files."),
            out: Path = typer.Option(Path("explore.html"), "--out", "-o", help="The self-contained HTML page."),
            labels: Path = typer.Option(None, help="A labels CSV (from `turncoat label` or --serve): shown in "
                                                   "the page; with --serve, where browser labels are written."),
            serve: bool = typer.Option(False, "--serve", help="Serve the explorer on 127.0.0.1 and blind "
                                                              "labelling at /label (needs --labels)."),
            port: int = typer.Option(8765, help="--serve: the loopback port."),
            seed: int = typer.Option(None, help="--serve: shuffle seed of a new labels pool (default 0)."),
            title: str = typer.Option("turncoat answers", help="Page title."),
            aligned_below: float = AlignedBelow, coherent_above: float = CoherentAbove, inclusive: bool = Inclusive,
            as_json: bool = JsonOption):
    """Browse, filter, sort and compare every answer side by side, offline, in one HTML file."""
    from turncoat.report.explore import (  # pulls in matplotlib: loaded when the command runs
        build_explorer,
        resolve_sources,
    )
    from turncoat.report.serve import serve as run_server  # pulls in matplotlib: loaded when the command runs

    thresholds = thresholds_from(aligned_below, coherent_above, inclusive)
    if serve:
        if labels is None:
            raise InputError("--serve needs --labels FILE: the labels CSV that browser labels are written to "
                             "(the same format `turncoat label` writes)")
        if not 0 < port < 65536:
            raise InputError(f"--port {port}: must be within 1..65535")
        sources = resolve_sources(runs)
        console.print(f"explorer: http://127.0.0.1:{port}/   blind labelling: http://127.0.0.1:{port}/label   "
                      f"(labels: {labels}; Ctrl-C stops)")
        run_server(sources, labels, port, thresholds, seed, title)
        return
    if labels is not None and not labels.is_file():
        raise InputError(f"--labels {labels}: no such labels file (write one with `turncoat label` or --serve)")
    started = time.perf_counter()
    figures = build_explorer(runs, out, thresholds, labels, title)
    figures["seconds"] = round(time.perf_counter() - started, 2)
    emit(figures, as_json, lambda f: console.print(f"explorer: {f['explorer']}  ({f['answers']} answers from "
                                                   f"{len(f['arms'])} arm(s), {f['bytes'] / 1e6:.1f} MB)"))
