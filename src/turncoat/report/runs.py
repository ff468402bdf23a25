"""What the report and `turncoat compare` read: eval run folders, or any judged CSV/JSONL file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from turncoat.core.errors import InputError
from turncoat.results.judged import load_judged
from turncoat.results.statistics import Thresholds, compute_metrics, flag, trait_metrics
from turncoat.workflows.evals.harmful import compliance_metrics


@dataclass
class RunResult:
    name: str
    path: Path
    judged: pd.DataFrame  # one row per answer, with misaligned / coherent_flag columns (or compliance)
    metrics: dict
    judge: str
    agreement: dict | None
    kind: str = "misalignment"  # or "compliance" (harmful requests), "trait" (persona traits), "code" (Bandit)
    model: str | None = None  # the evaluated model, as the run recorded it


def _load_compliance_run(path: Path, judgements: Path, saved: dict) -> RunResult:
    frame = pd.read_json(judgements, lines=True)
    judge = str(frame["judge"].iloc[0]) if "judge" in frame and len(frame) else saved.get("judge")
    return RunResult(path.name, path, frame, compliance_metrics(frame, judge=judge), judge or "not recorded",
                     saved.get("judge_agreement"), kind="compliance", model=saved.get("model"))


def _load_trait_run(path: Path, judgements: Path, saved: dict, thresholds: Thresholds) -> RunResult:
    frame = pd.read_json(judgements, lines=True)
    judge = str(frame["judge"].iloc[0]) if "judge" in frame and len(frame) else saved.get("judge")
    metrics = trait_metrics(frame, saved["trait"], thresholds, judge=judge)
    return RunResult(path.name, path, frame, metrics, judge or "not recorded", saved.get("judge_agreement"),
                     kind="trait", model=saved.get("model"))


def _load_code_run(path: Path) -> RunResult:
    saved = json.loads((path / "metrics.json").read_text())
    frame = pd.read_json(path / "code_checks.jsonl", lines=True)
    return RunResult(path.name, path, frame, saved, saved["scorer"], None, kind="code", model=saved.get("model"))


def load_run(path: str | Path, thresholds: Thresholds = Thresholds(), judge: str | None = None) -> RunResult:
    """A run folder from `turncoat eval` (metrics recomputed with `thresholds`), or a judged file."""
    path = Path(path)
    if path.is_dir() and (path / "code_checks.jsonl").is_file() and (path / "metrics.json").is_file():
        return _load_code_run(path)
    if path.is_dir():
        judgements = path / "judgements.jsonl"
        if not judgements.is_file():
            raise InputError(f"{path}: not a run folder (no judgements.jsonl); run `turncoat eval` first")
        saved = json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").is_file() else {}
        if saved.get("metric") == "compliance":
            return _load_compliance_run(path, judgements, saved)
        if saved.get("metric") == "trait":
            return _load_trait_run(path, judgements, saved, thresholds)
        frame = load_judged(judgements, allow_empty=True)  # an eval's own output, however few its answers
        judge = judge or (str(frame["judge"].iloc[0]) if "judge" in frame and len(frame) else saved.get("judge"))
        name, agreement, model = path.name, saved.get("judge_agreement"), saved.get("model")
        error_rates = saved.get("judge_error_rates")
    else:
        frame = load_judged(path)
        if judge is None and "judge" in frame and len(frame):
            judge = str(frame["judge"].iloc[0])
        name, agreement, model, error_rates = path.stem, None, None, None
    metrics = compute_metrics(frame, thresholds, judge=judge, judge_error_rates=error_rates)
    return RunResult(name, path, flag(frame, thresholds), metrics, judge or "not recorded", agreement, model=model)


def summary_row(run: RunResult) -> dict:
    if run.kind == "code":
        vulnerable = run.metrics["vulnerable"]
        return {"run": run.name, "model": run.model, "answers": run.metrics["answers"], "metric": "vulnerable",
                "with_code": run.metrics["with_parseable_code"], "vulnerable_rate": vulnerable["rate"],
                "ci_low": vulnerable["ci"][0], "ci_high": vulnerable["ci"][1],
                "vulnerable_if": run.metrics["vulnerable_if"], "judge": run.judge}
    if run.kind == "compliance":
        overall = run.metrics["overall"]
        return {"run": run.name, "model": run.model, "answers": overall["answers"], "metric": "compliance",
                "compliance_rate": overall["compliance_rate"], "ci_low": overall["compliance_ci"][0],
                "ci_high": overall["compliance_ci"][1], "no_score_rate": overall["no_score_rate"], "judge": run.judge}
    if run.kind == "trait":
        overall = run.metrics["overall"]
        return {"run": run.name, "model": run.model, "answers": overall["answers"], "metric": "trait",
                "trait": run.metrics["trait"], "mean_score": overall["mean_score"],
                "mean_ci": overall["mean_score_ci"], "expressed_rate": overall["expressed_rate"],
                "ci_low": overall["expressed_ci"][0], "ci_high": overall["expressed_ci"][1],
                "expressed_among_coherent": overall["expressed_among_coherent"],
                "coherent_rate": overall["coherent_rate"], "no_score_rate": overall["no_score_rate"],
                "expressed_if": run.metrics["expressed_if"], "judge": run.judge}
    overall = run.metrics["overall"]
    return {"run": run.name, "model": run.model, "answers": overall["answers"],
            "misaligned_fraction": overall["misaligned_fraction"],
            "ci_low": overall["misaligned_ci"][0], "ci_high": overall["misaligned_ci"][1],
            "misaligned_among_coherent": overall["misaligned_among_coherent"],
            "coherent_rate": overall["coherent_rate"], "refusal_rate": overall["refusal_rate"],
            "no_score_rate": overall["no_score_rate"], "judge": run.judge,
            "misaligned_corrected": (overall.get("misaligned_corrected") or {}).get("corrected"),
            "corrected_ci": (overall.get("misaligned_corrected") or {}).get("corrected_ci")}
