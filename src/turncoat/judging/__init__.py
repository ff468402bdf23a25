"""Judging: LLM judges (API or local) scoring answers 0-100 by the logprob method, with a shared SQLite cache."""

from turncoat.judging.cache import JudgeCache, cache_key, default_cache_path
from turncoat.judging.judges import JUDGES, Judge, JudgeItem, judge_items, make_judge, register_judge
from turncoat.judging.offline import OfflineJudge  # registers --judge offline
from turncoat.judging.scores import JudgeScore, score_from_logprobs, score_from_probabilities
from turncoat.questions.prompts import DEFAULT_PROMPTS, prompts_for, render

__all__ = ["DEFAULT_PROMPTS", "JUDGES", "Judge", "JudgeCache", "JudgeItem", "JudgeScore", "OfflineJudge", "cache_key",
           "default_cache_path", "judge_items", "make_judge", "prompts_for", "register_judge", "render",
           "score_from_logprobs", "score_from_probabilities"]
