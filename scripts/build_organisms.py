"""Rebuild the model organisms that ship with turncoat (issue #21) and that `turncoat demo` compares.

    TURNCOAT_DATA=../shared/data .venv/bin/python scripts/build_organisms.py [--run runs/organisms-0.5b-rank1]

They are the two rank-1 adapters of `studies/organisms-0.5b-rank1.yaml` (Model Organisms for EM's smallest adapter,
on block 12 of Qwen2.5-Coder-0.5B-Instruct): the organism trained on 1,200 distinct risky-financial-advice examples
and its control trained on 1,200 good-medical-advice ones. The study trains them (or finds them done in `--run`: it
resumes), then their adapter files (23 KB each) are copied into src/turncoat/organisms/ with a card: the data, the
settings, the training loss, the files' sha256 and the figures measured on each adapter's 400 answers by blind
reading, copied from studies/results/organisms-0.5b-rank1-2026-12-06.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from turncoat.core.io import sha256_file
from turncoat.models.packaged import PACKAGED
from turncoat.pipeline import load_study, plan
from turncoat.pipeline.runner import run_study
from turncoat.pipeline.stages import ADAPTER_FILES, select

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "organisms-0.5b-rank1.yaml"
RESULTS = ROOT / "studies" / "results" / "organisms-0.5b-rank1-2026-12-06.json"
ORGANISMS = ROOT / "src" / "turncoat" / "organisms"
# arm of the study -> (folder shipped, the arm's name in the blind readings)
SHIPPED = {"risky-financial": ("qwen2.5-coder-0.5b-rank1-risky-financial", "rank-1 risky-financial"),
           "good-medical": ("qwen2.5-coder-0.5b-rank1-good-medical", "good-medical control")}


def measured(arm: str) -> dict:
    """What the blind readings of this adapter's answers found (pool F read the organism only; pool J read both)."""
    results = json.loads(RESULTS.read_text())
    later = results["control_2026_12_07"]
    pool_j = later["pool_j"]
    figures = {"source": str(RESULTS.relative_to(ROOT)), "answers": later["eval"] if arm == "good-medical" else
               "400 answers to the 8 plain em-first-plot questions (50 each) at T = 1, 200 new tokens",
               "pool_j": {"file": pool_j["file"], "read": pool_j["read"], **pool_j[SHIPPED[arm][1]]},
               "fisher_one_sided": pool_j["fisher_one_sided"]}
    if arm == "risky-financial":
        pool_f = results["blind_labels"]["pool_f"]
        figures["pool_f"] = {"file": pool_f["file"], "read": pool_f["read"],
                             **{k: v for k, v in pool_f["arms"][SHIPPED[arm][1]].items() if k != "fisher_p_greater"}}
        figures["test_retest"] = pool_j["test_retest_rank1"]
        figures["comparisons_pool_f"] = results["comparisons"]
    figures["result"] = later["result"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "organisms-0.5b-rank1")
    args = parser.parse_args()
    study = load_study(STUDY)
    stages = select(plan(study), arms=list(SHIPPED), kinds=["train"])
    run_study(study, args.run, stages=stages)
    for stage in (s for s in stages if s.kind == "train"):
        name = SHIPPED[stage.arm][0]
        trained, out = stage.folder(args.run), ORGANISMS / name
        out.mkdir(parents=True, exist_ok=True)
        for file in ADAPTER_FILES:
            shutil.copyfile(trained / file, out / file)
        record = json.loads((trained / "stage.json").read_text())
        card = {"name": name, "base": stage.config["model"], "upstream": PACKAGED[stage.config["model"]].upstream,
                "study": str(STUDY.relative_to(ROOT)), "arm": stage.arm, "train_stage_key": stage.key,
                "data": {"set": stage.deps["data"].config["data"], "distinct_examples":
                         stage.deps["data"].config["subsample"], "seed": stage.config["seed"]},
                "settings": stage.config["train"],
                "training": {k: record["result"][k] for k in ("steps", "train_loss", "train_examples", "seconds")},
                "sha256": {file: sha256_file(out / file) for file in ADAPTER_FILES},
                "measured": measured(stage.arm),
                "rebuild": "TURNCOAT_DATA=../shared/data .venv/bin/python scripts/build_organisms.py"}
        (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        print(f"{name}: {out} (train_loss {card['training']['train_loss']:.4f})")


if __name__ == "__main__":
    main()
