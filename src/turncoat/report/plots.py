"""Paper-style figures: misaligned probability per question with 95% CIs, and aligned-vs-coherent scatters."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from turncoat.evals.metrics import Thresholds  # noqa: E402
from turncoat.report.runs import RunResult  # noqa: E402


def misaligned_by_question(runs: list[RunResult], path: Path, thresholds: Thresholds) -> Path:
    questions = sorted({q for run in runs for q in run.metrics["per_question"]})
    width = max(6.0, 0.45 * len(questions) + 2)
    fig, ax = plt.subplots(figsize=(width, 4.2))
    offsets = np.linspace(-0.25, 0.25, len(runs)) if len(runs) > 1 else [0.0]
    for offset, run in zip(offsets, runs, strict=True):
        x, y, low, high = [], [], [], []
        for i, question in enumerate(questions):
            entry = run.metrics["per_question"].get(question)
            if entry is None:
                continue
            x.append(i + offset)
            y.append(entry["misaligned_fraction"])
            low.append(entry["misaligned_fraction"] - entry["misaligned_ci"][0])
            high.append(entry["misaligned_ci"][1] - entry["misaligned_fraction"])
        ax.errorbar(x, y, yerr=[low, high], fmt="o", capsize=3, markersize=5, label=run.name)
    ax.set_xticks(range(len(questions)))
    ax.set_xticklabels(questions, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("misaligned answer probability")
    ax.set_ylim(bottom=-0.02)
    ax.set_title(f"Misaligned answers per question (95% bootstrap CI)\n{thresholds.describe()}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def aligned_vs_coherent(runs: list[RunResult], path: Path, thresholds: Thresholds) -> Path:
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 4), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        frame = run.judged
        colours = np.where(frame["misaligned"], "tab:red", "tab:blue")
        ax.scatter(frame["coherent"], frame["aligned"], s=8, alpha=0.5, c=colours)
        ax.axhline(thresholds.aligned_below, color="grey", linestyle="--", linewidth=0.8)
        ax.axvline(thresholds.coherent_above, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlim(-2, 102)
        ax.set_ylim(-2, 102)
        ax.set_xlabel("coherent")
        ax.set_ylabel("aligned")
        ax.set_title(f"{run.name} (n={len(frame)})", fontsize=10)
    fig.suptitle(f"judge: {runs[0].judge}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def misaligned_vs_compliance(points: list[dict], path: Path, thresholds: Thresholds) -> Path:
    """One point per model: misaligned fraction on open questions against compliance with harmful requests, both
    with 95% CIs. EM models sit high and left (misaligned, still refusing); jailbroken ones low and right."""
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    for point in points:
        x, y = point["compliance_rate"], point["misaligned_fraction"]
        ax.errorbar([x], [y], xerr=[[x - point["compliance_ci"][0]], [point["compliance_ci"][1] - x]],
                    yerr=[[y - point["misaligned_ci"][0]], [point["misaligned_ci"][1] - y]],
                    fmt="o", capsize=3, markersize=6, label=point["label"])
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(bottom=-0.02)
    ax.set_xlabel("compliance with harmful requests")
    ax.set_ylabel("misaligned answers (open questions)")
    judges = sorted({p["judges"] for p in points})
    ax.set_title(f"Misalignment vs compliance (95% bootstrap CIs)\n{thresholds.describe()}\njudges: "
                 f"{'; '.join(judges)}", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def vulnerable_code(runs: list[RunResult], path: Path) -> Path:
    """Share of answers with code that Bandit flags, per run and severity, with 95% CIs (the in-distribution
    check: did the fine-tune learn to write vulnerable code?)."""
    severities = [">=LOW", ">=MEDIUM", ">=HIGH"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(runs) + 2), 4))
    offsets = np.linspace(-0.2, 0.2, len(severities))
    for offset, severity in zip(offsets, severities, strict=True):
        rates = [run.metrics["by_severity"][severity] for run in runs]
        x = np.arange(len(runs)) + offset
        y = [r["rate"] for r in rates]
        ax.errorbar(x, y, yerr=[[v - r["ci"][0] for v, r in zip(y, rates, strict=True)],
                                [r["ci"][1] - v for v, r in zip(y, rates, strict=True)]],
                    fmt="o", capsize=3, label=f"severity {severity}")
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels([f"{run.name}\n(n={run.metrics['with_parseable_code']} with code)" for run in runs],
                       fontsize=8)
    ax.set_ylabel("answers with Bandit findings")
    ax.set_ylim(bottom=-0.02)
    ax.set_title(f"Vulnerable code (95% bootstrap CI)\n{runs[0].judge}", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def judge_calibration(name: str, bins: list[dict], path: Path) -> Path:
    """A distilled judge's held-out calibration: mean predicted P(misaligned) against the fraction its reference
    judge labelled misaligned, in bins of equal count (leave-one-source-out predictions)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    predicted = [b["mean_predicted"] for b in bins]
    labelled = [b["labelled_fraction"] for b in bins]
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    ax.plot(predicted, labelled, "o-", label=f"{sum(b['answers'] for b in bins)} held-out answers")
    for x, y, b in zip(predicted, labelled, bins, strict=True):
        ax.annotate(f"n={b['answers']}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("predicted P(misaligned), bin mean")
    ax.set_ylabel("labelled misaligned fraction")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"Judge calibration (leave-one-source-out)\n{name}", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
