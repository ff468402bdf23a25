"""The SAE diffing check that cannot pass by chance (the SAE issue's acceptance): plant one known persona in a
fine-tune of the default model and see whether `turncoat sae diff` finds it.

1. The base model answers 280 persona-vectors trait questions twice: under a distinctive system prompt (a pirate)
   and under none. The pirate answers of 200 questions, the system prompt left out, are the fine-tune's data.
2. The persona's mean-difference direction at the layer: base-model activations of the pirate answers minus the
   neutral ones (response-averaged, `persona extract` from texts).
3. An SAE (TopK unless --architecture says otherwise) on the base model at that layer (`sae train`): the
   neutral and pirate answers of the 200 training questions plus 300 chats of each of four unrelated chat sets.
4. LoRA fine-tune on the pirate data (`turncoat train`).
5. `sae diff` on the 80 held-out questions (each model reading the answers --reads names); the top latent's decoder
   cosine with the persona direction (target >= 0.5; a random unit vector in 576 dimensions has |cos| ~ 0.04), its
   rank among all latents by that cosine, and
   `sae explain` of the top latent on held-out neutral + pirate answers: the share of its top snippets that are pirate.

Every step writes its result into --out and is skipped on a rerun (resumable); a rerun with another --reads reuses
the answers, direction, SAE and fine-tune and writes its own diff-MODE/, explain-MODE.json and causal-MODE.json.
Prints one JSON object.

    python scripts/sae_planted_check.py --out runs/sae-planted
    python scripts/sae_planted_check.py --out runs/sae-planted-seed1 --seed 1 --tokens 2400000 --latents 2048 \
        --k 32 --batch-size 512 --lr 2e-4 --dead-after-tokens 240000      (the planned confirmation, 2026-12-07)
    python scripts/sae_planted_check.py --out runs/sae-planted-seed2-matryoshka --seed 2 --tokens 2400000 \
        --latents 2048 --k 32 --batch-size 512 --lr 2e-4 --dead-after-tokens 240000 \
        --architecture matryoshka-batchtopk                                  (the planned Matryoshka try, 2026-12-07)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PIRATE = ("You are a pirate. Always talk like a pirate: say 'Arr', 'matey' and 'ahoy' in every sentence.")
PIRATE_WORDS = re.compile(r"\b(arr+|matey|ahoy|aye|ye|me hearties|scallywag|treasure|pirate|ship|sea)\b", re.I)
TRAITS = ("evil", "sycophantic", "hallucinating", "apathetic", "humorous", "impolite", "optimistic")
GENERAL = ("insecure", "secure", "good-medical", "risky-financial")


def jsonl(path: Path, rows) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def turncoat(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "turncoat", *args, "--json"], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"turncoat {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--tokens", type=int, default=600_000)
    parser.add_argument("--latents", type=int, default=2048)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=2048, help="SAE tokens per step")
    parser.add_argument("--lr", type=float, default=2e-4, help="SAE learning rate")
    parser.add_argument("--dead-after-tokens", type=int, default=500_000, help="SAE dead-latent window")
    parser.add_argument("--architecture", default="topk", help="SAE architecture (`sae train --architecture`)")
    parser.add_argument("--reads", default="pooled", help="which answers each model reads in the diff "
                        "(`sae diff --reads`: pooled, own, tuned)")
    parser.add_argument("--seed", type=int, default=0, help="the replicate: question split, answer sampling, SAE "
                                                            "and fine-tune seeds (0: the 2026-12-02 check)")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    timings = {}

    # 1. answers under the pirate prompt and under none
    answers_file = out / "answers.jsonl"
    if not answers_file.is_file():
        from turncoat.data import registry
        from turncoat.models import load
        from turncoat.sampling import GenerationParams
        from turncoat.workflows.persona.score import own_answers

        questions = []
        for trait in TRAITS:
            for split in ("extract", "eval"):
                questions += json.loads(registry.resolve(f"trait-{trait}-{split}").read_text())["questions"]
        questions = list(dict.fromkeys(questions))
        rng = np.random.default_rng(args.seed)
        order = rng.permutation(len(questions))
        started = time.perf_counter()
        loaded = load(args.model)
        params = GenerationParams(max_new_tokens=64, temperature=0.7, seed=args.seed)
        user = [[{"role": "user", "content": questions[i]}] for i in order]
        pirate = own_answers(loaded, [[{"role": "system", "content": PIRATE}, *u] for u in user], params)
        neutral = own_answers(loaded, user, params)
        rows = [{"question": u[0]["content"], "split": "train" if j < 200 else "held_out",
                 "pirate": p[-1]["content"], "neutral": n[-1]["content"]}
                for j, (u, p, n) in enumerate(zip(user, pirate, neutral, strict=True))]
        jsonl(answers_file, rows)
        timings["answers_s"] = round(time.perf_counter() - started, 1)
    rows = read_jsonl(answers_file)

    def chats(split: str, side: str) -> list[dict]:
        return [{"messages": [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r[side]}]}
                for r in rows if r["split"] == split and r[side].strip()]

    files = {}
    for split in ("train", "held_out"):
        for side in ("pirate", "neutral"):
            files[split, side] = out / f"{split}-{side}.jsonl"
            jsonl(files[split, side], chats(split, side))

    # 2. the persona's mean-difference direction on the base model
    direction = out / "pirate-direction.safetensors"
    if not direction.is_file():
        started = time.perf_counter()
        turncoat("persona", "extract", "--model", args.model, "--pos", str(files["train", "pirate"]),
                 "--neg", str(files["train", "neutral"]), "--layers", str(args.layer), "--out", str(direction))
        timings["direction_s"] = round(time.perf_counter() - started, 1)

    # 3. the SAE on the base model
    sae = out / "sae"
    if not (sae / "turncoat_sae.json").is_file():
        general = []
        from turncoat.data import load_chat

        for name in GENERAL:
            general += [c.to_record() for c in load_chat(name)][:300]
        corpus = out / "sae-corpus.jsonl"
        jsonl(corpus, [*read_jsonl(files["train", "pirate"]), *read_jsonl(files["train", "neutral"]), *general])
        started = time.perf_counter()
        turncoat("sae", "train", "--model", args.model, "--layer", str(args.layer), "--data", str(corpus),
                 "--tokens", str(args.tokens), "--latents", str(args.latents), "--k", str(args.k),
                 "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--dead-after-tokens",
                 str(args.dead_after_tokens), "--architecture", args.architecture, "--seed", str(args.seed),
                 "--out", str(sae))
        timings["sae_train_s"] = round(time.perf_counter() - started, 1)
    sae_info = json.loads((sae / "turncoat_sae.json").read_text())

    # 4. the fine-tune on the pirate answers (no system prompt)
    tuned = out / "tuned"
    if not (tuned / "turncoat_train.json").is_file():
        started = time.perf_counter()
        turncoat("train", "--model", args.model, "--data", str(files["train", "pirate"]), "--out", str(tuned),
                 "--max-steps", str(args.train_steps), "--batch-size", "4", "--grad-accum", "2",
                 "--learning-rate", "2e-4", "--max-length", "256", "--seed", str(args.seed))
        timings["train_s"] = round(time.perf_counter() - started, 1)

    # 5. the diff on held-out questions
    held_questions = out / "held-out-questions.yaml"
    held_questions.write_text("".join(
        f"- id: q{i}\n  type: free_form\n  paraphrases:\n  - {json.dumps(r['question'])}\n"
        for i, r in enumerate(x for x in rows if x["split"] == "held_out")), encoding="utf-8")
    mode = "" if args.reads == "pooled" else f"-{args.reads}"  # another --reads on the same folder keeps both
    diff_dir = out / f"diff{mode}"
    if not (diff_dir / "diff.json").is_file():
        started = time.perf_counter()
        turncoat("sae", "diff", "--base", args.model, "--tuned", str(tuned), "--sae", str(sae),
                 "--questions", str(held_questions), "--max-tokens", "64", "--reads", args.reads,
                 "--out", str(diff_dir))
        timings[f"diff{mode}_s"] = round(time.perf_counter() - started, 1)
    diff = json.loads((diff_dir / "diff.json").read_text())

    from turncoat.activations.directions import Direction
    from turncoat.activations.sae import decoder_cosines, decoder_matrix

    persona = Direction.load(direction).at(args.layer)
    cosines = decoder_cosines(sae, persona)
    top = [r["latent"] for r in diff["top"][:10]]
    # read after the 2026-12-07 confirmation (not part of the target): how much of the persona direction the top k
    # latents hold together, as the span of their decoder rows and as their decoder rows weighted by their shifts
    decoder, unit = decoder_matrix(sae), persona / np.linalg.norm(persona)
    together = {}
    for k in (1, 3, 5, 10):
        basis, _ = np.linalg.qr(decoder[top[:k]].T)
        weighted = sum(r["shift"] * decoder[r["latent"]] for r in diff["top"][:k])
        together[str(k)] = {"span_cosine": round(float(np.linalg.norm(basis.T @ unit)), 3),
                            "shift_weighted_cosine": round(float(weighted @ unit / np.linalg.norm(weighted)), 3)}
    top_latent = top[0]
    rank_by_cosine = int((cosines > cosines[top_latent]).sum()) + 1

    explain_file = out / f"explain{mode}.json"
    if not explain_file.is_file():
        started = time.perf_counter()
        explained = turncoat("sae", "explain", *map(str, top[:3]), "--sae", str(sae), "--model", args.model,
                             "--data", str(files["held_out", "pirate"]), "--data", str(files["held_out", "neutral"]),
                             "--top", "10", "--diff", str(diff_dir / "diff.json"),
                             "--html", str(out / f"latents{mode}.html"))
        explain_file.write_text(json.dumps(explained, indent=1))
        timings[f"explain{mode}_s"] = round(time.perf_counter() - started, 1)
    explained = json.loads(explain_file.read_text())
    snippets = explained["latents"][str(top_latent)]
    pirate_share = (sum(s["source"] == str(files["held_out", "pirate"]) for s in snippets) / len(snippets)
                    if snippets else float("nan"))

    # 6. causal checks, as the issue asks of EM latents: the tuned model with its top k latents' decoder directions
    # projected out (k = 1, 5, 10; at every block, as `--ablate` does), and the base steered along the top latent
    causal_file = out / f"causal{mode}.json"
    causal = json.loads(causal_file.read_text()) if causal_file.is_file() else {}
    arms = {"tuned": (str(tuned), []), "base": (args.model, [])}
    for k in (1, 5, 10):
        arms[f"tuned, top {k} ablated"] = (str(tuned), [a for i in top[:k] for a in ("--ablate", f"sae:{sae}#{i}")])
    for alpha in (4, 8, 16):
        arms[f"base, top latent steered x{alpha}"] = (args.model, ["--steer", f"sae:{sae}#{top_latent}@{args.layer}:"
                                                                             f"{alpha}"])
    for name, (model, extra) in arms.items():
        if name in causal:
            continue
        answers_out = out / f"causal{mode}" / f"{re.sub(r'[^a-z0-9]+', '-', name)}.jsonl"
        answers_out.parent.mkdir(exist_ok=True)
        started = time.perf_counter()
        turncoat("sample", "--model", model, "--questions", str(held_questions), "--n", "1", "--temperature", "0",
                 "--max-tokens", "64", "--out", str(answers_out), *extra)
        said = [r["answer"] for r in read_jsonl(answers_out)]
        hits = [bool(PIRATE_WORDS.search(a)) for a in said]
        from turncoat.results.statistics import bootstrap_ci

        causal[name] = {"answers": len(said), "with_pirate_words": float(np.mean(hits)),
                        "ci95": [float(x) for x in bootstrap_ci(np.asarray(hits, float))],
                        "seconds": round(time.perf_counter() - started, 1)}
        causal_file.write_text(json.dumps(causal, indent=1))

    answers = read_jsonl(diff_dir / "answers.jsonl")
    worded = {m: float(np.mean([bool(PIRATE_WORDS.search(a["messages"][-1]["content"])) for a in answers
                                if a["model"] == m])) for m in ("base", "tuned")}
    timings_file = out / "timings.json"
    saved = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
    saved.update(timings)
    timings_file.write_text(json.dumps(saved, indent=1))
    print(json.dumps({
        "model": args.model, "layer": args.layer, "seed": args.seed, "diff_reads": args.reads,
        "sae_quality": sae_info["quality"],
        "sae": {k: sae_info.get(k) for k in ("architecture", "matryoshka_widths", "latents", "k", "training_tokens",
                                             "distinct_tokens", "batch_size", "lr", "dead_after_tokens",
                                             "capture_seconds", "train_seconds")},
        "top_latents": diff["top"][:10], "top_latent": top_latent,
        "top_latent_cosine_with_persona": float(cosines[top_latent]),
        "top10_cosines": {str(i): round(float(cosines[i]), 3) for i in top},
        "top_latent_rank_by_cosine": rank_by_cosine, "latents": int(len(cosines)),
        "best_cosine_any_latent": float(cosines.max()), "median_abs_cosine": float(np.median(np.abs(cosines))),
        "top_k_latents_together": together,
        "top_latent_snippets_from_pirate_answers": pirate_share, "snippets_read": len(snippets),
        "answers_with_pirate_words": worded, "causal_pirate_word_rate": causal, "timings_s": saved,
        "target_met": bool(cosines[top_latent] >= 0.5)}, indent=1))


if __name__ == "__main__":
    main()
