"""What `turncoat data inspect` reports about a chat dataset."""

from __future__ import annotations

from collections import Counter

import numpy as np

from turncoat.data.chat import ChatDataset

PERCENTILES = (5, 25, 50, 75, 95, 99, 100)


def describe(dataset: ChatDataset, tokenizer=None) -> dict:
    """Row and role counts, duplicates and (with a tokenizer) token-length percentiles of the rendered chat."""
    roles = Counter(m.role for c in dataset for m in c.messages)
    keys = Counter(c.key() for c in dataset)
    user_prompts = Counter(tuple(c.turns("user")) for c in dataset)
    report = {
        "name": dataset.name,
        "source": str(dataset.source) if dataset.source else None,
        "rows": len(dataset),
        "roles": dict(sorted(roles.items())),
        "with_system_prompt": sum(1 for c in dataset if c.system is not None),
        "turns_per_example": _percentiles([len(c.messages) for c in dataset]),
        "distinct_examples": len(keys),
        "duplicate_rows": len(dataset) - len(keys),
        "repeated_user_prompts": len(dataset) - len(user_prompts),
        "assistant_chars": _percentiles([sum(len(t) for t in c.turns("assistant")) for c in dataset]),
    }
    if tokenizer is not None:
        report["tokens"] = token_lengths(dataset, tokenizer)
    return report


def token_lengths(dataset: ChatDataset, tokenizer) -> dict:
    """Token counts of each example as the model sees it in training (chat template applied once)."""
    texts = []
    for conversation in dataset:
        messages = conversation.as_messages()
        texts.append(tokenizer.apply_chat_template(messages, tokenize=False))
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return {"tokenizer": getattr(tokenizer, "name_or_path", ""), "total": int(sum(lengths)),
            **_percentiles(lengths)}


def _percentiles(values: list[int]) -> dict:
    if not values:
        return {}
    array = np.asarray(values)
    out = {f"p{p}": float(np.percentile(array, p)) for p in PERCENTILES}
    out["mean"] = float(array.mean())
    return out
