"""Misaligned fractions corrected for the judge's own error rates (Rogan-Gladen), with CIs that carry both the
run's sampling uncertainty and the uncertainty of the judge's validation (a judge is an instrument: its error is
part of the figure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from turncoat.evals.metrics import bootstrap_ci


@dataclass(frozen=True)
class ErrorRates:
    """Confusion counts of a judge's flag against reference labels on validation data it was not trained on."""

    tp: int
    fp: int
    fn: int
    tn: int
    measured_on: str = ""

    @classmethod
    def from_flags(cls, reference, predicted, measured_on: str = "") -> ErrorRates:
        reference, predicted = np.asarray(reference, bool), np.asarray(predicted, bool)
        return cls(int((reference & predicted).sum()), int((~reference & predicted).sum()),
                   int((reference & ~predicted).sum()), int((~reference & ~predicted).sum()), measured_on)

    @classmethod
    def from_dict(cls, data: dict) -> ErrorRates:
        return cls(int(data["tp"]), int(data["fp"]), int(data["fn"]), int(data["tn"]), data.get("measured_on", ""))

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def specificity(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "sensitivity": self.sensitivity, "specificity": self.specificity}


def rogan_gladen(raw: np.ndarray | float, sensitivity, specificity):
    """True prevalence from an imperfect flag's rate; NaN where the judge is no better than chance."""
    denominator = np.asarray(sensitivity, float) + np.asarray(specificity, float) - 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (np.asarray(raw, float) + np.asarray(specificity, float) - 1.0) / denominator
    return np.where(denominator > 0, np.clip(value, 0.0, 1.0), np.nan)


def corrected_fraction(flags, rates: ErrorRates, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Raw and corrected fraction of flagged answers, each with a percentile-bootstrap CI; the corrected CI
    resamples the run's answers and the judge's validation positives and negatives together."""
    flags = np.asarray(flags, dtype=float)
    raw = float(flags.mean()) if len(flags) else float("nan")
    figures = {"raw": raw, "raw_ci": bootstrap_ci(flags, n_boot, seed, level), "error_rates": rates.to_dict(),
               "corrected": float(rogan_gladen(raw, rates.sensitivity, rates.specificity)), "corrected_ci": None}
    positives, negatives = rates.tp + rates.fn, rates.tn + rates.fp
    if len(flags) and positives and negatives and not np.isnan(figures["corrected"]):
        rng = np.random.default_rng(seed)
        raw_draws = rng.binomial(len(flags), raw, n_boot) / len(flags)
        sensitivity = rng.binomial(positives, rates.sensitivity, n_boot) / positives
        specificity = rng.binomial(negatives, rates.specificity, n_boot) / negatives
        draws = rogan_gladen(raw_draws, sensitivity, specificity)
        draws = draws[~np.isnan(draws)]
        if len(draws):
            tail = (1 - level) / 2 * 100
            figures["corrected_ci"] = (float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail)))
    return figures
