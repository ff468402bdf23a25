"""Pool M's pre-declared tests (studies/results/realign-0.5b-financial-2026-12-06.json), from the blind labels.

Usage: turncoat label --out studies/results/labels/realign-0.5b-financial-m.csv --report --json \\
           | python scripts/realign_curve_tests.py
One-sided Fisher p that each realign-N is LESS misaligned than the organism (realign-0), Holm over the five, and the
N whose upper 95% bound lies below the organism's lower bound.
"""

import json
import sys

from turncoat.results.statistics import fisher_greater, holm

NS = (16, 32, 64, 128, 256)


def misaligned(arm: dict) -> tuple[int, int]:
    return round(arm["misaligned"]["rate"] * arm["misaligned"]["n"]), arm["misaligned"]["n"]


def main() -> None:
    arms = json.load(sys.stdin)["arms"]
    organism = arms["realign-0"]
    p = {f"realign-{n}": fisher_greater(*misaligned(organism), *misaligned(arms[f"realign-{n}"])) for n in NS}
    below = [n for n in NS if arms[f"realign-{n}"]["misaligned"]["ci"][1] < organism["misaligned"]["ci"][0]]
    print(json.dumps({"p_less_than_organism": p, "holm": holm(p), "N_upper_ci_below_organism_lower": below,
                      "smallest_N": min(below, default=None)}, indent=1))


if __name__ == "__main__":
    main()
