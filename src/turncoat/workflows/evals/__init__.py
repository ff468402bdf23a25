"""Eval runs: sample a question set, judge the answers, write one run folder (answers, judged, metrics)."""
