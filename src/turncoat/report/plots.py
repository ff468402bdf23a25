"""Paper-style figures: misaligned probability per question with 95% CIs, and aligned-vs-coherent scatters."""

from __future__ import annotations

import re
from collections import Counter
from itertools import cycle
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
# Labels are question ids, run and model names: data, not TeX. With math text on, "price_$5_or_$10" fails to render.
matplotlib.rcParams["text.parse_math"] = False
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from turncoat.report.runs import RunResult  # noqa: E402
from turncoat.results.statistics import Thresholds  # noqa: E402


def _save(fig, path: Path) -> Path:
    """Every figure is saved the same way (tight layout, 130 dpi PNG) and closed, so long runs do not leak figures."""
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


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
    return _save(fig, path)


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
    return _save(fig, path)


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
    return _save(fig, path)


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
    return _save(fig, path)


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
    return _save(fig, path)


def misaligned_by_arm(rows: list[dict], path: Path, judge: str) -> Path:
    """One point per arm (base, bad data, controls...) with its 95% CI: the EM paper's main figure."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(rows) + 2), 4))
    for i, row in enumerate(rows):
        value, (low, high) = row["misaligned_fraction"], row["misaligned_ci"]
        ax.errorbar([i], [value], yerr=[[value - low], [high - value]], fmt="o", capsize=4, markersize=7)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["label"] for r in rows], rotation=30, ha="right", fontsize=9)
    ax.set_ylabel("misaligned answer probability")
    ax.set_ylim(bottom=-0.02)
    ax.set_title(f"Misaligned answers by model (95% bootstrap CI)\njudge: {judge}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _ordinal(names: list[str]) -> tuple[str, dict[str, float]] | None:
    """Arms named by one prefix and the number ending them ("step-15", "realign-64"): the prefix and each such arm's
    number, the x axis of a curve (the prefix most arms share, if several do); None where fewer than two are. The
    other arms (base, a control) are references for the curve."""
    split = {name: re.fullmatch(r"(.*?)(\d+(?:\.\d+)?)", name) for name in names}
    shared = Counter(m.group(1) for m in split.values() if m).most_common(1)
    if not shared or shared[0][1] < 2:
        return None
    prefix = shared[0][0]
    return prefix, {name: float(m.group(2)) for name, m in split.items() if m and m.group(1) == prefix}


def _rate(entry: dict, key: str) -> tuple[float, float, float]:
    """(rate, CI low, CI high) of one label; `coherent` is the complement of `incoherent`, so its CI flips."""
    if key == "coherent":
        low, high = entry["incoherent"]["ci"]
        return 1 - entry["incoherent"]["rate"], 1 - high, 1 - low
    return entry[key]["rate"], *entry[key]["ci"]


def labelled_by_arm(report: dict, path: Path) -> Path:
    """Blind labels per arm (`turncoat label --report`): the labelled-misaligned fraction and the coherent rate
    (not labelled incoherent), each with its 95% CI; arms named by a number (snapshots' steps, N examples) become
    a curve against it."""
    arms = {arm: entry for arm, entry in report["arms"].items() if entry["labelled"]}
    ordinal = _ordinal(list(arms))
    if ordinal:
        prefix, numbers = ordinal
        curve = prefix.strip("-_ ") or "arm"
        names = sorted(numbers, key=numbers.get)
        positions = [numbers[name] for name in names]
        references = [name for name in arms if name not in numbers]
    else:
        names, positions, references = list(arms), range(len(arms)), []
    fig, axes = plt.subplots(1, 2, figsize=(max(9.0, 1.1 * len(names) + 5), 4))
    panels = [("misaligned", "misaligned (labelled)", "tab:red"), ("coherent", "coherent (not incoherent)",
                                                                   "tab:blue")]
    for ax, (key, ylabel, colour) in zip(axes, panels, strict=True):
        rates = np.array([_rate(arms[name], key) for name in names])
        ax.errorbar(positions, rates[:, 0], yerr=[rates[:, 0] - rates[:, 1], rates[:, 2] - rates[:, 0]],
                    fmt="o-" if ordinal else "o", capsize=4, color=colour, label=curve if ordinal else None)
        for reference, style in zip(references, cycle(("--", ":", "-."))):
            rate, low, high = _rate(arms[reference], key)  # an arm off the curve: a line with its CI as a band
            ax.axhline(rate, color="grey", linestyle=style, label=f"{reference} (95% CI shaded)")
            ax.axhspan(low, high, color="grey", alpha=0.12)
        if ordinal:
            ax.set_xlabel(curve)
            if references:
                ax.legend(fontsize=8)
        else:
            ax.set_xticks(list(positions))
            ax.set_xticklabels(names, rotation=30, ha="right", fontsize=9)
        ax.set(ylabel=ylabel, ylim=(-0.02, 1.02) if key == "coherent" else (-0.01, None))
        ax.grid(alpha=0.3)
    read = ", ".join(f"{name} {arms[name]['labelled']}" for name in [*names, *references])
    fig.suptitle(f"Blind labels with 95% bootstrap CIs (answers read per arm: {read})", fontsize=9)
    return _save(fig, path)


def training_curves(logs: dict[str, list[dict]], path: Path) -> Path:
    """Training loss and the persona monitor's z-score against steps, one line per fine-tune."""
    monitored = any(r.get("monitor") == "persona" for records in logs.values() for r in records)
    fig, axes = plt.subplots(1, 2 if monitored else 1, figsize=(11 if monitored else 6, 4), squeeze=False)
    for label, records in logs.items():
        losses = [r for r in records if r.get("loss") is not None]
        axes[0][0].plot([r["step"] for r in losses], [r["loss"] for r in losses], label=label)
        if monitored:
            z = [r for r in records if r.get("monitor") == "persona"]
            axes[0][1].plot([r["step"] for r in z], [r["z"] for r in z], marker="o", label=label)
    axes[0][0].set(xlabel="optimiser step", ylabel="training loss", title="Training loss")
    if monitored:
        threshold = next(r["threshold"] for records in logs.values() for r in records if r.get("monitor") == "persona")
        axes[0][1].axhline(threshold, color="tab:red", linestyle="--", linewidth=0.8, label="alert threshold")
        axes[0][1].axhline(0, color="grey", linewidth=0.6)
        axes[0][1].set(xlabel="optimiser step", ylabel="z vs base model (base SDs)",
                       title="Persona monitor: own answers' projection")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def against_x(rows: list[dict], path: Path, xlabel: str = "x") -> Path:
    """Misaligned fraction (with CI) and persona projection against the arms' x (e.g. N re-alignment examples)."""
    rows = sorted(rows, key=lambda r: r["x"])
    x = [r["x"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    y = [r["misaligned_fraction"] for r in rows]
    ax.errorbar(x, y, yerr=[[v - r["misaligned_ci"][0] for v, r in zip(y, rows, strict=True)],
                            [r["misaligned_ci"][1] - v for v, r in zip(y, rows, strict=True)]],
                fmt="o-", capsize=3, color="tab:red", label="misaligned fraction")
    ax.set(xlabel=xlabel, ylabel="misaligned answer probability")
    ax.grid(alpha=0.3)
    if all(r.get("projection_mean") is not None for r in rows):
        twin = ax.twinx()
        twin.plot(x, [r["projection_mean"] for r in rows], "s--", color="tab:blue", label="persona projection")
        twin.set_ylabel("mean projection on the persona direction", color="tab:blue")
    ax.set_title("Misaligned answers and persona projection", fontsize=10)
    return _save(fig, path)


def trajectories(entries: list[dict], path: Path, judge: str) -> Path:
    """Snapshots of each fine-tune against optimiser steps: misaligned fraction (95% CI band), persona z against
    step 0, and the LoRA B matrices' cosine with their final value (Model Organisms' phase-transition plot)."""
    panels = [("misaligned_fraction", f"misaligned fraction ({judge})"), ("persona_z", "persona z vs step 0"),
              ("b_cosine_to_final", "LoRA B: cosine with final")]
    shown = [(key, label) for key, label in panels
             if any(r.get(key) is not None for e in entries for r in e["rows"])]
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 4), squeeze=False)
    for entry in entries:
        rows = entry["rows"]
        steps = [r["step"] for r in rows]
        for ax, (key, label) in zip(axes[0], shown, strict=True):
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            line, = ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=entry["arm"])
            if key == "misaligned_fraction":
                ax.fill_between(steps, [r["misaligned_ci"][0] for r in rows], [r["misaligned_ci"][1] for r in rows],
                                color=line.get_color(), alpha=0.15)
                if entry.get("first_step_above_control") is not None:
                    ax.axvline(entry["first_step_above_control"], color=line.get_color(), linestyle=":")
            ax.set(xlabel="optimiser step", ylabel=label)
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("During fine-tuning: snapshots evaluated (dotted: first step above the control's CI)", fontsize=10)
    return _save(fig, path)


def separation_by_layer(series: dict[str, dict[int, float]], path: Path, title: str, ylabel: str = "AUROC",
                        target: float | None = None, chosen: dict[str, int] | None = None) -> Path:
    """One line per direction: a separation figure (AUROC) against layer, the layer each direction would pick
    without looking marked, and the target as a dashed line."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, by_layer in series.items():
        layers = sorted(by_layer)
        (line,) = ax.plot(layers, [by_layer[k] for k in layers], marker=".", label=name)
        if chosen and name in chosen:
            ax.plot([chosen[name]], [by_layer[chosen[name]]], marker="o", ms=9, mfc="none", color=line.get_color())
    if target is not None:
        ax.axhline(target, ls="--", color="grey", lw=1, label=f"target {target:g}")
    ax.axhline(0.5, ls=":", color="grey", lw=1)
    ax.set(xlabel="layer (output of decoder block L, 0-based)", ylabel=ylabel, title=title)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def top_latents(rows: list[dict], path: Path, title: str) -> Path:
    """The latents a fine-tune raised most: mean activation before and after, side by side, ranked."""
    fig, ax = plt.subplots(figsize=(max(6.0, 0.4 * len(rows) + 2), 4))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["base_mean"] for r in rows], 0.4, label="base")
    ax.bar(x + 0.2, [r["tuned_mean"] for r in rows], 0.4, label="fine-tuned")
    ax.set_xticks(x, [str(r["latent"]) for r in rows], rotation=90, fontsize=8)
    ax.set(xlabel="SAE latent (ranked by the increase of its mean activation)", ylabel="mean activation",
           title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)
