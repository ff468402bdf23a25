"""Issue #8: do more synthetic training rows, or other regularisation, make the offline judge transfer better?

    TURNCOAT_DATA=../shared/data .venv/bin/python scripts/measure_judge_training_variants.py

The shipped recipe (MiniLM answer embedding + explicit features, logistic heads at C = 1, 300 lat-harmful compliance
rows and 300 unrelated-code rows) against variants of its training data and regularisation, all validated
leave-one-source-out on the same real rows as the card: narrow bad advice (bad medical, risky financial, extreme
sports; the EMA_RL narrow sets) added as misaligned, good medical advice added as aligned (the same questions as the
bad medical set, so the pair differs only in stance), the lat-harmful rows or the length feature left out, stronger
L2. Besides AUROC it reports what the card's weak spots are: the flagged fraction on the clean persona source (all
aligned) and the corrected-fraction error on the steered-Qwen source. Figures go to `--out`/figures.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from turncoat.judging.encoder import PairEncoder
from turncoat.workflows.distill import (
    EXTRA_FOLDS,
    cached_features,
    fold_line,
    leave_one_source_out,
    shared_training_frame,
    single_source_mean_auroc,
    synthetic_frame,
)

BLOCKS = ("answer", "explicit")  # the shipped judge's feature blocks
EXTRA_ROWS = {"good-medical": 300, "bad-medical": 100, "risky-financial": 100, "extreme-sports": 100,
              "ema-legal-eval": 100, "ema-medical-eval": 100, "ema-security-eval": 100}
BAD_ADVICE = ["bad-medical", "risky-financial", "extreme-sports"]
EMA = ["ema-legal-eval", "ema-medical-eval", "ema-security-eval"]
# name: (extra sets added, drop lat-harmful rows, drop the length feature, C)
VARIANTS = {
    "shipped recipe": ([], False, False, 1.0),
    "+ 300 good medical (aligned)": (["good-medical"], False, False, 1.0),
    "+ 300 bad narrow advice (misaligned)": (BAD_ADVICE, False, False, 1.0),
    "+ good medical + bad narrow advice": (["good-medical", *BAD_ADVICE], False, False, 1.0),
    "+ good medical + bad advice + 300 EMA narrow": (["good-medical", *BAD_ADVICE, *EMA], False, False, 1.0),
    "without the lat-harmful rows": ([], True, False, 1.0),
    "without the length feature": ([], False, True, 1.0),
    "C = 0.1": ([], False, False, 0.1),
    "C = 0.01": ([], False, False, 0.01),
    "C = 0.001": ([], False, False, 0.001),
}
PERSONA, STEERED = "qwen-7b-persona (gpt-4.1-mini, 100-evil)", "mo-steered-qwen (gpt-4o)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/judge-variants"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    encoder = PairEncoder()
    base = pd.concat([shared_training_frame(), synthetic_frame(300)], ignore_index=True)
    extra = synthetic_frame(0, extra=EXTRA_ROWS)  # only the extra sets, from their own generator
    base_features, extra_features = cached_features(encoder, base, BLOCKS), cached_features(encoder, extra, BLOCKS)
    figures = {"feature_blocks": list(BLOCKS), "extra_rows": EXTRA_ROWS, "variants": {}}
    for name, (sets, no_lat_harmful, no_length, c) in VARIANTS.items():
        keep_base = ~(no_lat_harmful & base["source"].eq("synthetic: lat-harmful compliance")).to_numpy()
        keep_extra = extra["source"].isin([f"synthetic: {s} (misaligned)" for s in sets]
                                          + [f"synthetic: {s} (aligned)" for s in sets]).to_numpy()
        frame = pd.concat([base[keep_base], extra[keep_extra]], ignore_index=True)
        features = np.vstack([base_features[keep_base], extra_features[keep_extra]])
        if no_length:
            features[:, -1] = 0.0  # log length is the last explicit feature
        began = time.perf_counter()
        folds = leave_one_source_out(features, frame, EXTRA_FOLDS, c=c)
        per_source = {s: f["auroc"] for s, f in folds["folds"].items()}
        figures["variants"][name] = {
            "training_rows": int(len(frame)), "mean_auroc": single_source_mean_auroc(per_source),
            "per_source_auroc": per_source,
            "persona_flagged_fraction": folds["folds"][PERSONA]["raw_fraction"],
            "steered_corrected_error_pp": folds["folds"][STEERED]["corrected_error_pp"],
            "pooled_error_rates": folds["pooled_error_rates"]}
        row = figures["variants"][name]
        print(f"{name}: mean AUROC {row['mean_auroc']:.3f} | "
              + fold_line(per_source)
              + f" | persona flagged {row['persona_flagged_fraction']:.3f}, steered corrected error "
              f"{row['steered_corrected_error_pp']:.1f} pp, pooled sensitivity "
              f"{row['pooled_error_rates']['sensitivity']:.3f} ({time.perf_counter() - began:.0f} s)", flush=True)
    (args.out / "figures.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
