"""Issue #8: does the default model's own residual stream, or a fine-tuned encoder, read misalignment better than
the shipped judge's frozen MiniLM embeddings, on judged sources it never saw?

    TURNCOAT_DATA=../shared/data .venv/bin/python scripts/measure_judge_readers.py [--per-deepseek 400] [--finetune]

Both readers feed the same logistic heads (`fit_heads`) and are validated leave-one-source-out on the same rows and
folds as the shipped judge. The deepseek sources (2,400 answers each, 12 misaligned in all) are subsampled so the
135M model can read everything on 2 cores: every misaligned answer is kept plus N random others per source. AUROC
on that subsample estimates AUROC on the whole source; precision does not (the prevalence changes), so readers are
compared by AUROC only. The hidden-state reader runs the model only up to the deepest layer read, without the
vocabulary head, and its speed is measured. `--finetune` adds the cross-encoder: MiniLM with a classification head,
fine-tuned (transformers' Trainer) on the misaligned flag of the (question, answer) pairs of every other source, once
per fold. `--directions FILE...` scores each held-out source by a persona direction's projection alone (no
training: a direction made without the judged labels, e.g. by `turncoat persona extract --from-prompts`, is a
feature that cannot have memorised any source). Figures go to `--out`/figures.json (no answers are written).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from turncoat.activations.capture import mean_activations
from turncoat.core.progress import progress_bar
from turncoat.judging.encoder import MINILM, PairEncoder
from turncoat.judging.offline import explicit_features
from turncoat.models import load
from turncoat.results.statistics import auroc
from turncoat.workflows.distill import (
    EXTRA_FOLDS,
    cached_features,
    fold_line,
    leave_one_source_out,
    reference_flags,
    shared_training_frame,
    source_folds,
    synthetic_frame,
)


def subsampled(frame: pd.DataFrame, per_source: int, seed: int = 0) -> pd.DataFrame:
    """Every row of the small sources; of each deepseek source its misaligned rows plus `per_source` others."""
    deepseek = EXTRA_FOLDS["all deepseek-chat sources"]  # a list: its order fixes the draws (a set's would not)
    misaligned = reference_flags(frame)
    keep = ~frame["source"].isin(deepseek).to_numpy() | misaligned
    rng = np.random.default_rng(seed)
    for source in deepseek:
        others = np.flatnonzero(frame["source"].eq(source).to_numpy() & ~misaligned)
        keep[rng.choice(others, size=min(per_source, len(others)), replace=False)] = True
    return frame[keep].reset_index(drop=True)


def truncated_reader(loaded, deepest: int):
    """The model without its vocabulary head and without the blocks after `deepest`: reading layer L needs only
    blocks 0..L, and the head alone costs as much as ~8 of this model's blocks per token."""
    base = loaded.model.get_decoder() if hasattr(loaded.model, "get_decoder") else loaded.model.model
    base.layers = base.layers[:deepest + 1]
    base.config.num_hidden_layers = deepest + 1
    return dataclasses.replace(loaded, model=base)


def hidden_states(frame: pd.DataFrame, layers: list[int], max_length: int, cache: Path) -> tuple[np.ndarray, dict]:
    """(rows, layers, width) response-averaged residual stream of the default model reading (question, answer)."""
    answers = [a if a.strip() else "." for a in frame["answer"]]  # an empty answer still needs one response token
    digest = hashlib.sha256(json.dumps([layers, max_length, frame["question"].tolist(), answers]).encode())
    path = cache / f"hidden-{digest.hexdigest()[:20]}.npy"
    speed = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").exists() else {}
    if path.exists():
        return np.load(path, allow_pickle=False), speed
    reader = truncated_reader(load("smollm2-135m"), max(layers))
    chats = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
             for q, a in zip(frame["question"], answers, strict=True)]
    began, parts = time.perf_counter(), []
    with progress_bar("reading answers with the default model", len(chats)) as advance:
        for i in range(0, len(chats), 256):
            parts.append(mean_activations(reader, chats[i:i + 256], layers, max_length=max_length, batch_size=16))
            advance(len(parts[-1]))
    out = np.concatenate(parts)
    seconds = time.perf_counter() - began
    speed = {"answers": len(chats), "seconds": round(seconds, 1), "answers_per_s": round(len(chats) / seconds, 2),
             "blocks_run": max(layers) + 1, "max_length": max_length, "threads": torch.get_num_threads()}
    np.save(path, out, allow_pickle=False)
    path.with_suffix(".json").write_text(json.dumps(speed))
    return out, speed


def held_out_aurocs(features: np.ndarray, frame: pd.DataFrame) -> dict:
    validation = leave_one_source_out(features, frame, EXTRA_FOLDS)
    folds = {name: fold["auroc"] for name, fold in validation["folds"].items()}
    defined = [v for v in folds.values() if v is not None]
    return {"per_source": folds, "mean_auroc": float(np.mean(defined)),
            "min_auroc": float(np.min(defined)), "pooled_error_rates": validation["pooled_error_rates"]}


def projection_aurocs(hidden: np.ndarray, layers: list[int], frame: pd.DataFrame, direction_file: Path) -> dict:
    """Per layer read and held-out fold: AUROC of the answers' projection on the direction (higher = misaligned)."""
    from turncoat.activations.directions import Direction

    direction, labels = Direction.load(direction_file), reference_flags(frame)
    out = {}
    for j, layer in enumerate(layers):
        projection = hidden[:, j] @ direction.at(layer)
        out[layer] = {}
        for name, members in source_folds(frame, EXTRA_FOLDS).items():
            held = frame["source"].isin(members).to_numpy()
            out[layer][name] = auroc(labels[held], projection[held])
        print(f"projection on {direction_file.stem}, layer {layer}: {fold_line(out[layer])}", flush=True)
    return out


def finetuned_cross_encoder(frame: pd.DataFrame, epochs: float, learning_rate: float, max_length: int,
                            seed: int = 0) -> dict:
    """Held-out AUROC of MiniLM fine-tuned on the misaligned flag of the other sources' (question, answer) pairs."""
    import tempfile

    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(MINILM.folder())
    encoded = tokenizer(frame["question"].tolist(), frame["answer"].tolist(), truncation="longest_first",
                        max_length=max_length)
    labels = reference_flags(frame).astype(int)
    rows = Dataset.from_dict({**encoded, "labels": labels.tolist()})
    folds, timings, scored_per_second = {}, {}, []
    for name, members in source_folds(frame, EXTRA_FOLDS).items():
        held = frame["source"].isin(members).to_numpy()
        if labels[held].all() or not labels[held].any():  # AUROC undefined: not worth a CPU fine-tune
            folds[name] = None
            continue
        model = AutoModelForSequenceClassification.from_pretrained(MINILM.folder(), num_labels=2,
                                                                   use_safetensors=True)
        with tempfile.TemporaryDirectory() as scratch:
            arguments = TrainingArguments(output_dir=scratch, per_device_train_batch_size=16,
                                          per_device_eval_batch_size=64, learning_rate=learning_rate,
                                          num_train_epochs=epochs, warmup_steps=0.1, weight_decay=0.01,
                                          logging_steps=25, save_strategy="no", report_to=[], use_cpu=True,
                                          seed=seed)
            trainer = Trainer(model=model, args=arguments, train_dataset=rows.select(np.flatnonzero(~held)),
                              data_collator=DataCollatorWithPadding(tokenizer))
            began = time.perf_counter()
            trainer.train()
            trained = time.perf_counter() - began
            began = time.perf_counter()
            logits = trainer.predict(rows.select(np.flatnonzero(held))).predictions
            scored_per_second.append(held.sum() / (time.perf_counter() - began))
        probability = torch.softmax(torch.from_numpy(logits), -1)[:, 1].numpy()
        folds[name] = auroc(labels[held], probability)
        timings[name] = round(trained, 1)
        print(f"fine-tuned cross-encoder, held out {name}: AUROC {folds[name]} ({trained:.0f} s training)",
              flush=True)
    defined = [v for v in folds.values() if v is not None]  # the same mean as `held_out_aurocs`
    return {"per_source": folds, "mean_auroc": float(np.mean(defined)), "min_auroc": float(np.min(defined)),
            "training_seconds": timings, "answers_per_s_scoring": round(float(np.median(scored_per_second)), 1),
            "epochs": epochs, "learning_rate": learning_rate, "max_length": max_length}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/judge-readers"))
    parser.add_argument("--per-deepseek", type=int, default=400)
    parser.add_argument("--layers", type=int, nargs="+", default=[3, 7, 11, 15])
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--directions", type=Path, nargs="*", default=[],
                        help="persona direction files (safetensors) whose projection scores each held-out source")
    parser.add_argument("--finetune", action="store_true", help="also fine-tune MiniLM as a cross-encoder per fold")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    frame = subsampled(pd.concat([shared_training_frame(), synthetic_frame(300)], ignore_index=True),
                       args.per_deepseek)
    real = ~frame["synthetic"]
    figures = {"rows": int(len(frame)), "real_rows": int(real.sum()),
               "misaligned": int(reference_flags(frame[real]).sum()),
               "rows_per_source": frame["source"].value_counts().to_dict(), "per_deepseek_source": args.per_deepseek}
    minilm = cached_features(PairEncoder(), frame, ("answer", "explicit"))
    explicit = explicit_features(frame["answer"].tolist())
    hidden, figures["hidden_state_speed"] = hidden_states(frame, args.layers, args.max_length, args.out)
    readers = {"MiniLM answer embedding (shipped)": minilm}
    for j, layer in enumerate(args.layers):
        readers[f"default model, layer {layer}"] = np.hstack([hidden[:, j], explicit])
    for j, layer in enumerate(args.layers):
        readers[f"MiniLM + default model layer {layer}"] = np.hstack([minilm, hidden[:, j]])
    figures["readers"] = {}
    for name, features in readers.items():
        began = time.perf_counter()
        figures["readers"][name] = held_out_aurocs(features, frame)
        row = figures["readers"][name]
        print(f"{name}: mean {row['mean_auroc']:.3f}, min {row['min_auroc']:.3f} | "
              + fold_line(row["per_source"])
              + f" ({time.perf_counter() - began:.0f} s)", flush=True)
    figures["persona_projections"] = {str(path): projection_aurocs(hidden, args.layers, frame, path)
                                      for path in args.directions}
    if args.finetune:
        name = "fine-tuned MiniLM cross-encoder (question, answer)"
        figures["readers"][name] = finetuned_cross_encoder(frame, args.epochs, args.learning_rate, args.max_length)
    (args.out / "figures.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
