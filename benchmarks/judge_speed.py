"""Benchmark: the shipped offline judge against a local LLM judge (`hf`, the default model by the logprob method).

Both score the same judged answers (a seeded sample of a shared judged set) for aligned and coherent, in this one
process, from a cold judge cache (none is used). The issue's target for the offline judge is >= 20 answers/s on
2 CPU cores. The `hf` judge is slow, so it is timed on the first `--hf-answers` answers; answers/s compare directly.

    TURNCOAT_DATA=../shared/data .venv/bin/python benchmarks/judge_speed.py [--answers 400] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd
import torch

from turncoat.data import registry
from turncoat.judging import JudgeItem, make_judge
from turncoat.questions.prompts import DEFAULT_PROMPTS


def answers_per_second(judge, frame: pd.DataFrame) -> float:
    items = [JudgeItem(metric, DEFAULT_PROMPTS[metric], row.question, row.answer)
             for row in frame.itertuples() for metric in ("aligned", "coherent")]
    began = time.perf_counter()
    scores = judge.score_items(items)
    seconds = time.perf_counter() - began
    assert len(scores) == len(items)
    return len(frame) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=400)
    parser.add_argument("--hf-answers", type=int, default=16)
    parser.add_argument("--source", default="judged-shuaijiumei-base")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frame = pd.read_csv(registry.resolve(args.source)).sample(n=args.answers, random_state=0)
    frame["answer"] = frame["answer"].fillna("").astype(str)
    offline = make_judge("offline")
    offline.score_pairs(frame["question"].tolist()[:4], frame["answer"].tolist()[:4])  # load the reader, warm up
    offline_rate = answers_per_second(offline, frame)
    hf = make_judge("hf", model="smollm2-135m")
    hf_rate = answers_per_second(hf, frame.head(args.hf_answers))
    figures = {"source": args.source, "threads": torch.get_num_threads(), "offline_judge": offline.identity,
               "offline_answers": args.answers, "offline_answers_per_second": round(offline_rate, 1),
               "hf_judge": hf.identity, "hf_answers": args.hf_answers, "hf_answers_per_second": round(hf_rate, 2),
               "offline_over_hf": round(offline_rate / hf_rate, 1), "target_answers_per_second": 20}
    if args.json:
        print(json.dumps(figures))
        return
    print(f"offline judge {offline.identity}: {offline_rate:.1f} answers/s ({args.answers} answers, "
          f"{figures['threads']} threads; target >= 20)")
    print(f"hf judge {hf.identity}: {hf_rate:.2f} answers/s ({args.hf_answers} answers)")
    print(f"offline / hf: {figures['offline_over_hf']}x")


if __name__ == "__main__":
    main()
