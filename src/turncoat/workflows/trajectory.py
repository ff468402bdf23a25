"""A fine-tune's trajectory (Model Organisms for EM: EM appears abruptly, at a phase transition visible in the LoRA
weights): the snapshots `turncoat train --save-every K` kept, each evaluated like a model (misaligned fraction,
coherence), its own answers read on the persona direction (z against step 0, the untouched model), and each
LoRA B matrix's cosine with its final value."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from turncoat.activations.directions import Direction
from turncoat.core.errors import InputError
from turncoat.core.io import read_jsonl
from turncoat.judging import Judge, JudgeCache
from turncoat.questions.sets import QuestionSet
from turncoat.sampling import GenerationParams, make_backend
from turncoat.training.trainer import trajectory_steps
from turncoat.workflows.evals.run import run_eval
from turncoat.workflows.persona.score import answer_chats, projections


def lora_b(folder: Path) -> dict[str, np.ndarray]:
    """The adapter's LoRA B matrices by module name (empty for weights that are not a LoRA adapter)."""
    from safetensors.numpy import load_file

    weights = folder / "adapter_model.safetensors"
    return {k: v.astype(np.float64) for k, v in load_file(str(weights)).items() if "lora_B" in k} \
        if weights.is_file() else {}


def b_cosines(snapshots: Sequence[Path]) -> list[dict]:
    """Per snapshot: the mean over modules of cos(B_t, B_final) (each B flattened; undefined while B is 0, as at
    step 0) and the norm of all B matrices together."""
    final = lora_b(snapshots[-1]) if snapshots else {}
    rows = []
    for folder in snapshots:
        current = lora_b(folder)
        cosines = [float(b.ravel() @ final[k].ravel() / (np.linalg.norm(b) * np.linalg.norm(final[k])))
                   for k, b in current.items() if k in final and np.linalg.norm(b) > 0 and np.linalg.norm(final[k]) > 0]
        rows.append({"b_cosine_to_final": float(np.mean(cosines)) if cosines else None,
                     "b_norm": float(np.sqrt(sum(float((b ** 2).sum()) for b in current.values()))) if current
                     else None})
    return rows


def evaluate_trajectory(run: str | Path, out: Path, questions: QuestionSet, judge: Judge, n: int | None,
                        params: GenerationParams, cache: JudgeCache | None = None, direction: Direction | None = None,
                        layer: int | None = None, show_progress: bool = True) -> list[dict]:
    """Every kept snapshot of training run `run`, evaluated into `out/step-N` (each resumes like `turncoat eval`)."""
    snapshots = trajectory_steps(run)
    if not snapshots:
        raise InputError(f"{run}: no trajectory (train with --save-every K to keep the weights every K steps)")
    rows, reference = [], None  # step 0's projections (mean, sd): the model before training
    for (step, folder), weights in zip(snapshots, b_cosines([f for _, f in snapshots]), strict=True):
        sampler = make_backend("hf", str(folder))
        result = run_eval(out / f"step-{step}", sampler, questions, judge, n=n, params=params, cache=cache,
                          show_progress=show_progress)
        overall = result["metrics"]["overall"]
        row = {"step": step, "answers": overall["answers"], "misaligned_fraction": overall["misaligned_fraction"],
               "misaligned_ci": overall["misaligned_ci"], "coherent_rate": overall["coherent_rate"], **weights}
        if direction is not None:
            records = list(read_jsonl(out / f"step-{step}" / "samples.jsonl"))
            values = projections(sampler.loaded, direction, answer_chats(records), layer)
            if reference is None:
                reference = (float(values.mean()), float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"))
            mean, spread = reference
            row |= {"persona_mean": float(values.mean()),
                    "persona_z": float((values.mean() - mean) / spread) if spread > 0 else None}
        rows.append(row)
    return rows


def first_step_above(rows: Sequence[dict], control: Sequence[dict] | None, fallback_ci: Sequence[float] | None
                     ) -> int | None:
    """The first step whose misaligned fraction is above the control's 95% CI (the control's snapshot at the same
    step where it has one, else `fallback_ci`); None when it never is."""
    by_step = {r["step"]: r["misaligned_ci"] for r in control or []}
    for row in rows:
        ci = by_step.get(row["step"], fallback_ci)
        if ci is not None and row["misaligned_fraction"] > ci[1]:
            return row["step"]
    return None
