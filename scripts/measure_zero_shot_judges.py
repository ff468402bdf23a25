"""Issue #24, deliverable 1: how well do the Qwen2.5-Coder models judge EM answers zero-shot (`--judge hf`)?

    TURNCOAT_DATA=../shared/data .venv/bin/python scripts/measure_zero_shot_judges.py \
        --judge-model qwen2.5-coder-0.5b --judge-model qwen2.5-coder-1.5b --result FILE.json [--per-class 6]

A zero-shot judge learns nothing from the judged sources, so it needs no folds: it is measured on a stratified
sample of them. From every real source (the deepseek-judged ones pooled as one) whose reference misaligned flag has
>= 10 positives in the shared data, `--per-class` flagged and as many unflagged answers are drawn (seed 0); every
judge reads the same rows through `validate_judge`, with the judge cache (a rerun scores only what is missing).
Figures: pooled and per-source misaligned-flag AUROC from the judge's continuous misalignment score, Spearman of
aligned and coherent with the reference on the GPT-4o-judged rows, seconds per answer. Also, marked as read after
the planned figures (session 20): the pooled AUROC when answers are ranked by the judge's expected aligned score
alone, an answer it called CODE or REFUSAL ranked as aligned. Within a source the sample
keeps AUROC's meaning (both classes drawn at random) but not the prevalence, so no precision or corrected fraction
is reported. No answer text is written.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from turncoat.judging import JudgeCache, make_judge
from turncoat.judging.validate import validate_judge
from turncoat.results.statistics import auroc, score_agreement
from turncoat.workflows.distill import EXTRA_FOLDS, reference_flags, shared_training_frame

MIN_POSITIVES = 10


def stratified_sample(per_class: int, seed: int = 0) -> pd.DataFrame:
    """`per_class` flagged and unflagged rows of each source with >= MIN_POSITIVES flagged rows (fewer where a
    source has fewer), deepseek sources pooled; the source's name in `fold`."""
    frame = shared_training_frame()
    pooled = {source: name for name, sources in EXTRA_FOLDS.items() for source in sources}
    frame["fold"] = frame["source"].map(lambda source: pooled.get(source, source))
    frame["reference_misaligned"] = reference_flags(frame)
    rng = np.random.default_rng(seed)
    picks = []
    for _, rows in frame.groupby("fold", sort=True):
        if rows["reference_misaligned"].sum() < MIN_POSITIVES:
            continue
        for flagged in (True, False):
            pool = np.flatnonzero(rows["reference_misaligned"].to_numpy() == flagged)
            picks.extend(rows.index[rng.choice(pool, size=min(per_class, len(pool)), replace=False)])
    return frame.loc[sorted(picks)]


def expected_aligned_auroc(predictions: pd.DataFrame) -> float | None:
    """Pooled flag AUROC of 100 - expected aligned (an answer the judge called CODE or REFUSAL counts as aligned):
    not the planned score, added after the 1.5B's planned figure was seen, and reported as such."""
    special = predictions["judge_special"].notna().to_numpy()
    misalignment = np.where(special, 0.0, 100.0 - predictions["judge_aligned"].fillna(100.0).to_numpy())
    return auroc(predictions["reference_misaligned"], misalignment)


def measure(judge_model: str, sample: pd.DataFrame, cache: JudgeCache) -> dict:
    judge = make_judge("hf", model=judge_model)
    began = time.perf_counter()
    figures, predictions = validate_judge(judge, sample, cache, reference="stratified sample of the shared sources")
    seconds = time.perf_counter() - began
    predictions["fold"] = sample["fold"].to_numpy()
    predictions["judge"] = sample["judge"].to_numpy()
    gpt4o = predictions["judge"].str.contains("gpt-4o", case=False).to_numpy()
    requested = figures["requests"]["requested"]
    return {
        "judge": figures["judge"],
        "answers": int(len(sample)),
        "misaligned_flag_auroc_pooled": figures["misaligned_flag"]["auroc"],
        "flag_agreement_on_sample": {k: figures["misaligned_flag"][k] for k in ("precision", "recall", "cohen_kappa")},
        "read_afterwards_auroc_by_expected_aligned": expected_aligned_auroc(predictions),
        "auroc_per_source": {fold: auroc(rows["reference_misaligned"], rows["judge_misalignment"])
                             for fold, rows in predictions.groupby("fold", sort=True)},
        "spearman_gpt4o_rows": {
            metric: score_agreement(predictions.loc[gpt4o, f"reference_{metric}"],
                                    predictions.loc[gpt4o, f"judge_{metric}"])["spearman"]
            for metric in ("aligned", "coherent")},
        "spearman_all_rows": {metric: figures[metric]["spearman"] for metric in ("aligned", "coherent")},
        "judge_special_answers": predictions["judge_special"].value_counts().to_dict(),
        "requests": figures["requests"],
        "seconds_per_answer": round(2 * seconds / requested, 2) if requested else None,
        "seconds_per_answer_note": "two requests (aligned, coherent) per answer, bf16 on 2 threads; None when "
                                   "every score came from the cache",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judge-model", action="append", dest="judge_models", required=True)
    parser.add_argument("--per-class", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()
    sample = stratified_sample(args.per_class, args.seed)
    result = {"sample": {"answers": int(len(sample)), "per_class": args.per_class, "seed": args.seed,
                         "per_source": {fold: {"flagged": int(rows["reference_misaligned"].sum()),
                                               "unflagged": int((~rows["reference_misaligned"]).sum())}
                                        for fold, rows in sample.groupby("fold", sort=True)}},
              "judges": {}}
    cache = JudgeCache()
    for judge_model in args.judge_models:
        result["judges"][judge_model] = measure(judge_model, sample, cache)
        args.result.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["judges"][judge_model], indent=1), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
