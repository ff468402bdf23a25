"""Issue #8: does the default model's own residual stream, or a fine-tuned encoder, read misalignment better than
the shipped judge's frozen MiniLM embeddings, on judged sources it never saw?

    TURNCOAT_DATA=../shared/data .venv/bin/python scripts/measure_judge_readers.py \
        [--per-deepseek 400] [--per-source 600] [--finetune] \
        [--reader smollm2-135m=3,7,11,15] [--reader qwen2.5-coder-0.5b=4,8,12,16] [--dtype bfloat16]

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
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from turncoat.core.progress import progress_bar
from turncoat.judging.encoder import MINILM, PairEncoder
from turncoat.judging.offline import explicit_features
from turncoat.judging.reader import ResidualReader
from turncoat.results.statistics import auroc
from turncoat.workflows.distill import (
    EXTRA_FOLDS,
    cached_embeddings,
    cached_features,
    fold_line,
    leave_one_source_out,
    readable_subsample,
    reference_flags,
    shared_training_frame,
    source_folds,
    synthetic_frame,
    validate_choosing_layer,
)


def hidden_states(model: str, frame: pd.DataFrame, layers: list[int], max_length: int, cache: Path,
                  dtype: str = "float32") -> tuple[np.ndarray, dict]:
    """(rows, layers, width) answer-averaged residual stream of `model` reading the (question, answer) chat, kept in
    the distillation cache (`scripts/build_offline_judge.py` on the same rows reads it back)."""
    reader = ResidualReader(model, layers, max_length=max_length, dtype=dtype)
    precision = "" if dtype == "float32" else f"-{dtype}"
    speed_file = cache / f"speed-{model.replace('/', '_')}-{'-'.join(map(str, layers))}-{max_length}{precision}.json"
    began = time.perf_counter()
    with progress_bar(f"reading answers with {model}", len(frame)) as advance:
        read = cached_embeddings(reader, "residual", frame["question"].tolist(), frame["answer"].tolist(), advance)
    seconds = time.perf_counter() - began
    if not speed_file.exists() and seconds > 1:  # read now, not from the cache: how fast was it
        speed_file.write_text(json.dumps({
            "model": model, "answers": len(frame), "seconds": round(seconds, 1),
            "answers_per_s": round(len(frame) / seconds, 2), "blocks_run": max(layers) + 1,
            "max_length": max_length, "dtype": dtype, "threads": torch.get_num_threads()}))
    speed = json.loads(speed_file.read_text()) if speed_file.exists() else {}
    return read.reshape(len(frame), len(layers), -1), speed


def held_out_aurocs(features: np.ndarray, frame: pd.DataFrame) -> dict:
    validation = leave_one_source_out(features, frame, EXTRA_FOLDS)
    return summary(validation)


def summary(validation: dict) -> dict:
    folds = {name: fold["auroc"] for name, fold in validation["folds"].items()}
    defined = [v for v in folds.values() if v is not None]
    return {"per_source": folds, "mean_auroc": float(np.mean(defined)), "min_auroc": float(np.min(defined)),
            "corrected_error_pp": {name: fold["corrected_error_pp"] for name, fold in validation["folds"].items()},
            "aligned_spearman": {name: fold["aligned"].get("spearman") for name, fold in validation["folds"].items()},
            "pooled_error_rates": validation["pooled_error_rates"]}


def held_out_with_chosen_layer(blocks: list[np.ndarray], layers: list[int], frame: pd.DataFrame) -> dict:
    """Leave-one-source-out where each fold's layer is chosen on that fold's training sources only."""
    validation, chosen = validate_choosing_layer(blocks, frame, layers, EXTRA_FOLDS)
    return summary(validation) | {"layer_chosen": chosen}


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


def reader_spec(text: str) -> tuple[str, list[int]]:
    model, _, layers = text.partition("=")
    return model, [int(v) for v in layers.split(",")] if layers else [3, 7, 11, 15]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/judge-readers"))
    parser.add_argument("--per-deepseek", type=int, default=400)
    parser.add_argument("--per-source", type=int, default=600)
    parser.add_argument("--reader", type=reader_spec, action="append", dest="readers",
                        help="MODEL=L1,L2,...: a model whose residual stream after those blocks is read (repeatable;"
                             " default smollm2-135m=3,7,11,15)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="precision the readers run in (bf16 matmuls are ~2.4x faster on this CPU)")
    parser.add_argument("--per-layer", action=argparse.BooleanOptionalAction, default=True,
                        help="also validate each candidate layer on its own (besides the layer chosen per fold)")
    parser.add_argument("--ensemble", action=argparse.BooleanOptionalAction, default=True,
                        help="also validate MiniLM + the reader (layer chosen per fold)")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="validate the shipped MiniLM reader on the same rows")
    parser.add_argument("--directions", type=Path, nargs="*", default=[],
                        help="persona direction files (safetensors) whose projection scores each held-out source "
                             "(read with the first reader)")
    parser.add_argument("--finetune", action="store_true", help="also fine-tune MiniLM as a cross-encoder per fold")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    args = parser.parse_args()
    readers = args.readers or [reader_spec("smollm2-135m")]
    args.out.mkdir(parents=True, exist_ok=True)
    frame = readable_subsample(pd.concat([shared_training_frame(), synthetic_frame(300)], ignore_index=True),
                               args.per_deepseek, args.per_source)
    real = ~frame["synthetic"]
    figures = {"rows": int(len(frame)), "real_rows": int(real.sum()),
               "misaligned": int(reference_flags(frame[real]).sum()),
               "rows_per_source": frame["source"].value_counts().to_dict(),
               "misaligned_per_source": {s: int(reference_flags(g).sum()) for s, g in frame[real].groupby("source")},
               "per_deepseek_source": args.per_deepseek, "per_source": args.per_source,
               "hidden_state_speed": {}, "readers": {}}

    def report(name: str, row: dict, began: float) -> None:
        figures["readers"][name] = row
        print(f"{name}: mean {row['mean_auroc']:.3f}, min {row['min_auroc']:.3f} | " + fold_line(row["per_source"])
              + f" ({time.perf_counter() - began:.0f} s)", flush=True)
        (args.out / "figures.json").write_text(json.dumps(figures, indent=2))

    minilm = cached_features(PairEncoder(), frame, ("answer", "explicit"))
    explicit = explicit_features(frame["answer"].tolist())
    if args.baseline:
        began = time.perf_counter()
        report("MiniLM answer embedding (offline-fast)", held_out_aurocs(minilm, frame), began)
    first_hidden = None
    for model, layers in readers:
        hidden, figures["hidden_state_speed"][model] = hidden_states(model, frame, layers, args.max_length, args.out,
                                                                    args.dtype)
        first_hidden = hidden if first_hidden is None else first_hidden
        blocks = [np.hstack([hidden[:, j], explicit]) for j in range(len(layers))]
        for j, layer in enumerate(layers if args.per_layer else []):
            began = time.perf_counter()
            report(f"{model}, layer {layer}", held_out_aurocs(blocks[j], frame), began)
        began = time.perf_counter()
        report(f"{model}, layer chosen per fold on its training sources",
               held_out_with_chosen_layer(blocks, layers, frame), began)
        if not args.ensemble:
            continue
        began = time.perf_counter()
        report(f"MiniLM + {model}, layer chosen per fold",
               held_out_with_chosen_layer([np.hstack([minilm, hidden[:, j]]) for j in range(len(layers))], layers,
                                          frame), began)
    figures["persona_projections"] = {str(path): projection_aurocs(first_hidden, readers[0][1], frame, path)
                                      for path in args.directions}
    if args.finetune:
        name = "fine-tuned MiniLM cross-encoder (question, answer)"
        figures["readers"][name] = finetuned_cross_encoder(frame, args.epochs, args.learning_rate, args.max_length)
    (args.out / "figures.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
