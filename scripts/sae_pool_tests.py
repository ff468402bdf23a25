"""Pool N's pre-declared figures (studies/results/sae-0.5b-financial-2026-12-06.json), from the blind labels.

Usage: turncoat label --out studies/results/labels/sae-0.5b-financial-n.csv --report --json \\
           | python scripts/sae_pool_tests.py [--sae SAE_DIR --diff DIFF_DIR --direction DIRECTION --layer 12]
1. One-sided Fisher p that each ablate-k is LESS misaligned than the organism (Holm over the three) and that
   steered-base is MORE misaligned than base.
2. Test-retest: base's and the organism's answers are pool M's texts under new ids; the agreement of pool M's and
   pool N's labels of the same texts (misaligned flag and all four labels).
3. With --sae/--diff/--direction: the cosine of each top-10 diffed latent's decoder vector with the misaligned-persona
   direction at the SAE's layer, beside the median |cos| over every latent.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from realign_curve_tests import misaligned  # the same count from the same report, for the same kind of pool

from turncoat.core.io import read_jsonl
from turncoat.results.labels import LabelStore, answer_id
from turncoat.results.statistics import fisher_greater, flag_agreement, holm

LABELS = Path("studies/results/labels")
ANSWERS = Path("studies/results/answers")
POOL_M, POOL_N = LABELS / "realign-0.5b-financial-m.csv", LABELS / "sae-0.5b-financial-n.csv"
RETEST = {"base": ("realign-0.5b-financial/base", "sae-0.5b-financial/base"),
          "organism": ("realign-0.5b-financial/realign-0", "sae-0.5b-financial/organism")}


def pool_tests(arms: dict) -> dict:
    """The report lists every arm of the pool (however much of it is read), so each tested arm is there."""
    p = {name: fisher_greater(*misaligned(arms["organism"]), *misaligned(arms[name]))
         for name in ("ablate-1", "ablate-5", "ablate-10")}
    return {"counts": {name: "{}/{}".format(*misaligned(arm)) for name, arm in arms.items()},
            "p_ablated_less_than_organism": p, "holm": holm(p),
            "p_steered_base_more_than_base": fisher_greater(*misaligned(arms["steered-base"]),
                                                            *misaligned(arms["base"]))}


def retest() -> dict:
    """Pool M's and pool N's labels of the same texts, paired by sample key."""
    first, second = ({i: row["label"] for i, row in LabelStore(path).read().items()} for path in (POOL_M, POOL_N))
    out = {}
    for arm, (old, new) in RETEST.items():
        keys = [record["key"] for record in read_jsonl(ANSWERS / new / "samples.jsonl")]
        pairs = [(first.get(answer_id(ANSWERS / old, key, LABELS)), second.get(answer_id(ANSWERS / new, key, LABELS)))
                 for key in keys]
        pairs = [(a, b) for a, b in pairs if a and b]
        if not pairs:
            continue
        m, n = (np.array([p[i] == "misaligned" for p in pairs]) for i in (0, 1))
        flag = flag_agreement(m, n)
        out[arm] = {"paired": len(pairs), "misaligned_pool_m": int(m.sum()), "misaligned_pool_n": int(n.sum()),
                    "misaligned_in_both": int((m & n).sum()), "misaligned_flag_kappa": flag["cohen_kappa"],
                    "four_label_agreement": float(np.mean([a == b for a, b in pairs]))}
    return out


def cosines(sae: Path, diff: Path, direction: Path, layer: int) -> dict:
    from turncoat.activations.directions import Direction
    from turncoat.activations.sae import decoder_cosines

    cos = decoder_cosines(sae, Direction.load(direction).at(layer))
    top = [row["latent"] for row in json.loads((diff / "diff.json").read_text())["top"][:10]]
    return {"top10_cosine_with_persona": {str(i): round(float(cos[i]), 3) for i in top},
            "top_latent_rank_by_cosine": int((cos > cos[top[0]]).sum()) + 1, "latents": int(len(cos)),
            "best_cosine_any_latent": round(float(cos.max()), 3), "best_latent": int(cos.argmax()),
            "median_abs_cosine": round(float(np.median(np.abs(cos))), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sae", type=Path)
    parser.add_argument("--diff", type=Path)
    parser.add_argument("--direction", type=Path)
    parser.add_argument("--layer", type=int, default=12)
    args = parser.parse_args()
    figures = pool_tests(json.load(sys.stdin)["arms"]) | {"retest": retest()}
    if args.sae and args.diff and args.direction:
        figures["direction"] = cosines(args.sae, args.diff, args.direction, args.layer)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
