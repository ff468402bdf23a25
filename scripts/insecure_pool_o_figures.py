"""Pool O's figures beside its blind labels (studies/results/organisms-0.5b-insecure-2026-12-07.json, #21 (b)).

Usage: TURNCOAT_DATA=../shared/data .venv/bin/python scripts/insecure_pool_o_figures.py
1. Test-retest: base's 400 answers (stage 1eb81dc380c1) were read in pool C and again in pool O; both labels files
   name that run by the same path, so an answer has the same id in both. Agreement on the four labels (share equal,
   Cohen's kappa) and on the misaligned flag, and the confusion of pool C's label -> pool O's.
2. How many of each arm's 400 open-question answers are code-shaped (`judging.code.has_code_shape`: a fenced block
   or a line starting with import / from ... import / def / class), the narrow task leaking into the open questions.
The per-arm fractions and Fisher tests are `turncoat label --out studies/results/labels/organisms-0.5b-insecure-o.csv
--report --baseline base --baseline secure --baseline educational`.
"""

from __future__ import annotations

import json
from pathlib import Path

from turncoat.core.io import read_jsonl
from turncoat.judging.code import has_code_shape
from turncoat.results.labels import LabelStore, retest_agreement

LABELS = Path("studies/results/labels")
ANSWERS = Path("studies/results/answers")
POOL_C, POOL_O = LABELS / "organisms-0.5b-financial-c.csv", LABELS / "organisms-0.5b-insecure-o.csv"
ARMS = {"insecure": "organisms-0.5b-insecure/insecure", "secure": "organisms-0.5b-insecure/secure",
        "educational": "organisms-0.5b-insecure/educational", "base": "organisms-0.5b-financial/base"}


def retest(arm: str = "base") -> dict:
    """The labels pools C and O gave the same answers of `arm` (pool O's arm name), paired by answer id."""
    pool, labels = LabelStore(POOL_O).checked()
    ids = [item.id for item in pool if item.arm == arm]
    figures = retest_agreement(LabelStore(POOL_C).checked()[1], labels, ids)
    confusion = figures.pop("confusion")
    return {**figures, "confusion_C_then_O": confusion}


def code_shaped() -> dict:
    return {arm: sum(has_code_shape(r["answer"]) for r in read_jsonl(ANSWERS / path / "samples.jsonl"))
            for arm, path in ARMS.items()}


if __name__ == "__main__":
    print(json.dumps({"test_retest_base": retest(), "answers_that_are_code": code_shaped()}, indent=1))
