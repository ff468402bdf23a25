"""Projections of answers onto a direction: a model's own answers (`persona score`), and training examples against
the model's own answer to the same prompt (`persona screen`, Chen et al.'s projection difference).

A projection is the response-averaged residual stream at one layer, dotted with the layer's unit direction. Its
scale depends on the model and layer, so summaries are also given as z-scores against a reference distribution
(the base model's own answers): z = (mean - reference mean) / reference SD, an effect size in reference SDs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from turncoat.activations.capture import mean_activations
from turncoat.activations.directions import Direction, project
from turncoat.core.errors import InputError
from turncoat.core.io import append_jsonl, read_jsonl
from turncoat.sampling import GenerationParams, generate_chat

GREEDY_SHORT = {"max_new_tokens": 96, "temperature": 0.0, "seed": 0}


def pick_layer(direction: Direction, layer: int | None) -> int:
    """The layer asked for, else the direction's best layer (held-out AUROC), else its last."""
    if layer is not None:
        direction.at(layer)  # raises a clear error when the direction has no such layer
        return layer
    return int(direction.metadata.get("best_layer", direction.layers[-1]))


def projections(loaded, direction: Direction, chats: Sequence[Sequence[dict]], layer: int, reduce: str = "response",
                batch_size: int = 8, hooks=()) -> np.ndarray:
    """(chats,) projections of the chats' activations at `layer` onto the direction's unit vector there."""
    single = Direction(direction.at(layer)[None], [layer])
    return project(mean_activations(loaded, chats, [layer], reduce, batch_size, hooks=hooks), single)[:, 0]


def answered(prompts: Sequence[Sequence[dict]], answers: Sequence[dict]) -> list[list[dict]]:
    """Prompts with the generated answer appended as the assistant turn (an empty answer reads as one space)."""
    return [[*p, {"role": "assistant", "content": a["answer"] or " "}] for p, a in zip(prompts, answers, strict=True)]


def answer_chats(records: Sequence[dict]) -> list[list[dict]]:
    """Answer records of an eval (samples.jsonl) as the chats the model saw and wrote (its system prompt first)."""
    return [([{"role": "system", "content": r["system"]}] if r.get("system") else [])
            + [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"] or " "}]
            for r in records]


def own_answers(loaded, prompts: Sequence[Sequence[dict]], params=None, hooks=()) -> list[list[dict]]:
    params = params or GenerationParams(**GREEDY_SHORT)
    return answered(prompts, generate_chat(loaded, list(prompts), params, hooks=hooks))


def summary(values: np.ndarray, reference: np.ndarray | None = None) -> dict:
    values = np.asarray(values, float)
    figures = {"n": int(len(values)), "mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1
               else float("nan")}
    if reference is not None:
        reference = np.asarray(reference, float)
        spread = reference.std(ddof=1)
        figures |= {"reference_mean": float(reference.mean()), "reference_sd": float(spread),
                    "z": float((values.mean() - reference.mean()) / spread) if spread > 0 else float("nan")}
    return figures


# --- screening -----------------------------------------------------------------------------------------------------

def screen(loaded, conversations, direction: Direction, out: str | Path, layer: int | None = None, params=None,
           chunk: int = 64, batch_size: int = 8, progress=None) -> list[dict]:
    """Per training example: projection of its response minus that of the model's own answer to the same prompt
    (the prompt is every turn before the final assistant turn). Written to `out` (JSONL) chunk by chunk; a rerun
    skips examples already there. Returns every record, in dataset order."""
    out = Path(out)
    layer = pick_layer(direction, layer)
    done = {}
    try:
        records = read_jsonl(out, repair=True)
    except InputError as error:
        raise InputError(f"{out}, line {error.line}: not a screening record (delete the file to start over)") from None
    for line_number, record in enumerate(records, 1):
        if not isinstance(record, dict) or "index" not in record:
            raise InputError(f"{out}, line {line_number}: not a screening record (delete the file to start over)")
        done[record["index"]] = record
    chats, keys = [], []
    for index, conversation in enumerate(conversations):
        messages = conversation.as_messages()
        if messages[-1]["role"] != "assistant":
            raise InputError(f"example {index + 1}: the last turn must be the assistant's response to screen it")
        chats.append(messages)
        keys.append(conversation.key())
    for line_number, (index, record) in enumerate(done.items(), 1):  # a resumed file must be this data's screening
        if (index < len(keys) and record.get("example", keys[index]) != keys[index]) or record.get("layer") != layer:
            raise InputError(f"{out}, line {line_number}: holds the screening of another example or layer at index "
                             f"{index} (the data, its order or the layer changed); use another output file")
    todo = [i for i in range(len(chats)) if i not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(todo), chunk):
        index = todo[start:start + chunk]
        examples = [chats[i] for i in index]
        own = own_answers(loaded, [c[:-1] for c in examples], params)
        theirs = projections(loaded, direction, examples, layer, batch_size=batch_size)
        mine = projections(loaded, direction, own, layer, batch_size=batch_size)
        for i, chat, example_value, own_value in zip(index, own, theirs, mine, strict=True):
            done[i] = {"index": i, "example": keys[i], "layer": layer, "projection_example": float(example_value),
                       "projection_own": float(own_value), "difference": float(example_value - own_value),
                       "prompt": chats[i][-2]["content"][:200], "own_answer": chat[-1]["content"][:200]}
        with open(out, "a", encoding="utf-8") as handle:
            append_jsonl(handle, [done[i] for i in index])
        if progress:
            progress(len(index))
    return [done[i] for i in range(len(chats))]
