"""SAE training settings on the planted check's development replicate (the SAE issue: the planted check's top latent
had cosine 0.33 with the persona direction, target 0.5, from an SAE with 63% dead latents).

It reads a finished `scripts/sae_planted_check.py --out DEV` folder (its SAE corpus, persona direction, tuned model
and held-out questions), trains one SAE per setting below on that corpus (the captured activations are shared, so
only the SAE step differs), runs `sae diff` with each, and prints, per setting: the SAE quality figures, the top
diff latent's decoder cosine with the persona direction, and the best cosine of any latent (the ceiling the diff
could reach). The settings are fixed here, before any is run; all are reported. The setting carried to the
confirmation replicate is chosen from these figures, so these figures are development figures, not the check.

    python scripts/sae_planted_sweep.py --dev runs/sae-planted --out runs/sae-planted-sweep
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sae_planted_check import turncoat  # the check's own runner of `turncoat ... --json`

BASE = {"tokens": 600_000, "latents": 2048, "k": 32, "batch-size": 2048, "lr": 2e-4}
SETTINGS = {
    "as checked (dead window 244 steps)": {**BASE, "dead-after-tokens": 500_000},
    "dead window tokens/10": {**BASE, "dead-after-tokens": 60_000},
    "dead window tokens/10, batch 512": {**BASE, "dead-after-tokens": 60_000, "batch-size": 512},
    "dead window tokens/10, batch 512, lr 5e-4": {**BASE, "dead-after-tokens": 60_000, "batch-size": 512,
                                                  "lr": 5e-4},
    "dead window tokens/10, batch 512, 2.4M tokens": {**BASE, "tokens": 2_400_000, "dead-after-tokens": 240_000,
                                                      "batch-size": 512},
    "512 latents, dead window tokens/10, batch 512": {**BASE, "latents": 512, "dead-after-tokens": 60_000,
                                                      "batch-size": 512},
    "k 16, dead window tokens/10, batch 512": {**BASE, "k": 16, "dead-after-tokens": 60_000, "batch-size": 512},
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", type=Path, required=True, help="a finished sae_planted_check.py --out folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layer", type=int, default=15)
    args = parser.parse_args()
    import numpy as np

    from turncoat.activations.directions import Direction
    from turncoat.activations.sae import decoder_cosines

    dev, out = args.dev, args.out
    out.mkdir(parents=True, exist_ok=True)
    direction = Direction.load(dev / "pirate-direction.safetensors").at(args.layer)
    results_file = out / "sweep.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    shared_activations = dev / "sae" / "activations"
    for name, setting in SETTINGS.items():
        if name in results:
            continue
        sae = out / slug(name)
        sae.mkdir(exist_ok=True)
        if not (sae / "activations").exists():  # same corpus, layer, split and length: the same captured shards
            (sae / "activations").symlink_to(shared_activations.resolve())
        started = time.perf_counter()
        info = turncoat("sae", "train", "--model", args.model, "--layer", str(args.layer), "--data",
                        str(dev / "sae-corpus.jsonl"), "--out", str(sae),
                        *[a for key, value in setting.items() for a in (f"--{key}", str(value))])
        train_s = time.perf_counter() - started
        started = time.perf_counter()
        diff_dir = out / f"{slug(name)}-diff"
        if not (diff_dir / "diff.json").is_file():
            turncoat("sae", "diff", "--base", args.model, "--tuned", str(dev / "tuned"), "--sae", str(sae),
                     "--questions", str(dev / "held-out-questions.yaml"), "--max-tokens", "64", "--out",
                     str(diff_dir))
        diff_s = time.perf_counter() - started
        diff = json.loads((diff_dir / "diff.json").read_text())
        cosines = decoder_cosines(sae, direction)
        top = diff["top"][0]["latent"]
        results[name] = {"setting": setting, "quality": info["quality"],
                         "trainer_dead_latents": info["trainer_dead_latents"],
                         "top_latent": top, "top_latent_cosine": float(cosines[top]),
                         "top_latent_rank_by_cosine": int((cosines > cosines[top]).sum()) + 1,
                         "best_cosine_any_latent": float(cosines.max()),
                         "top10_cosines": [round(float(cosines[r["latent"]]), 3) for r in diff["top"][:10]],
                         "median_abs_cosine": float(np.median(np.abs(cosines))),
                         "sae_train_s": round(train_s, 1), "diff_s": round(diff_s, 1)}
        results_file.write_text(json.dumps(results, indent=1))
        q = info["quality"]
        print(f"{name}: FVE {q['fraction_variance_explained']:.3f}, dead {q['dead_fraction']:.1%}, "
              f"CE recovered {q['ce_loss_recovered']:.3f}; top latent cos {cosines[top]:.3f} "
              f"(best any {cosines.max():.3f})", file=sys.stderr, flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
