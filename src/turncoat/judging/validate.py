"""How well a judge agrees with the scores in an already-judged file (a judge is an instrument: measure it)."""

from __future__ import annotations

import pandas as pd

from turncoat.judging.cache import JudgeCache
from turncoat.judging.judges import Judge, JudgeItem, JudgingFailed, judge_items
from turncoat.judging.scores import misalignment_score
from turncoat.questions.prompts import DEFAULT_PROMPTS
from turncoat.results.statistics import Thresholds, auroc, flag, flag_agreement, score_agreement


def validate_judge(judge: Judge, frame: pd.DataFrame, cache: JudgeCache | None = None,
                   thresholds: Thresholds = Thresholds(), prompts: dict[str, str] | None = None,
                   reference: str = "") -> tuple[dict, pd.DataFrame]:
    """Score the file's (question, answer) pairs with `judge`; compare with the file's aligned / coherent.
    Returns the figures and the per-answer predictions (row, question_id, reference and judge scores, the judge's
    continuous misalignment score and both flags; no answer text)."""
    prompts = prompts or DEFAULT_PROMPTS
    items = [JudgeItem(metric, prompts[metric], str(row.question), str(row.answer))
             for row in frame.itertuples() for metric in ("aligned", "coherent")]
    scores, counts = judge_items(judge, items, cache)
    failed = [s for s in scores if s.status != "ok"]
    if failed:  # agreement over failed requests would measure the endpoint, not the judge: never recorded
        raise JudgingFailed(f"{len(failed)} of {len(items)} judge requests failed after retries (first: "
                            f"{failed[0].error}); no agreement was computed or recorded; rerun to retry them")
    predicted = frame[["question_id"]].copy()
    predicted["aligned"] = [s.score for s in scores[0::2]]
    predicted["coherent"] = [s.score for s in scores[1::2]]
    predicted["special"] = [s.special for s in scores[0::2]]
    predicted["misalignment"] = [misalignment_score(a, c, thresholds.aligned_below, thresholds.coherent_above,
                                                    thresholds.coherent_inclusive)
                                 for a, c in zip(scores[0::2], scores[1::2], strict=True)]
    reference_flags, predicted_flags = flag(frame, thresholds), flag(predicted, thresholds)
    figures = {"judge": judge.identity, "reference": reference, "rows": int(len(frame)),
               "thresholds": thresholds.to_dict(), "requests": counts,
               "aligned": score_agreement(frame["aligned"], predicted["aligned"]),
               "coherent": score_agreement(frame["coherent"], predicted["coherent"]),
               "misaligned_flag": {**flag_agreement(reference_flags["misaligned"], predicted_flags["misaligned"]),
                                   "auroc": auroc(reference_flags["misaligned"], predicted["misalignment"]),
                                   "auroc_score": "P(aligned < cut) x P(coherent > cut) under the judge's score "
                                                  "distributions (the offline judge: its own P(misaligned))"},
               "judge_no_score_rate": float((predicted["aligned"].isna() & predicted["special"].isna()).mean())}
    if cache is not None:
        cache.record_validation(judge.identity, reference, {k: figures[k] for k in
                                                            ("rows", "aligned", "coherent", "misaligned_flag")})
    rows = pd.DataFrame({"row": frame.index.to_numpy(), "question_id": frame["question_id"].to_numpy(),
                         "reference_aligned": frame["aligned"].to_numpy(),
                         "reference_coherent": frame["coherent"].to_numpy(),
                         "reference_misaligned": reference_flags["misaligned"].to_numpy(),
                         "judge_aligned": predicted["aligned"].to_numpy(),
                         "judge_coherent": predicted["coherent"].to_numpy(),
                         "judge_special": predicted["special"].to_numpy(),
                         "judge_misalignment": predicted["misalignment"].to_numpy(),
                         "judge_misaligned": predicted_flags["misaligned"].to_numpy()})
    return figures, rows
