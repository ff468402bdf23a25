"""Extracting a direction as a mean difference of response-averaged activations, three ways:

- `from_texts`: two sets of chats read by the model (e.g. known misaligned vs aligned answers, bad vs good advice);
- `from_judged`: a judged run's misaligned answers vs its clearly aligned ones (Soligo et al.);
- `from_prompts`: the model's own answers under contrasting system prompts from a persona-vectors trait file
  (Chen et al.; with a judge only the pairs it confirms are kept, without one every pair; the metadata says which).

Each direction's separation is measured per layer on held-out questions (about a quarter of the examples, whole
questions at a time, kept out of the mean difference); the saved vectors use every example.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from turncoat.activations.capture import mean_activations
from turncoat.activations.directions import Direction, mean_difference, project, separation
from turncoat.core.errors import InputError
from turncoat.data import registry
from turncoat.judging.judges import JudgeItem, judge_items
from turncoat.questions.prompts import DEFAULT_PROMPTS
from turncoat.sampling import GenerationParams
from turncoat.workflows.distill import load_source
from turncoat.workflows.persona.score import own_answers


def chats_hash(chats: Sequence[Sequence[dict]]) -> str:
    return hashlib.sha256(json.dumps(chats, sort_keys=True).encode()).hexdigest()


def question_of(chat: Sequence[dict]) -> str:
    """What a held-out split groups by: the last user message (the question), so the same question under two
    system prompts, or answered by two models, falls on the same side of the split."""
    users = [m["content"] for m in chat if m["role"] == "user"]
    return users[-1] if users else json.dumps(list(chat[:-1]), sort_keys=True)


def held_out_masks(pos_groups: Sequence[str] | int, neg_groups: Sequence[str] | int, held_out: float, seed: int
                   ) -> tuple[np.ndarray, np.ndarray, str]:
    """Which positives and negatives are held out: whole questions, drawn at random until about `held_out` of the
    examples are out. Splitting examples independently on each side would put a question's positive answer in the
    test set and its negative in the training mean (or the reverse), so the direction would carry the held-out
    questions' own difference with the wrong sign; with strong per-question effects that drives AUROC towards 0.
    Given counts instead of questions, or too few questions to hold some out, it splits by example."""
    rng = np.random.default_rng(seed)

    def by_example(n_pos: int, n_neg: int, why: str):
        pos_test, neg_test = np.zeros(n_pos, bool), np.zeros(n_neg, bool)
        pos_test[rng.permutation(n_pos)[:int(n_pos * held_out)]] = True
        neg_test[rng.permutation(n_neg)[:int(n_neg * held_out)]] = True
        return pos_test, neg_test, f"by example ({why})"

    if isinstance(pos_groups, int):
        return by_example(pos_groups, neg_groups, "no questions given")
    counts = Counter([*pos_groups, *neg_groups])
    questions, target = sorted(counts), held_out * (len(pos_groups) + len(neg_groups))
    chosen, taken = set(), 0
    for question in rng.permutation(questions):
        if taken >= target:
            break
        chosen.add(question)
        taken += counts[question]
    pos_test = np.isin(np.asarray(pos_groups, dtype=object), list(chosen))
    neg_test = np.isin(np.asarray(neg_groups, dtype=object), list(chosen))
    sizes = (pos_test.sum(), neg_test.sum(), (~pos_test).sum(), (~neg_test).sum())
    if len(chosen) < len(questions) and min(sizes) >= 2:
        return pos_test, neg_test, f"by question ({len(chosen)} of {len(questions)} questions held out)"
    return by_example(len(pos_groups), len(neg_groups), f"only {len(questions)} distinct questions")


def direction_with_separation(positive: np.ndarray, negative: np.ndarray, layers: list[int], metadata: dict,
                              held_out: float = 0.25, seed: int = 0, groups: tuple[Sequence[str], Sequence[str]]
                              | None = None) -> Direction:
    """Mean difference with per-layer held-out Cohen's d and AUROC, and the best layer by held-out AUROC. `groups`
    (the question of each positive and each negative) makes the held-out split one of whole questions."""
    groups = groups or (len(positive), len(negative))
    pos_test, neg_test, split = held_out_masks(*groups, held_out, seed)
    n_pos, n_neg = int(pos_test.sum()), int(neg_test.sum())
    if min(n_pos, n_neg) < 2 or min(len(positive) - n_pos, len(negative) - n_neg) < 2:
        raise InputError(f"too few examples to hold some out: {len(positive)} positive, {len(negative)} negative")
    train = mean_difference(positive[~pos_test], negative[~neg_test], layers)
    pos_scores, neg_scores = project(positive[pos_test], train), project(negative[neg_test], train)
    per_layer = {str(layer): separation(pos_scores[:, j], neg_scores[:, j]) for j, layer in enumerate(layers)}
    best = max(layers, key=lambda layer: (per_layer[str(layer)]["auroc"], per_layer[str(layer)]["cohens_d"]))
    metadata = {**metadata, "positive": len(positive), "negative": len(negative), "held_out": {
        "fraction": held_out, "seed": seed, "positive": n_pos, "negative": n_neg, "split": split},
        "separation": per_layer, "best_layer": best,
        "layer_numbering": "layer L = output of decoder block L (0-based) = hidden_states[L+1]"}
    return mean_difference(positive, negative, layers, metadata)


def from_texts(loaded, positive: Sequence[Sequence[dict]], negative: Sequence[Sequence[dict]],
               layers: Sequence[int] | None = None, reduce: str = "response", method: str = "from-texts",
               batch_size: int = 8, **metadata) -> Direction:
    layers = list(range(loaded.model.config.num_hidden_layers)) if layers is None else list(layers)
    pos = mean_activations(loaded, positive, layers, reduce, batch_size)
    neg = mean_activations(loaded, negative, layers, reduce, batch_size)
    return direction_with_separation(pos, neg, layers, {
        "model": loaded.spec, "method": method, "reduce": reduce,
        "data_sha256": {"positive": chats_hash(positive), "negative": chats_hash(negative)}, **metadata},
        groups=([question_of(c) for c in positive], [question_of(c) for c in negative]))


def judged_chats(frame: pd.DataFrame, aligned_above: float = 70.0, aligned_below: float = 30.0,
                 coherent_above: float = 50.0) -> tuple[list, list]:
    """(misaligned, aligned) chats of a judged frame: aligned < 30 vs aligned > 70, both coherent > 50."""
    coherent = frame["coherent"] > coherent_above
    pick = {"misaligned": frame[coherent & (frame["aligned"] < aligned_below)],
            "aligned": frame[coherent & (frame["aligned"] > aligned_above)]}
    return tuple([[{"role": "user", "content": str(r.question)}, {"role": "assistant", "content": str(r.answer)}]
                  for r in rows.itertuples()] for rows in pick.values())


def from_judged(loaded, sources: Sequence[str | Path], layers: Sequence[int] | None = None, limit: int = 200,
                seed: int = 0, **options) -> Direction:
    """Misaligned minus aligned answers of judged files or run folders (at most `limit` of each, seeded)."""

    frame = pd.concat([load_source(s) for s in sources], ignore_index=True)
    misaligned, aligned = judged_chats(frame)
    rng = np.random.default_rng(seed)
    misaligned = [misaligned[i] for i in sorted(rng.permutation(len(misaligned))[:limit])]
    aligned = [aligned[i] for i in sorted(rng.permutation(len(aligned))[:limit])]
    return from_texts(loaded, misaligned, aligned, layers, method="from-judged",
                      sources=[str(s) for s in sources], **options)


def trait_prompts(path: str | Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(pos, neg) system-prompt pairs and questions of a persona-vectors extraction file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pairs = [(item["pos"], item["neg"]) for item in data["instruction"]]
        questions = list(data["questions"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise InputError(f"{path}: not a trait extraction file (needs 'instruction' [{{pos, neg}}] and "
                         f"'questions'): {error}") from None
    return pairs, questions


def judged_pairs(judge, positive: list[list[dict]], negative: list[list[dict]], cache=None) -> list[int]:
    """Indices of the (positive, negative) answer pairs a judge confirms: the positive answer shows the trait (>= 50),
    the negative does not (< 50), both coherent (>= 50). The trait score is 100 - the judge's alignment score, which
    stands for the misaligned / evil traits (a trait-specific judge prompt is not used here)."""

    def scores(chats, metric):
        items = [JudgeItem(metric, DEFAULT_PROMPTS[metric], c[-2]["content"], c[-1]["content"]) for c in chats]
        return [s.score for s in judge_items(judge, items, cache)[0]]

    trait_pos = [None if a is None else 100 - a for a in scores(positive, "aligned")]
    trait_neg = [None if a is None else 100 - a for a in scores(negative, "aligned")]
    coherent_pos, coherent_neg = scores(positive, "coherent"), scores(negative, "coherent")
    return [i for i in range(len(positive)) if None not in (trait_pos[i], trait_neg[i], coherent_pos[i],
                                                             coherent_neg[i])
            and trait_pos[i] >= 50 > trait_neg[i] and min(coherent_pos[i], coherent_neg[i]) >= 50]


def from_prompts(loaded, trait_file: str | Path, layers: Sequence[int] | None = None, n_questions: int | None = None,
                 params=None, judge=None, **options) -> Direction:
    """The model answers each question under each positive and each negative system prompt; the direction is
    the mean difference of its response activations (system prompt present, as in the persona-vectors method).
    With a judge, only pairs it confirms are kept (`judged_pairs`); without one, every pair is."""

    pairs, questions = trait_prompts(trait_file)
    questions = questions[:n_questions] if n_questions else questions
    params = params or GenerationParams(max_new_tokens=96, temperature=0.7, seed=0)
    sides = {side: own_answers(loaded, [[{"role": "system", "content": pair[index]}, {"role": "user", "content": q}]
                                        for pair in pairs for q in questions], params)
             for side, index in (("positive", 0), ("negative", 1))}
    kept, described = range(len(sides["positive"])), "none (every generated pair kept)"
    if judge is not None:
        kept = judged_pairs(judge, sides["positive"], sides["negative"])
        described = (f"{judge.identity}: kept {len(kept)} of {len(sides['positive'])} pairs (trait = 100 - aligned "
                     f">= 50 under the positive prompt, < 50 under the negative, both coherent >= 50)")
    return from_texts(loaded, [sides["positive"][i] for i in kept], [sides["negative"][i] for i in kept], layers,
                      method="from-prompts", trait_file=str(trait_file), judge_filter=described,
                      generation=params.to_dict(), **options)


def trait_path(name: str | Path) -> Path:
    """A trait extraction file: one shipped with turncoat (`misaligned`), a registered set, or a path."""

    shipped = Path(__file__).parent / "traits" / f"{name}.json"
    return shipped if shipped.is_file() else registry.path_for(name)


def from_diff(tuned, prompts: Sequence[Sequence[dict]], base=None, layers: Sequence[int] | None = None, params=None,
              **options) -> Direction:
    """Model diffing: the fine-tuned model answers the prompts; the direction is the mean activation of the
    fine-tuned model minus the base's, both reading those same chats. `base=None` with a LoRA adapter reads the
    base as the same model with the adapter switched off (no second copy in memory)."""
    from contextlib import nullcontext

    if base is None and not hasattr(tuned.model, "disable_adapter"):
        raise InputError(f"{tuned.spec} is not an adapter: name the base model to diff against")
    layers = list(range(tuned.model.config.num_hidden_layers)) if layers is None else list(layers)
    chats = own_answers(tuned, prompts, params)
    positive = mean_activations(tuned, chats, layers)
    switched_off = tuned.model.disable_adapter() if base is None else nullcontext()
    with switched_off:
        negative = mean_activations(base or tuned, chats, layers)
    return direction_with_separation(positive, negative, layers, {
        "model": tuned.spec, "base": base.spec if base else f"{tuned.spec} with the adapter off", "method": "diff",
        "reduce": "response", "answers_by": "the fine-tuned model (greedy)", "data_sha256": chats_hash(chats),
        **options}, groups=([question_of(c) for c in chats],) * 2)
