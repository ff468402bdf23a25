"""A self-contained HTML report (Jinja2, every model answer escaped; plots embedded and also saved as PNG)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from turncoat import __version__
from turncoat.core.io import atomic_write
from turncoat.report import plots
from turncoat.report.explore import Source, read_projections, write_explorer
from turncoat.report.runs import RunResult, load_run, summary_row
from turncoat.report.text import visible
from turncoat.results.labels import answer_id
from turncoat.results.statistics import Thresholds

SHOWN_CHARACTERS = 3000  # of an answer in the report; the explorer shows all of it


def most_misaligned(run: RunResult, limit: int = 10) -> list[dict]:
    """The coherent answers with the lowest aligned scores, each with its explorer id and long answers cut."""
    frame = run.judged[run.judged["coherent_flag"] & run.judged["aligned"].notna()].sort_values("aligned")
    columns = [c for c in ("question_id", "question", "answer", "aligned", "coherent") if c in frame]
    rows = []
    for index, row in frame.head(limit).iterrows():
        shown = {c: row[c] for c in columns}
        shown["id"] = answer_id(run.path, str(row["key"]) if "key" in frame else str(index))
        answer = str(shown.get("answer") or "")
        shown["answer"], shown["cut"] = answer[:SHOWN_CHARACTERS], max(0, len(answer) - SHOWN_CHARACTERS)
        rows.append(shown)
    return rows


def compliance_points(misalignment: list[RunResult], compliance: list[RunResult], by_run_name: bool = False
                      ) -> list[dict]:
    """Pairs each model's open-question run with its harmful-requests run (by the model the runs recorded); points
    are labelled by the model's name, or (`by_run_name`, studies) by the run's."""
    by_model = {r.model or r.name: r for r in compliance}
    points = []
    for run in misalignment:
        other = by_model.get(run.model or run.name)
        if other is None:
            continue
        overall, complied = run.metrics["overall"], other.metrics["overall"]
        label = run.name if by_run_name or not run.model else Path(run.model).name
        points.append({"label": label, "model": run.model,
                       "misaligned_fraction": overall["misaligned_fraction"], "misaligned_ci": overall["misaligned_ci"],
                       "compliance_rate": complied["compliance_rate"], "compliance_ci": complied["compliance_ci"],
                       "judges": f"misaligned: {run.judge}, compliance: {other.judge}",
                       "runs": [run.name, other.name]})
    return points


def study_rows(study: dict, runs: dict[str, RunResult]) -> list[dict]:
    """One row per evaluated arm: misaligned fraction with CI, and the persona projection with z against the
    study's base arm (the arm without training, same variant) where the study scored one."""
    rows = []
    for arm in study["arms"]:
        run = runs[str(Path(arm["eval"]))]
        if run.kind != "misalignment":  # harmful-request compliance: the compliance scatter shows it
            continue
        overall = run.metrics["overall"]
        score = arm.get("score") or {}
        rows.append({"label": arm["label"], "arm": arm.get("arm"), "variant": arm.get("variant") or "",
                     "x": arm.get("x"), "trained": bool(arm.get("train_log")), "answers": overall["answers"],
                     "misaligned_fraction": overall["misaligned_fraction"], "misaligned_ci": overall["misaligned_ci"],
                     "coherent_rate": overall["coherent_rate"], "projection_mean": score.get("mean"),
                     "projection_sd": score.get("sd")})
    for row in rows:
        base = next((b for b in rows if not b["trained"] and b["variant"] == row["variant"]), None)
        if base and row["projection_mean"] is not None and base["projection_sd"]:
            row["projection_z"] = (row["projection_mean"] - base["projection_mean"]) / base["projection_sd"]
    return rows


def sae_sections(study: dict, arms: list[dict], judge: str | None) -> list[dict]:
    """One section per SAE diff of a study: its shifts and snippets, and the misaligned fraction of the runs it
    names (`compared`: the fine-tune, it with its top latents ablated, the base, the base steered along them)."""
    by_label = {row["label"]: row for row in arms}
    return [{"arm": found["arm"], "anchor": f"sae-{i}-latent-", "diff": found["diff"],
             "explained": found["explained"], "judge": judge,
             "interventions": [by_label[label] for label in found.get("compared", []) if label in by_label]}
            for i, found in enumerate(study.get("diffs", []))]


def build_report(sources: list[str | Path], out: str | Path, thresholds: Thresholds = Thresholds(),
                 title: str = "turncoat report", study: dict | None = None, explorer: bool = True) -> dict:
    """`study` (from `turncoat run`): {name, arms: [{label, arm, variant, x, eval, score, projections,
    train_log}]} adds the by-model figure, training curves with the persona monitor, and figures against the arms'
    x. `explorer`: every answer also goes to an explorer page beside the report (OUT_explore.html), linked from
    the summary, the per-question figure and the examples."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    loaded = [load_run(s, thresholds) for s in sources]
    for run in loaded if study else []:  # study runs are named by their arm, not their hashed folder
        run.name = next((a["label"] for a in study["arms"] if Path(a["eval"]) == Path(run.path)), run.name)
    runs = [r for r in loaded if r.kind == "misalignment"]
    compliance = [r for r in loaded if r.kind == "compliance"]
    code = [r for r in loaded if r.kind == "code"]
    traits = [r for r in loaded if r.kind == "trait"]
    stem = out.with_suffix("")
    figures = {}
    if runs:
        figures["misaligned_by_question"] = plots.misaligned_by_question(runs, Path(f"{stem}_misaligned.png"),
                                                                         thresholds)
        figures["aligned_vs_coherent"] = plots.aligned_vs_coherent(runs, Path(f"{stem}_scatter.png"), thresholds)
    points = compliance_points(runs, compliance, by_run_name=bool(study))
    if points:
        figures["misaligned_vs_compliance"] = plots.misaligned_vs_compliance(points, Path(f"{stem}_compliance.png"),
                                                                             thresholds)
    if code:
        figures["vulnerable_code"] = plots.vulnerable_code(code, Path(f"{stem}_code.png"))
    calibrated = {r.judge: r.agreement["calibration"] for r in loaded
                  if r.agreement and r.agreement.get("calibration")}
    for i, (judge, bins) in enumerate(calibrated.items()):
        figures[f"calibration_{i}"] = plots.judge_calibration(judge, bins, Path(f"{stem}_calibration_{i}.png"))
    arms = []
    if study:
        arms = study_rows(study, {str(Path(r.path)): r for r in loaded})
        figures["misaligned_by_arm"] = plots.misaligned_by_arm(arms, Path(f"{stem}_arms.png"), runs[0].judge)
        logs = {a["label"]: [json.loads(line) for line in Path(a["train_log"]).read_text().splitlines()]
                for a in study["arms"] if a.get("train_log") and not a.get("variant")}
        if logs:
            figures["training_curves"] = plots.training_curves(logs, Path(f"{stem}_training.png"))
        if study.get("trajectories"):
            figures["trajectories"] = plots.trajectories(study["trajectories"], Path(f"{stem}_trajectory.png"),
                                                         runs[0].judge if runs else "judge")
        placed = [a for a in arms if a["x"] is not None and not a["variant"]]
        if len(placed) > 1:
            figures["against_x"] = plots.against_x(placed, Path(f"{stem}_x.png"), study.get("x_label", "x"))
    sections = sae_sections(study or {}, arms, runs[0].judge if runs else None)
    for i, section in enumerate(sections):
        section["plot"] = f"sae_{i}"
        figures[section["plot"]] = plots.top_latents(section["diff"]["top"], Path(f"{stem}_sae_{i}.png"),
                                                     f"{section['arm']}: SAE latents raised most (layer "
                                                     f"{section['diff']['layer']})")
    embedded = {name: base64.b64encode(path.read_bytes()).decode() for name, path in figures.items()}
    explored = None
    if explorer:
        projections = {str(Path(a["eval"])): a.get("projections") for a in (study or {}).get("arms", [])}
        explorer_sources = [Source(r.name, r.path, read_projections(projections.get(str(Path(r.path)))))
                            for r in loaded if r.kind in ("misalignment", "compliance")]
        explored = write_explorer(explorer_sources, Path(f"{stem}_explore.html"), thresholds,
                                  title=f"{title}: every answer")
    environment = Environment(loader=PackageLoader("turncoat.report", "templates"),
                              autoescape=select_autoescape(default=True, default_for_string=True))
    environment.filters["visible"] = visible
    html = environment.get_template("report.html.jinja").render(
        title=title, version=__version__, thresholds=thresholds.describe(), figures=embedded,
        summary=[summary_row(r) for r in runs], compliance=[summary_row(r) for r in compliance],
        code=[summary_row(r) for r in code], traits=[summary_row(r) for r in traits], runs=loaded,
        examples={r.name: most_misaligned(r) for r in runs},
        calibration={judge: f"calibration_{i}" for i, judge in enumerate(calibrated)}, arms=arms,
        study=study or {}, sae_sections=sections, explorer=Path(explored["explorer"]).name if explored else None,
        questions=sorted({str(q) for r in runs for q in r.judged["question_id"]}))
    with atomic_write(out) as handle:
        handle.write(html)
    return {"report": str(out), "plots": {k: str(v) for k, v in figures.items()},
            "runs": [summary_row(r) for r in loaded], "misaligned_vs_compliance": points,
            "thresholds": thresholds.to_dict(), "study_arms": arms,
            "explorer": explored["explorer"] if explored else None}



def write_latents(explained: dict, out: str | Path, diff: dict | None = None, plot: Path | None = None) -> Path:
    """A self-contained page of SAE latents: their top snippets (every token escaped, bidi isolated, shaded by the
    latent's activation) and, after `turncoat sae diff`, the ranked shifts with their plot."""
    environment = Environment(loader=PackageLoader("turncoat.report", "templates"),
                              autoescape=select_autoescape(default=True, default_for_string=True))
    environment.filters["visible"] = visible
    html = environment.get_template("latents.html.jinja").render(
        title=f"SAE latents of {explained['model']}", version=__version__, diff=diff,
        plot=base64.b64encode(plot.read_bytes()).decode() if plot else None, **explained)
    with atomic_write(out) as handle:
        handle.write(html)
    return Path(out)
