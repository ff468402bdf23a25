"""Benchmark: does a stage run as fast in the local executor's child process as in the run's own process?

The `local` executor runs each model stage in a fresh spawned process (so a fine-tune's memory is freed before the
next stage loads a model). This runs one fine-tune stage of a study (by default the 1.5B organism study's `cpu`
profile: the default model, 12 steps of 16 risky-financial examples) inline and in a child process, alternating,
each in a fresh run folder, and prints the training time of each (the same steps on the same examples) and their
speed ratio. The child's start-up (a fresh interpreter importing turncoat and torch) is reported apart: it is paid
once per stage.
Usage: TURNCOAT_DATA=../shared/data python benchmarks/stage_process.py [--repeats 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from turncoat.pipeline import load_study, plan, run_stage
from turncoat.pipeline.runner import run_stage_in_child


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="studies/organisms-1.5b-financial.yaml")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--arm", default="risky-financial")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    stages = plan(load_study(Path(args.study), args.profile))
    train = next(s for s in stages if s.kind == "train" and f"/{args.arm}/" in s.label)
    runs = {"inline": [], "child": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for how, runner in (("inline", run_stage), ("child", run_stage_in_child)):
                folder = Path(scratch) / f"{how}-{repeat}"
                for dep in train.deps.values():  # the training data stage: cheap, always inline
                    run_stage(dep, folder, True)
                began = time.perf_counter()
                record = runner(train, folder, True)
                wall = time.perf_counter() - began
                result = record["result"]
                runs[how].append({"wall_seconds": wall, "stage_seconds": record["seconds"],
                                  "train_seconds": result["seconds"], "start_up_seconds": wall - record["seconds"]})
    summary = {how: {key: statistics.median(r[key] for r in rows) for key in rows[0]} for how, rows in runs.items()}
    figures = {"stage": train.label, "repeats": args.repeats, "runs": runs, "median": summary,
               "child_over_inline_speed": summary["inline"]["train_seconds"] / summary["child"]["train_seconds"]}
    if args.json:
        print(json.dumps(figures, indent=1))
        return
    for how, row in summary.items():
        print(f"{how:7s} training {row['train_seconds']:6.1f} s  stage {row['stage_seconds']:6.1f} s  "
              f"wall {row['wall_seconds']:6.1f} s")
    print(f"training speed, child / inline: {figures['child_over_inline_speed']:.3f}; the child's start-up: "
          f"{summary['child']['start_up_seconds']:.1f} s per stage")


if __name__ == "__main__":
    main()
