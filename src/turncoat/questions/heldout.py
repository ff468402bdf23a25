"""Evaluation prompts drawn from training-style datasets, kept apart from what a model trained on.

The prompts are distinct first user turns of the source sets, in a fixed order (the sha256 of their text, so the
order depends on no seed), minus every prompt that a given `turncoat train` run trained on (or that a given data
file holds). A run's training split is rebuilt from its recorded config and checked against its recorded data hash.
The split record (sources, runs excluded, prompts skipped, overlap = 0, hash of the chosen prompts) goes into every
run folder, so two models are compared on provably the same prompts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from turncoat.core.errors import InputError
from turncoat.core.io import sha256_file
from turncoat.data import load_chat
from turncoat.data.transforms import dataset_sha256, holdout_split


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def first_user_turn(conversation) -> str | None:
    turns = conversation.turns("user")
    return turns[0] if turns else None


def training_prompts(run: str | Path) -> tuple[set[str], dict]:
    """The user turns a turncoat training run trained on, rebuilt from its recorded config and checked against its
    recorded data hash (so a changed data file cannot silently change the split). A chat JSONL file instead of a
    run: every first user turn in it (a study excludes its arms' data before they are trained)."""
    if Path(run).is_file():
        prompts = {p for p in (first_user_turn(c) for c in load_chat(run)) if p}
        return prompts, {"data": str(run), "data_sha256": sha256_file(run), "training_prompts": len(prompts)}
    path = Path(run) / "turncoat_train.json"
    if not path.is_file():
        raise InputError(f"{run}: not a turncoat training run (no turncoat_train.json), so its training prompts "
                         "cannot be excluded")
    record = json.loads(path.read_text())
    config = record["config"]  # the fields of turncoat.training.TrainConfig that choose the examples
    train, _ = holdout_split(load_chat(config["data"]), config.get("holdout", 0), config.get("subsample"),
                             config.get("seed", 0))
    if dataset_sha256(train) != record["data_sha256"]:
        raise InputError(f"{path}: data_sha256: the training data rebuilt from this config differs from what the "
                         "run trained on; the held-out split cannot be trusted")
    prompts = {p for p in (first_user_turn(c) for c in train) if p}
    return prompts, {"run": str(run), "data": record["config"]["data"], "data_sha256": record["data_sha256"],
                     "training_prompts": len(prompts)}


def held_out_prompts(sources: Sequence[str], n: int, held_out_from: Sequence[str | Path] = (),
                     per_source: bool = False) -> tuple[list[str], dict]:
    """The first `n` prompts in hash order (with `per_source`, n / len(sources) from each source) that none of the
    `held_out_from` runs trained on, and the split record."""
    excluded, runs = set(), []
    for run in held_out_from:
        prompts, info = training_prompts(run)
        excluded |= prompts
        runs.append(info)
    pools: list[list[str]] = []
    for source in sources:
        distinct = {text_hash(p): p for p in (first_user_turn(c) for c in load_chat(source)) if p}
        pools.append([distinct[h] for h in sorted(distinct)])
    if not per_source:
        merged = {text_hash(p): p for pool in pools for p in pool}
        pools = [[merged[h] for h in sorted(merged)]]
    quotas = [n // len(pools) + (i < n % len(pools)) for i in range(len(pools))]
    chosen, seen, skipped = [], set(), 0
    for pool, quota in zip(pools, quotas, strict=True):
        taken = 0
        for prompt in pool:
            if taken == quota:
                break
            if prompt in excluded:
                skipped += 1
            elif prompt not in seen:  # the same request in two sources is drawn once
                chosen.append(prompt)
                seen.add(prompt)
                taken += 1
        if taken < quota:
            raise InputError(f"only {taken} prompts left in {', '.join(sources)} after excluding training data; "
                             "ask for fewer")
    split = {"sources": list(sources), "n": n, "per_source": per_source, "order": "sha256 of the prompt text",
             "held_out_from": runs, "excluded_prompts_skipped": skipped,
             "overlap_with_training": len(set(chosen) & excluded), "prompts_sha256": text_hash("\n".join(chosen))}
    return chosen, split
