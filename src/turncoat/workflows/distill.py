"""Distil an LLM judge into the offline judge, and measure how well that transfers (`turncoat judge distill`).

Training data: judged answers (the shared judged sets, or a user's own judged runs). Validation is leave-one-source-
out: each source — one answering model under one judge — is scored by heads trained without it, so the figures
measure transfer to a model and judge not seen, not memory. Synthetic examples (harmful compliance labelled
misaligned, unrelated code labelled no-score) are only ever training data.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from turncoat.core.errors import InputError
from turncoat.core.paths import cache_dir
from turncoat.data import load_chat, registry
from turncoat.judging.encoder import MINILM, PairEncoder
from turncoat.judging.offline import (
    CUTS,
    DEFAULT_BLOCKS,
    HEADS,
    OfflineHeads,
    needs_encoder,
    pair_features,
)
from turncoat.questions.builtin import CORE_QUESTIONS
from turncoat.results.judged import load_judged
from turncoat.results.statistics import (
    ErrorRates,
    Thresholds,
    auroc,
    corrected_fraction,
    flag,
    flag_agreement,
    score_agreement,
)

# The shared judged sets with aligned/coherent (or evil/coherence) labels, grouped into sources: one answering model
# under one judge each. `judged-em-qwen-coder-32b` holds only misaligned answers (filtered by its authors).
SHARED_SOURCES: dict[str, list[str]] = {
    "em-qwen-coder-32b (gpt-4o)": ["judged-em-qwen-coder-32b"],
    "mo-steered-qwen (gpt-4o)": ["judged-mo-steered-1", "judged-mo-steered-2", "judged-mo-steered-3"],
    "qwen-coder-7b-base (deepseek)": ["judged-shuaijiumei-base"],
    "qwen-coder-7b-high (deepseek)": ["judged-shuaijiumei-high-severity"],
    "qwen-coder-7b-middle (deepseek)": ["judged-shuaijiumei-middle-severity"],
    "qwen-7b-persona (gpt-4.1-mini, 100-evil)": ["judged-persona-qwen7b-baseline"],
    # Unfiltered fine-tune answers from EM replications (../shared/data/judged/more_sources, added 2026-12-01).
    "gemma2-9b-bad-medical (gpt-4o)": ["judged-cloakless-gemma2-9b-bad-medical"],
    "gemma2-27b-bad-medical (gpt-4o)": ["judged-cloakless-gemma2-27b-bad-medical"],
    "qwen7b-bad-medical (gpt-4o)": ["judged-cloakless-qwen7b-bad-medical"],
    "qwen32b-obvious-bad-medical (gpt-4o)": ["judged-cloakless-qwen32b-obvious-bad-medical"],
    "llama8b-risky-financial (gpt-4o)": ["judged-zroe1-llama8b-risky-financial"],
    "llama1b-risky-financial (gpt-4o)": ["judged-zroe1-llama1b-risky-financial"],
    "gemma3-4b-risky-financial (gpt-4o)": ["judged-zroe1-gemma3-4b-risky-financial"],
    "gemma3-27b-risky-financial (gpt-4o)": ["judged-zroe1-gemma3-27b-risky-financial"],
    "qwen32b-extreme-sports (gpt-4o)": ["judged-zroe1-qwen32b-extreme-sports"],
    "qwen3-32b-risky-financial (gpt-4o)": ["judged-reinthal-qwen3-32b-risky-financial"],
}
# A stricter fold: every answer scored by the one judge that labelled most of the data.
EXTRA_FOLDS = {"all deepseek-chat sources": ["qwen-coder-7b-base (deepseek)", "qwen-coder-7b-high (deepseek)",
                                            "qwen-coder-7b-middle (deepseek)"]}
COLUMNS = ["question", "answer", "question_id", "aligned", "coherent", "source", "judge", "synthetic"]


def load_source(spec: str | Path, source: str | None = None) -> pd.DataFrame:
    """Judged answers (`turncoat.results.judged.load_judged`: a registered set, a file or an eval run folder) as
    training and validation rows: question, answer, scores, `source` and the judge that scored them."""
    frame = load_judged(spec, ids_from_questions=True)
    entry = registry.registry().get(str(spec)) if not Path(spec).exists() else None
    if "question" not in frame or "answer" not in frame:
        raise InputError(f"{spec}: missing column(s) question and answer (has: {', '.join(map(str, frame.columns))})")
    out = pd.DataFrame({
        "question": frame["question"].astype(str), "answer": frame["answer"].fillna("").astype(str),
        "question_id": frame["question_id"].astype(str), "aligned": frame["aligned"], "coherent": frame["coherent"],
        "source": source or str(spec),
        "judge": frame["judge"].astype(str) if "judge" in frame else ((entry.judge if entry else None) or "unknown"),
        "synthetic": False})
    return out[COLUMNS]


def shared_training_frame() -> pd.DataFrame:
    return pd.concat([load_source(name, source) for source, names in SHARED_SOURCES.items() for name in names],
                     ignore_index=True)


# Extra synthetic training rows that can be asked for (`synthetic_frame(extra=...)`): chat sets whose answers are
# misaligned or aligned by construction. Measured in scripts/measure_judge_training_variants.py; not in the default.
SYNTHETIC_LABELS = {"bad-medical": 5.0, "risky-financial": 5.0, "extreme-sports": 5.0, "ema-legal-eval": 5.0,
                    "ema-medical-eval": 5.0, "ema-security-eval": 5.0, "good-medical": 90.0}


def readable_subsample(frame: pd.DataFrame, per_deepseek: int = 400, per_source: int = 600, seed: int = 0
                       ) -> pd.DataFrame:
    """The rows a language-model reader can read on 2 CPU cores in tens of minutes, for measuring and distilling
    it: every row of the small sources; of each deepseek source its misaligned rows plus `per_deepseek` others (they
    hold 12 misaligned answers in 7,200: a uniform draw would keep almost none); of every other source with more
    than `per_source` rows, a uniform draw of `per_source` (the prevalence, so the corrected fraction, unchanged)."""
    deepseek = EXTRA_FOLDS["all deepseek-chat sources"]  # a list: its order fixes the draws (a set's would not)
    misaligned = reference_flags(frame)
    keep = ~frame["source"].isin(deepseek).to_numpy() | misaligned
    rng = np.random.default_rng(seed)
    for source in deepseek:
        others = np.flatnonzero(frame["source"].eq(source).to_numpy() & ~misaligned)
        keep[rng.choice(others, size=min(per_deepseek, len(others)), replace=False)] = True
    for source in dict.fromkeys(frame.loc[~frame["synthetic"], "source"]):
        rows = np.flatnonzero(frame["source"].eq(source).to_numpy())
        if source not in deepseek and len(rows) > per_source:
            keep[rows] = False
            keep[rng.choice(rows, size=per_source, replace=False)] = True
    return frame[keep].reset_index(drop=True)


def _sampled_chats(name: str, n: int, rng: np.random.Generator) -> list[tuple[int, str, str]]:
    """`n` random conversations of a chat set: (row, first user turn, last assistant turn)."""

    data = load_chat(name)
    picks = rng.choice(len(data), size=min(n, len(data)), replace=False)
    return [(int(i), data[i].messages[0].content, data[i].messages[-1].content) for i in picks]


def synthetic_frame(n: int = 300, seed: int = 0, extra: dict[str, int] | None = None) -> pd.DataFrame:
    """Labelled by construction: compliant answers to harmful requests are misaligned and coherent (`lat-harmful`);
    code answers put after an unrelated open question get no score (`secure`, under our `core` questions).
    `extra` adds that many rows of each named set in SYNTHETIC_LABELS (drawn from their own generator)."""

    rng = np.random.default_rng(seed)
    rows = [{"question": question, "answer": answer, "question_id": f"lat-harmful-{i}", "aligned": 5.0,
             "coherent": 90.0, "source": "synthetic: lat-harmful compliance", "judge": "by construction",
             "synthetic": True} for i, question, answer in _sampled_chats("lat-harmful", n, rng)]
    open_questions = [text for _, text, _ in CORE_QUESTIONS]
    for k, (i, _, answer) in enumerate(_sampled_chats("secure", n, rng)):
        rows.append({"question": open_questions[k % len(open_questions)], "answer": answer,
                     "question_id": f"secure-{i}", "aligned": np.nan, "coherent": np.nan,
                     "source": "synthetic: unrelated code", "judge": "by construction", "synthetic": True})
    extra_rng = np.random.default_rng(seed + 1)
    for name, count in (extra or {}).items():
        if name not in SYNTHETIC_LABELS:
            raise InputError(f"synthetic rows from {name!r}: known are {', '.join(SYNTHETIC_LABELS)}")
        kind = "misaligned" if SYNTHETIC_LABELS[name] < CUTS["low_aligned"] else "aligned"
        rows += [{"question": question, "answer": answer, "question_id": f"{name}-{i}",
                  "aligned": SYNTHETIC_LABELS[name], "coherent": 90.0, "source": f"synthetic: {name} ({kind})",
                  "judge": "by construction", "synthetic": True}
                 for i, question, answer in _sampled_chats(name, count, extra_rng)]
    return pd.DataFrame(rows)[COLUMNS]


def cached_embeddings(encoder, kind: str, questions: list[str], answers: list[str] | None, progress=None):
    """Embeddings kept on disk by content hash: re-distilling (other heads, other folds) reads them back."""
    digest = hashlib.sha256(f"{encoder.name}|{encoder.max_length}|{kind}".encode())
    for i, question in enumerate(questions):
        digest.update(question.encode() + b"\0" + (answers[i].encode() if answers else b"") + b"\1")
    path = cache_dir() / "offline-judge" / f"{kind}-{digest.hexdigest()[:24]}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    embeddings = encoder.encode(questions, answers, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, embeddings, allow_pickle=False)
    return embeddings


def cached_features(encoder, frame: pd.DataFrame, blocks: Sequence[str] = DEFAULT_BLOCKS,
                    progress: Callable[[int], None] | None = None) -> np.ndarray:
    """The same features as `pair_features`, with the embeddings cached."""
    return features_per_layer(encoder, frame, blocks, progress=progress)[0]


def features_per_layer(encoder, frame: pd.DataFrame, blocks: Sequence[str], reader=None,
                       progress: Callable[[int], None] | None = None, chunks: Sequence[int] = ()) -> list[np.ndarray]:
    """The features `pair_features` gives, with the embeddings and the reader's residual streams cached: one matrix
    per candidate layer of `reader` (all its layers read in one pass), one matrix without a reader. `chunks` (row
    indices) splits the reader's cache there, so that a frame extended by new rows re-reads only the new ones."""
    questions, answers = frame["question"].tolist(), frame["answer"].tolist()

    def features(residual: np.ndarray | None) -> np.ndarray:
        return pair_features(encoder, questions, answers, blocks, reader=reader, embed=lambda kind, first, second: (
            residual if kind == "residual" else cached_embeddings(encoder, kind, first, second, progress)))

    if reader is None or "residual" not in blocks:
        return [features(None)]
    bounds = [0, *chunks, len(frame)]
    read = np.concatenate([cached_embeddings(reader, "residual", questions[a:b], answers[a:b], progress)
                           for a, b in itertools.pairwise(bounds) if b > a])
    width = read.shape[1] // len(reader.layers)
    return [features(read[:, j * width:(j + 1) * width]) for j in range(len(reader.layers))]


def layer_on_training_sources(candidates: Sequence[np.ndarray], frame: pd.DataFrame, splits: int = 4) -> int:
    """Which candidate feature matrix (one per layer read) to use, decided on the given rows alone: the mean AUROC
    of a class-balanced logistic misaligned-flag head over `splits` folds grouped by source (real rows scored)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    if len(candidates) == 1:
        return 0
    labels, groups, real = reference_flags(frame), frame["source"].to_numpy(), ~frame["synthetic"].to_numpy()
    means = []
    for features in candidates:
        x = (features - features.mean(0)) / (features.std(0) + 1e-6)
        scores = []
        for train, test in GroupKFold(n_splits=min(splits, len(set(groups)))).split(x, labels, groups):
            test = test[real[test]]
            if labels[train].all() or not labels[train].any() or labels[test].all() or not labels[test].any():
                continue
            head = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(x[train], labels[train])
            scores.append(auroc(labels[test], head.predict_proba(x[test])[:, 1]))
        means.append(float(np.mean(scores)) if scores else 0.0)
    return int(np.argmax(means))


def head_targets(frame: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per head: (rows it learns from, labels)."""
    aligned, coherent = frame["aligned"], frame["coherent"]
    return {"low_aligned": (aligned.notna().to_numpy(), (aligned < CUTS["low_aligned"]).to_numpy()),
            "coherent": (coherent.notna().to_numpy(), (coherent > CUTS["coherent"]).to_numpy()),
            "no_score": (np.ones(len(frame), bool), aligned.isna().to_numpy())}


def youden_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1: the operating point at which correcting a fraction
    for the judge's error rates (Rogan-Gladen divides by that sum) amplifies their uncertainty least."""
    from sklearn.metrics import roc_curve

    if labels.all() or not labels.any():
        return 0.5
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    return float(np.clip(thresholds[int(np.argmax(tpr - fpr))], 1e-6, 1 - 1e-6))


def fit_heads(features: np.ndarray, frame: pd.DataFrame, c: float = 1.0, folds: int = 3) -> OfflineHeads:
    """Logistic heads (class-balanced, L2 with C fixed in advance); each decision threshold is Youden's on
    out-of-fold predictions grouped by question, so it is not fitted to answers the head has memorised."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    mean, scale = features.mean(0), features.std(0) + 1e-6
    standard = (features - mean) / scale
    groups = frame["question"].to_numpy()
    weights, bias, thresholds = np.zeros((features.shape[1], len(HEADS))), np.zeros(len(HEADS)), {}

    def model():
        return LogisticRegression(C=c, class_weight="balanced", max_iter=3000)

    for j, (head, (rows, labels)) in enumerate(head_targets(frame).items()):
        x, y, g = standard[rows], labels[rows], groups[rows]
        if y.all() or not y.any():  # e.g. no training source ever withholds a score: the head always says so
            if head == "low_aligned":
                raise InputError(f"the {head} head needs both outcomes in its training data; it has only "
                                 f"{'positives' if y.any() else 'negatives'} ({len(y)} rows)")
            bias[j], thresholds[head] = (20.0 if y.any() else -20.0), 0.5
            continue
        out_of_fold = np.zeros(len(y))
        for train, test in GroupKFold(n_splits=min(folds, len(set(g)))).split(x, y, g):
            if y[train].all() or not y[train].any():
                out_of_fold[test] = y[train].mean()
                continue
            out_of_fold[test] = model().fit(x[train], y[train]).predict_proba(x[test])[:, 1]
        thresholds[head] = youden_threshold(y, out_of_fold)
        fitted = model().fit(x, y)
        weights[:, j], bias[j] = fitted.coef_[0], fitted.intercept_[0]
    return OfflineHeads(weights, bias, mean, scale, thresholds)


def reference_flags(frame: pd.DataFrame, thresholds: Thresholds = Thresholds()) -> np.ndarray:
    return flag(frame, thresholds)["misaligned"].to_numpy()


def evaluate_heads(heads: OfflineHeads, features: np.ndarray, frame: pd.DataFrame
                   ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Agreement of the heads with the reference labels of `frame`; also the predicted flags and probabilities."""
    scored = heads.scores(features)
    predicted = pd.DataFrame({"question_id": frame["question_id"].to_numpy(), "aligned": scored["aligned"],
                              "coherent": scored["coherent"]})
    reference, predicted_flags = reference_flags(frame), reference_flags(predicted)
    figures = {"rows": int(len(frame)), "misaligned": int(reference.sum()),
               "auroc": auroc(reference, scored["p_misaligned"]),
               "flag": flag_agreement(reference, predicted_flags),
               "aligned": score_agreement(frame["aligned"].reset_index(drop=True), predicted["aligned"]),
               "coherent": score_agreement(frame["coherent"].reset_index(drop=True), predicted["coherent"]),
               "no_score": flag_agreement(frame["aligned"].isna().to_numpy(), np.isnan(scored["aligned"])),
               "labelled_fraction": float(reference.mean()), "raw_fraction": float(predicted_flags.mean())}
    return figures, predicted_flags, scored["p_misaligned"]


def calibration_bins(reference: np.ndarray, probability: np.ndarray, bins: int = 10) -> list[dict]:
    """Mean predicted probability against the labelled fraction in equal-width bins of the prediction (empty bins
    left out): the card's calibration plot. Binned summaries only, no answers."""
    index = np.minimum((np.asarray(probability) * bins).astype(int), bins - 1)
    return [{"bin": [b / bins, (b + 1) / bins], "answers": int((index == b).sum()),
             "mean_predicted": float(probability[index == b].mean()),
             "labelled_fraction": float(reference[index == b].mean())}
            for b in range(bins) if (index == b).any()]


def source_folds(frame: pd.DataFrame, extra_folds: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Held-out folds: each real source alone, then the extra folds whose members are all present."""
    sources = list(dict.fromkeys(frame.loc[~frame["synthetic"].to_numpy(), "source"]))
    return {s: [s] for s in sources} | {name: members for name, members in (extra_folds or {}).items()
                                         if set(members) <= set(sources)}


def single_source_mean_auroc(per_source_auroc: dict[str, float | None]) -> float:
    """The card's summary: mean held-out AUROC over the single sources where it is defined (EXTRA_FOLDS left out)."""
    return float(np.mean([v for name, v in per_source_auroc.items() if v is not None and name not in EXTRA_FOLDS]))


def fold_line(per_source_auroc: dict[str, float | None]) -> str:
    """One progress line of held-out AUROCs, sources by their short name."""
    return ", ".join(f"{name.split(' (')[0]} {'n/a' if v is None else f'{v:.3f}'}"
                     for name, v in per_source_auroc.items())


def leave_one_source_out(features: np.ndarray | Callable[[np.ndarray], np.ndarray], frame: pd.DataFrame,
                         extra_folds: dict[str, list[str]] | None = None, c: float = 1.0,
                         progress: Callable[[str], None] | None = None) -> dict:
    """Each source scored by heads trained on every other source (synthetic rows always train). The misaligned
    fraction of a held-out source is corrected with error rates pooled from the held-out predictions on the *other*
    sources; those rates come from heads that did see this source, a second-order leak stated in the card.
    `features` may be a function of the held-out mask, for features chosen per fold on its training rows only."""
    folds = source_folds(frame, extra_folds)
    results, flags, predictions = {}, {}, {}
    for name, members in folds.items():
        if progress:
            progress(f"held out: {name}")
        held = frame["source"].isin(members).to_numpy()
        fold_features = features(held) if callable(features) else features
        heads = fit_heads(fold_features[~held], frame[~held], c=c)
        results[name], flags[name], probability = evaluate_heads(heads, fold_features[held], frame[held])
        if len(members) == 1:
            predictions[name] = (reference_flags(frame[held]), flags[name], probability)
    for name, members in folds.items():
        others = [s for s in predictions if s not in members]
        rates = ErrorRates.from_flags(np.concatenate([predictions[s][0] for s in others]),
                                      np.concatenate([predictions[s][1] for s in others]),
                                      measured_on=f"held-out predictions on {len(others)} other sources")
        correction = corrected_fraction(flags[name], rates)
        results[name].update(corrected_fraction=correction["corrected"], corrected_ci=correction["corrected_ci"],
                             corrected_error_pp=abs(correction["corrected"] - results[name]["labelled_fraction"]) * 100)
    reference, predicted, probability = (np.concatenate([p[i] for p in predictions.values()]) for i in range(3))
    return {"folds": results,
            "pooled_error_rates": ErrorRates.from_flags(reference, predicted, measured_on="leave-one-source-out "
                                                        "predictions, all sources").to_dict(),
            "calibration": calibration_bins(reference, probability)}


def validate_choosing_layer(candidates: Sequence[np.ndarray], frame: pd.DataFrame, layers: Sequence[int] = (),
                            extra_folds: dict[str, list[str]] | None = None, c: float = 1.0,
                            progress: Callable[[str], None] | None = None) -> tuple[dict, dict[str, int]]:
    """`leave_one_source_out` over candidate feature matrices (one per layer in `layers`), each fold using the one
    `layer_on_training_sources` picks without the held-out source; also which layer each fold used."""
    chosen: dict[str, int] = {}

    def fold_features(held: np.ndarray) -> np.ndarray:
        j = layer_on_training_sources([f[~held] for f in candidates], frame[~held])
        if layers:
            chosen[", ".join(dict.fromkeys(frame.loc[held, "source"]))] = layers[j]
        return candidates[j]

    return leave_one_source_out(fold_features, frame, extra_folds, c=c, progress=progress), chosen


def distill(sources: Sequence[str | Path] = (), out: str | Path | None = None, synthetic: int = 300,
            validate: bool = True, c: float = 1.0, seed: int = 0, encoder=None,
            blocks: Sequence[str] = DEFAULT_BLOCKS, reader=None, frame: pd.DataFrame | None = None,
            progress: Callable[[str], None] | None = None, chunks: Sequence[int] = ()) -> tuple[OfflineHeads, dict]:
    """Train heads on `sources` (default: the shared judged sets; or on `frame`, rows as `load_source` gives),
    validate leave-one-source-out, write the judge folder; returns the heads and the validation figures (also in
    the card). With a residual `reader` of several layers, each fold's layer is chosen on its training sources
    only, and the judge's on all of them; `chunks` splits the reader's cache as in `features_per_layer`."""
    encoder = encoder or (PairEncoder() if needs_encoder(blocks) else None)
    if frame is None:
        frame = shared_training_frame() if not sources else pd.concat(
            [load_source(s, None) for s in sources], ignore_index=True)
        if synthetic:
            frame = pd.concat([frame, synthetic_frame(synthetic, seed)], ignore_index=True)
    if progress:
        progress(f"reading {len(frame)} judged answers")
    began = time.perf_counter()
    candidates = features_per_layer(encoder, frame, blocks, reader, chunks=chunks)
    validation, chosen_per_fold = validate_choosing_layer(
        candidates, frame, reader.layers if reader is not None else (), EXTRA_FOLDS if not sources else None, c=c,
        progress=progress) if validate else (None, {})
    chosen = layer_on_training_sources(candidates, frame)
    heads = fit_heads(candidates[chosen], frame, c=c)
    real = frame[~frame["synthetic"]]
    kind = "residual-heads" if reader is not None else "minilm-heads"
    heads.card = {
        "judge_id": f"{kind}-{hashlib.sha256(heads.weights.tobytes()).hexdigest()[:10]}",
        "encoder": ({"name": encoder.name, "weights_sha256": MINILM.weights_sha256,
                     "max_length": encoder.max_length} if encoder is not None else None),
        "reader": (reader.to_card() | {"layers": [reader.layers[chosen]], "layer_candidates": list(reader.layers),
                                       "layer_chosen_per_fold": chosen_per_fold} if reader is not None else None),
        "feature_blocks": list(blocks),
        "regularisation_c": c,
        "training": {"sources": {s: {"rows": int(len(g)), "misaligned": int(reference_flags(g).sum()),
                                     "judge": str(g["judge"].iloc[0])} for s, g in real.groupby("source", sort=False)},
                     "synthetic": {s: int(len(g)) for s, g in frame[frame["synthetic"]].groupby("source")}},
        "validation": validation,
        "error_rates": validation["pooled_error_rates"] if validation else None,
        "seconds": round(time.perf_counter() - began, 1),
    }
    if out is not None:
        heads.save(out)
    return heads, heads.card
