"""Figures beside the blind labels of the 1.5B organism study (#21; studies/organisms-1.5b-financial.yaml).

Usage: TURNCOAT_DATA=../shared/data .venv/bin/python scripts/organisms_1_5b_figures.py
Pool P (the coherence gate, plan: studies/results/organisms-1.5b-coherence-gate-plan-2026-12-07.json) read the 1.5B
base's and the 0.5B base's 400 em-first-plot answers each, models hidden:
1. The coherent rate (every label but incoherent) of each model, and the one-sided Fisher p that the 1.5B's exceeds
   the 0.5B's.
2. Test-retest: the 0.5B base's answers were read before in pools C and O (same run path, so the same ids): the
   agreement of pool P's labels with each, and the coherent rate each reading gave.
The per-model label fractions with CIs are `turncoat label --out studies/results/labels/organisms-1.5b-coherence-p.csv
--report --baseline organisms-0.5b-financial/base`.
Pool Q (the organism, plan: studies/results/organisms-1.5b-financial-reading-plan-2026-12-07.json, amended before
reading) read risky-financial and the 1.5B base, arms hidden:
3. Test-retest of the 1.5B base (pool P, then pool Q). The per-arm fractions, Fisher tests and judge agreement are
   `turncoat label --out studies/results/labels/organisms-1.5b-financial-q.csv --report --baseline base` (and for
   pool R, with the control: `... organisms-1.5b-financial-r.csv --report --baseline base --baseline good-medical`).
4. Test-retest of the arms that later pools read again: risky-financial and base (pool Q, then R), base and
   good-medical (pool R, then S: plan studies/results/organisms-1.5b-lr2e-5-reading-plan-2026-12-08.json, where pool S
   read them beside risky-financial-lr2e-5).
5. Pool S (the lr 2e-5 schedule): each arm's misaligned answers per question, and a one-sided binomial test of
   risky-financial-lr2e-5's coherent rate against #21's 80%. Per-arm fractions, Fisher tests and the judge's agreement:
   `turncoat label --out studies/results/labels/organisms-1.5b-financial-s.csv --report --baseline base --baseline
   good-medical --plot studies/results/organisms-1.5b-financial-s.png`.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from scipy.stats import binomtest

from turncoat.results.labels import LabelStore, retest_agreement
from turncoat.results.statistics import fisher_greater

LABELS = Path("studies/results/labels")
POOL_P, POOL_Q = LABELS / "organisms-1.5b-coherence-p.csv", LABELS / "organisms-1.5b-financial-q.csv"
POOL_R, POOL_S = LABELS / "organisms-1.5b-financial-r.csv", LABELS / "organisms-1.5b-financial-s.csv"
EARLIER = {"pool C": LABELS / "organisms-0.5b-financial-c.csv", "pool O": LABELS / "organisms-0.5b-insecure-o.csv"}
SMALL, LARGE = "organisms-0.5b-financial/base", "organisms-1.5b-financial/base"


def coherent(labels: dict[str, dict], ids: list[str]) -> tuple[int, int]:
    read = [labels[i]["label"] for i in ids if i in labels]
    return sum(label != "incoherent" for label in read), len(read)


def gate() -> dict:
    pool, labels = LabelStore(POOL_P).checked()
    ids = {arm: [item.id for item in pool if item.arm == arm] for arm in (SMALL, LARGE)}
    counts = {arm: coherent(labels, arm_ids) for arm, arm_ids in ids.items()}
    figures = {arm: {"coherent": hits, "read": n, "rate": hits / n} for arm, (hits, n) in counts.items()}
    p = fisher_greater(*counts[LARGE], *counts[SMALL])
    retest = {}
    for name, path in EARLIER.items():
        figures_arm = pool_retest(path, POOL_P, (SMALL,))[SMALL]
        figures_arm.pop("coherent_rate_after")
        figures_arm[f"coherent_rate_in_{name.split()[1]}"] = figures_arm.pop("coherent_rate_before")
        retest[f"{name} -> pool P"] = figures_arm
    return {"coherent": figures, "fisher_p_1.5b_coherent_greater": p, "test_retest_0.5b_base": retest}


def base_retest() -> dict:
    """The 1.5B base's labels in pool P and again in pool Q (arm `base` there), paired by answer id."""
    figures = pool_retest(POOL_P, POOL_Q, ("base",))["base"]
    figures["coherent_rate_in_P"] = figures.pop("coherent_rate_before")
    figures["coherent_rate_in_Q"] = figures.pop("coherent_rate_after")
    return figures


def pool_retest(earlier: Path, later: Path, arms: tuple[str, ...]) -> dict:
    """A later pool read some arms of an earlier one again: agreement per arm, paired by answer id, and each
    reading's coherent rate (pools Q -> R: hours apart, recall more than reliability; R -> S: a day apart)."""
    pool, labels_later = LabelStore(later).checked()
    labels_earlier = LabelStore(earlier).checked()[1]
    figures = {}
    for arm in arms:
        ids = [item.id for item in pool if item.arm == arm]
        (hits_before, n_before), (hits_after, n_after) = coherent(labels_earlier, ids), coherent(labels_later, ids)
        figures[arm] = {**retest_agreement(labels_earlier, labels_later, ids),
                        "coherent_rate_before": hits_before / n_before, "coherent_rate_after": hits_after / n_after}
    return figures


def pool_s() -> dict:
    """Pool S beside its report: each arm's misaligned answers per question, and whether risky-financial-lr2e-5's
    coherent rate exceeds #21's 80% (one-sided exact binomial test; the rate itself is the report's)."""
    pool, labels = LabelStore(POOL_S).checked()
    figures = {}
    for arm in sorted({item.arm for item in pool}):
        ids = [item.id for item in pool if item.arm == arm]
        hits, n = coherent(labels, ids)
        misaligned = Counter(item.question for item in pool if item.arm == arm and
                             labels[item.id]["label"] == "misaligned")
        figures[arm] = {"coherent": hits, "read": n, "misaligned_by_question": dict(misaligned.most_common())}
    hits, n = figures["risky-financial-lr2e-5"]["coherent"], figures["risky-financial-lr2e-5"]["read"]
    figures["binomial_p_lr2e-5_coherent_above_0.80"] = binomtest(hits, n, 0.80, alternative="greater").pvalue
    return figures


if __name__ == "__main__":
    figures = {"pool_p": gate()}
    if POOL_Q.is_file():
        figures["pool_q_test_retest_1.5b_base"] = base_retest()
    if POOL_R.is_file():
        figures["pool_r_test_retest_q_to_r"] = pool_retest(POOL_Q, POOL_R, ("risky-financial", "base"))
    if POOL_S.is_file():
        figures["pool_s_test_retest_r_to_s"] = pool_retest(POOL_R, POOL_S, ("base", "good-medical"))
        figures["pool_s"] = pool_s()
    print(json.dumps(figures, indent=1))
