"""The shipped offline judges against blind labels of a model none of their sources has (#24).

    TURNCOAT_DATA=../shared/data .venv/bin/python scripts/measure_judge_on_blind_labels.py \
        --labels studies/results/labels/organisms-0.5b-financial-c.csv ... \
        --result studies/results/offline-judge-on-blind-labels-2026-12-06.json [--part a|b|ab]

The labels files are `turncoat label` pools; an answer read in several pools keeps the label of the first file
given. Part a: each shipped judge scores every labelled answer (`judge validate`'s figures, plus the labelled,
flagged and corrected misaligned fractions, the correction using the error rates in the judge's card). Part b: the
shipped `offline` recipe (scripts/build_offline_judge.py) with these answers added as one more source (all its
misaligned answers plus `--others` others, as the recipe keeps the rare positives of the deepseek sources),
leave-one-source-out; nothing is shipped. Figures go into the result file's `measured` section.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from turncoat.judging import make_judge
from turncoat.judging.offline import default_judge_dir
from turncoat.judging.reader import ResidualReader
from turncoat.judging.validate import validate_judge
from turncoat.results.labels import LabelStore, export_judged
from turncoat.results.statistics import ErrorRates, corrected_fraction
from turncoat.workflows.distill import (
    distill,
    load_source,
    readable_subsample,
    reference_flags,
    shared_training_frame,
    single_source_mean_auroc,
    synthetic_frame,
)
from turncoat.workflows.evals.run import judge_error_rates


def labelled_source(label_files: list[Path], source: str) -> tuple[pd.DataFrame, dict]:
    """Every distinct labelled answer of the pools, as judged rows of one source; the first pool's label wins."""
    seen: set[tuple[str, str]] = set()
    counts = {}
    with tempfile.TemporaryDirectory() as folder:
        parts = []
        for index, path in enumerate(label_files):
            store = LabelStore(path)
            pool, labels = store.pool(None, None), store.read()
            answers = {(str(Path(item.source).resolve()), item.key): item for item in pool if item.id in labels}
            fresh = [item for answer, item in answers.items() if answer not in seen]
            seen |= answers.keys()
            exported = Path(folder) / f"{index}.jsonl"
            counts[str(path)] = {"labelled": len(labels), "kept": export_judged(fresh, labels, exported)}
            parts.append(load_source(exported, source))
    frame = pd.concat(parts, ignore_index=True)
    return frame, counts


def part_a(frame: pd.DataFrame) -> dict:
    figures = {}
    for kind in ("offline", "offline-fast"):
        judge = make_judge(kind)
        began = time.perf_counter()
        measured, predictions = validate_judge(judge, frame, reference="blind labels")
        seconds = time.perf_counter() - began
        flags = predictions["judge_misaligned"].to_numpy(dtype=float)
        correction = corrected_fraction(flags, ErrorRates.from_dict(judge_error_rates(judge)))
        labelled = float(predictions["reference_misaligned"].mean())
        figures[kind] = {
            "judge": judge.identity, "rows": measured["rows"], "misaligned_flag": measured["misaligned_flag"],
            "labelled_fraction": labelled, "flagged_fraction": correction["raw"],
            "corrected_fraction": correction["corrected"], "corrected_ci": correction["corrected_ci"],
            "corrected_error_pp": abs(correction["corrected"] - labelled) * 100, "seconds": round(seconds, 1),
            "answers_per_second": round(len(frame) / seconds, 2)}
        print(kind, json.dumps({k: figures[kind][k] for k in ("labelled_fraction", "flagged_fraction",
                                                               "corrected_fraction")}),
              "AUROC", measured["misaligned_flag"].get("auroc"), flush=True)
    return figures


def part_b(frame: pd.DataFrame, others: int, reader: str) -> dict:
    rng = np.random.default_rng(0)
    positive = reference_flags(frame)
    keep = positive.copy()
    negatives = np.flatnonzero(~positive)
    keep[rng.choice(negatives, size=min(others, len(negatives)), replace=False)] = True
    shared = readable_subsample(pd.concat([shared_training_frame(), synthetic_frame(300)], ignore_index=True))
    rows = pd.concat([shared, frame[keep]], ignore_index=True)
    _, card = distill(out=None, blocks=("residual", "explicit"), reader=ResidualReader.parse(reader), frame=rows,
                      progress=lambda step: print(step, flush=True), chunks=[len(shared)])  # shared rows: cached
    shipped = json.loads((default_judge_dir() / "card.json").read_text())["validation"]["folds"]
    folds = card["validation"]["folds"]
    return {"rows": {"added": int(keep.sum()), "added_misaligned": int(positive.sum()), "total": int(len(rows))},
            "folds": {name: {"auroc": f["auroc"], "f1": f["flag"]["f1"],
                             "corrected_error_pp": f["corrected_error_pp"],
                             "shipped_auroc": shipped.get(name, {}).get("auroc")} for name, f in folds.items()},
            "mean_auroc": single_source_mean_auroc({n: f["auroc"] for n, f in folds.items()}),
            "mean_auroc_without_this_source": single_source_mean_auroc(
                {n: f["auroc"] for n, f in folds.items() if n not in frame["source"].unique()}),
            "shipped_mean_auroc": single_source_mean_auroc({n: f["auroc"] for n, f in shipped.items()}),
            "layer_chosen_per_fold": card["reader"]["layer_chosen_per_fold"], "seconds": card["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=Path, nargs="+", required=True)
    parser.add_argument("--source", default="qwen2.5-coder-0.5b (blind labels)")
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--part", choices=["a", "b", "ab"], default="ab")
    parser.add_argument("--others", type=int, default=400)
    parser.add_argument("--reader", default="smollm2-135m@3,7,11,15")
    args = parser.parse_args()
    frame, counts = labelled_source(args.labels, args.source)
    result = json.loads(args.result.read_text()) if args.result.is_file() else {}
    measured = result.setdefault("measured", {})
    measured["source"] = {"name": args.source, "answers": int(len(frame)),
                          "misaligned": int(reference_flags(frame).sum()), "pools": counts}
    print(json.dumps(measured["source"]), flush=True)
    if "a" in args.part:
        measured["part_a"] = part_a(frame)
        args.result.write_text(json.dumps(result, indent=2) + "\n")
    if "b" in args.part:
        measured["part_b"] = part_b(frame, args.others, args.reader)
    measured["versions"] = {"torch": torch.__version__}
    args.result.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
