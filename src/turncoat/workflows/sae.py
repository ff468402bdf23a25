"""SAE model diffing (OpenAI's persona-features method, for open models): encode the base and the fine-tuned model's
activations on the same chats with one SAE, and rank latents by how much the fine-tune raised them; then read what
the top latents respond to. By default the chats are both models' own answers to the same prompts (the base's and the
tuned model's, pooled) and both models read all of them, so a shift measures the model, not a change of text; "own"
reads each model on its own answers instead (what the model does, the change of text included), "tuned" both models
on the tuned model's answers only."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from turncoat.activations.sae import LoadedSAE, latent_statistics, top_snippets
from turncoat.core.errors import InputError
from turncoat.data import load_chat
from turncoat.workflows.persona.score import own_answers

DiffReads = Literal["pooled", "own", "tuned"]  # the type a study's `sae.diff_reads` takes
DIFF_READS: tuple[str, ...] = get_args(DiffReads)


def model_diff(base, tuned, sae: LoadedSAE, prompts: Sequence[Sequence[dict]], params, top: int = 20,
               span: str = "response", max_length: int = 256, reads: str = "pooled") -> dict:
    """Both models answer `prompts`; each reads the answers `reads` names (pooled: all of them; own: its own;
    tuned: the tuned model's); per latent the tuned model's mean activation and firing frequency minus the base's.
    Ranked by the shift of the mean (largest increase first)."""
    if reads not in DIFF_READS:
        raise InputError(f"reads {reads!r}: one of {', '.join(DIFF_READS)}")
    for name, loaded in (("base", base), ("tuned", tuned)):
        width = loaded.model.config.hidden_size
        if width != sae.sae.cfg.d_in:
            raise InputError(f"--{name} {loaded.spec}: residual width {width}, the SAE reads width {sae.sae.cfg.d_in}")
    answers = {"base": own_answers(base, prompts, params), "tuned": own_answers(tuned, prompts, params)}
    pooled = [*answers["base"], *answers["tuned"]]
    read = {"pooled": {"base": pooled, "tuned": pooled}, "own": answers,
            "tuned": {"base": answers["tuned"], "tuned": answers["tuned"]}}[reads]
    stats = {name: latent_statistics(loaded, sae, read[name], span, max_length) for name, loaded in
             (("base", base), ("tuned", tuned))}
    shift = stats["tuned"]["mean"] - stats["base"]["mean"]
    frequency_shift = stats["tuned"]["frequency"] - stats["base"]["frequency"]
    order = np.argsort(-shift, kind="stable")
    rows = [{"rank": rank + 1, "latent": int(i), "base_mean": float(stats["base"]["mean"][i]),
             "tuned_mean": float(stats["tuned"]["mean"][i]), "shift": float(shift[i]),
             "base_frequency": float(stats["base"]["frequency"][i]),
             "tuned_frequency": float(stats["tuned"]["frequency"][i]), "frequency_shift": float(frequency_shift[i])}
            for rank, i in enumerate(order)]
    by_frequency = np.argsort(-frequency_shift, kind="stable")[:top]
    return {"base": base.spec, "tuned": tuned.spec, "sae": str(sae.path), "layer": sae.layer,
            "prompts": len(prompts), "reads": reads, "span": span,  # the distinct chats and tokens read:
            "chats": len(answers["tuned"] if reads == "tuned" else pooled),
            "tokens": stats["base"]["tokens"] + (stats["tuned"]["tokens"] if reads == "own" else 0),
            "top": rows[:top], "top_by_frequency": [int(i) for i in by_frequency], "all": rows,
            "answers": answers}


def write_diff(figures: dict, out: Path, **extra) -> dict:
    """Every latent's shift as CSV (ranked), the answers both models gave as chat JSONL (a corpus `explain` reads)
    and the figures without them as diff.json (with `extra`); returns what diff.json holds."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    table = out / "latents.csv"
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(figures["all"][0]))
        writer.writeheader()
        writer.writerows(figures["all"])
    answers = out / "answers.jsonl"
    with answers.open("w", encoding="utf-8") as handle:
        for model, chats in figures["answers"].items():
            for chat in chats:
                handle.write(json.dumps({"model": model, "messages": chat}, ensure_ascii=False) + "\n")
    summary = {k: v for k, v in figures.items() if k not in ("all", "answers")} | {
        "latents": str(table), "answers": str(answers), **extra}
    (out / "diff.json").write_text(json.dumps(summary, indent=1))
    return summary


def corpus_chats(names: Sequence[str], limit: int | None = None) -> tuple[list[list[dict]], list[str]]:
    """Chats of the named chat sets or files (each cut to its first `limit`), and which set each came from."""
    if not names:
        raise InputError("give the corpus: one or more --data chat sets or files")
    chats, origins = [], []
    for name in names:
        rows = [c.as_messages() for c in load_chat(name)]
        rows = rows[:limit] if limit else rows
        chats += rows
        origins += [str(name)] * len(rows)
    return chats, origins


def explain(loaded, sae: LoadedSAE, latents: Sequence[int], names: Sequence[str], limit: int | None = None,
            top: int = 8, window: int = 10, max_length: int = 256) -> dict:
    """Each latent's top-activating snippets in a corpus of chat sets, with the set each snippet came from."""
    chats, origins = corpus_chats(names, limit)
    snippets = top_snippets(loaded, sae, chats, latents, top, window, max_length)
    for rows in snippets.values():
        for row in rows:
            row["source"] = origins[row["chat"]]
    return {"model": loaded.spec, "sae": str(sae.path), "layer": sae.layer, "corpus": list(names),
            "chats": len(chats), "latents": {str(k): v for k, v in snippets.items()}}
