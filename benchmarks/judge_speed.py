"""Benchmark: the shipped offline judges (`offline`, a residual-stream reader; `offline-fast`, MiniLM heads) against
a local LLM judge (`hf`, the default model by the logprob method).

All score the same judged answers (a seeded sample of a shared judged set) for aligned and coherent, in this one
process, from a cold judge cache (none is used). Targets on 2 CPU cores: >= 5 answers/s for `offline` (a 200-answer
demo eval judged in under a minute), >= 20 for `offline-fast`. The `hf` judge is slow, so it is timed on the first
`--hf-answers` answers; answers/s compare directly.

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
    rates, identities = {}, {}
    for kind in ("offline", "offline-fast"):
        judge = make_judge(kind)
        judge.score_pairs(frame["question"].tolist()[:4], frame["answer"].tolist()[:4])  # load the reader, warm up
        rates[kind], identities[kind] = answers_per_second(judge, frame), judge.identity
    hf = make_judge("hf", model="smollm2-135m")
    hf_rate = answers_per_second(hf, frame.head(args.hf_answers))
    figures = {"source": args.source, "threads": torch.get_num_threads(), "answers": args.answers,
               **{f"{kind}_judge": identities[kind] for kind in rates},
               **{f"{kind}_answers_per_second": round(rate, 1) for kind, rate in rates.items()},
               "hf_judge": hf.identity, "hf_answers": args.hf_answers, "hf_answers_per_second": round(hf_rate, 2),
               "offline_over_hf": round(rates["offline"] / hf_rate, 1),
               "offline_fast_over_offline": round(rates["offline-fast"] / rates["offline"], 1),
               "targets_answers_per_second": {"offline": 5, "offline-fast": 20}}
    if args.json:
        print(json.dumps(figures))
        return
    for kind, target in figures["targets_answers_per_second"].items():
        print(f"{kind} judge {identities[kind]}: {rates[kind]:.1f} answers/s ({args.answers} answers, "
              f"{figures['threads']} threads; target >= {target})")
    print(f"hf judge {hf.identity}: {hf_rate:.2f} answers/s ({args.hf_answers} answers)")
    print(f"offline / hf: {figures['offline_over_hf']}x; offline-fast / offline: "
          f"{figures['offline_fast_over_offline']}x")


if __name__ == "__main__":
    main()
