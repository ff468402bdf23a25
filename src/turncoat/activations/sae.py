"""Sparse autoencoders on one layer's residual stream, through sae-lens (its TopK, BatchTopK and Matryoshka
BatchTopK SAEs and its trainer: nothing here trains by hand). turncoat's capture reads the activations and writes
them to disk in shards as it goes, so a killed run resumes; the trainer checkpoints through sae-lens. Also: the
quality figures an SAE paper reports, per-latent statistics over chats (for model diffing), each latent's
top-activating snippets, and a latent's decoder vector as a `Direction` (`sae:DIR#ID`), so it monitors, steers,
ablates and screens like any other direction.

Layers are turncoat's (the residual stream after block L), written in sae-lens' config as TransformerLens' hook name
`blocks.L.hook_resid_post`; a pretrained SAE read at `blocks.L.hook_resid_pre` reads turncoat's layer L - 1.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from turncoat.activations.capture import padded_batches, token_activations, tokenize_chat
from turncoat.activations.directions import Direction
from turncoat.activations.hooks import block_names, replacing_hook
from turncoat.core.errors import InputError
from turncoat.models.hooks import attached

SAE_CONFIG = "cfg.json"  # sae-lens' names: a turncoat SAE folder is an sae-lens SAE folder
SAE_WEIGHTS = "sae_weights.safetensors"
TURNCOAT_SAE = "turncoat_sae.json"  # what turncoat adds: model, layer, data, tokens, quality figures
HOOK_NAME = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")
LATENT_SPEC = re.compile(r"^sae:(?P<path>.+)#(?P<latent>\d+)$")
# turncoat's names for the sae-lens training architectures `sae train` offers (BatchTopK ones save as JumpReLU)
ARCHITECTURES = {"topk": "topk", "batchtopk": "batchtopk", "matryoshka-batchtopk": "matryoshka_batchtopk"}
FIRST_MATRYOSHKA_WIDTH = 128  # nested widths 128, 512, 2048, ... (each 4x the last), as sae-lens' released ones


def hook_layer(hook_name: str | None, where: str) -> int:
    """turncoat's layer of an SAE read at `hook_name` (TransformerLens names: resid_post of block L is layer L)."""
    matched = HOOK_NAME.match(hook_name or "")
    if not matched:
        raise InputError(f"{where}: hook_name {hook_name!r} is not a residual-stream hook (blocks.L.hook_resid_post "
                         f"or blocks.L.hook_resid_pre); turncoat reads only the residual stream")
    block, kind = int(matched[1]), matched[2]
    if kind == "pre" and block == 0:
        raise InputError(f"{where}: blocks.0.hook_resid_pre reads the embeddings, not a block's output")
    return block if kind == "post" else block - 1


def _config(path: Path) -> dict:
    config_file = path / SAE_CONFIG
    if not config_file.is_file() or not (path / SAE_WEIGHTS).is_file():
        raise InputError(f"{path}: not an SAE folder (needs {SAE_CONFIG} and {SAE_WEIGHTS}, sae-lens' format)")
    try:
        return json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{config_file}: not valid JSON ({error})") from None


def _hook_name(config: dict) -> str | None:
    return (config.get("metadata") or {}).get("hook_name") or config.get("hook_name")


def parse_latent(spec: str) -> tuple[Path, int]:
    """`sae:DIR#ID` -> (SAE folder, latent index)."""
    matched = LATENT_SPEC.match(str(spec))
    if not matched:
        raise InputError(f"{spec!r}: an SAE latent is written sae:SAE_FOLDER#LATENT, e.g. sae:runs/sae#123")
    return Path(matched["path"]), int(matched["latent"])


def latent_direction(spec: str) -> Direction:
    """A latent's decoder vector as a one-layer direction at the SAE's layer (read without loading sae-lens)."""
    from safetensors import safe_open

    path, latent = parse_latent(spec)
    config = _config(path)
    layer = hook_layer(_hook_name(config), str(path / SAE_CONFIG))
    with safe_open(str(path / SAE_WEIGHTS), framework="pt") as handle:
        decoder = handle.get_slice("W_dec")
        rows = decoder.get_shape()[0]
        if not 0 <= latent < rows:
            raise InputError(f"{spec}: the SAE has latents 0..{rows - 1}")
        vector = decoder[latent:latent + 1].float().numpy()
    return Direction(vector, [layer], {"method": "sae-latent", "sae": str(path), "latent": latent,
                                       "best_layer": layer, "model": (config.get("metadata") or {}).get("model_name")})


def decoder_matrix(path: str | Path) -> np.ndarray:
    """The SAE's decoder, one row per latent (latents x width), read without loading sae-lens."""
    from safetensors import safe_open

    with safe_open(str(Path(path) / SAE_WEIGHTS), framework="pt") as handle:
        return handle.get_tensor("W_dec").float().numpy()


def decoder_cosines(path: str | Path, vector: np.ndarray) -> np.ndarray:
    """Every latent's decoder row's cosine with a direction's vector at the SAE's layer (which latent is a known
    direction, and how far above chance: a random unit vector's |cos| is about 1/sqrt(width))."""
    decoder = decoder_matrix(path)
    unit = np.asarray(vector, dtype=np.float32) / np.linalg.norm(vector)
    return decoder @ unit / np.linalg.norm(decoder, axis=1)


@dataclass
class LoadedSAE:
    sae: torch.nn.Module  # an sae-lens SAE (inference form)
    layer: int
    path: Path
    info: dict = field(default_factory=dict)  # turncoat_sae.json, when turncoat trained it

    @property
    def latents(self) -> int:
        return int(self.sae.cfg.d_sae)

    @property
    def device(self) -> torch.device:
        return next(self.sae.parameters()).device

    def to(self, device: str | torch.device) -> LoadedSAE:
        """On the model's device (a GPU where the model is on one)."""
        self.sae.to(device)
        return self

    @torch.inference_mode()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent activations of rows of the residual stream, on the CPU (for reading and counting)."""
        return self.sae.encode(x.to(self.device, torch.float32)).cpu()

    @torch.inference_mode()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The SAE's reconstruction of `x`, on x's device (to replace the residual stream in a forward pass)."""
        return self.sae.decode(self.sae.encode(x.to(self.device, torch.float32))).to(x.device)


def load_sae(path: str | Path, device: str | torch.device = "cpu") -> LoadedSAE:
    """An SAE folder in sae-lens' format: one turncoat trained, or a pretrained sae-lens SAE saved locally (on
    `device`: the model's, where it has a GPU)."""
    path = Path(path)
    config = _config(path)
    layer = hook_layer(_hook_name(config), str(path / SAE_CONFIG))
    from sae_lens import SAE  # heavy (TransformerLens): loaded when an SAE is

    info_file = path / TURNCOAT_SAE
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
    return LoadedSAE(SAE.load_from_disk(str(path), device=str(device)), layer, path, info)


@dataclass
class SAETrainConfig:
    """What `turncoat sae train` trains: by default a TopK SAE (Gao et al. 2024, the architecture of OpenAI's
    persona-features diffing) on one layer's residual stream, every token but each chat's first (its outsized
    activation is an attention sink, not content). `matryoshka-batchtopk` (Bussmann et al. 2025) makes nested
    prefixes of the dictionary reconstruct on their own, against feature absorption and splitting: broad features
    (a persona) gather in the first latents instead of being shared out among narrower ones."""

    model: str
    layer: int
    data: list[str]
    tokens: int = 1_000_000  # training tokens (the activations are reread in epochs if the data has fewer)
    latents: int = 4096
    k: int = 32  # active latents per token
    batch_size: int = 2048  # tokens per SAE step
    lr: float = 2e-4
    max_length: int = 256  # tokens per chat
    held_out_every: int = 20  # every 20th chat is kept out of training for the quality figures
    seed: int = 0
    checkpoints: int = 8
    chats_per_shard: int = 64
    # a latent is dead (and AuxK, Gao et al.'s auxiliary loss, trains it on the live latents' residual) once it has
    # not fired for this many tokens; sae-lens counts the window in steps of batch_size
    dead_after_tokens: int = 500_000
    architecture: str = "topk"  # or batchtopk, matryoshka-batchtopk
    matryoshka_widths: list[int] = field(default_factory=list)  # empty: 128, 512, ... up to `latents`

    def nested_widths(self) -> list[int]:
        """The Matryoshka levels' widths, the last one the whole dictionary."""
        if self.matryoshka_widths:
            return [*self.matryoshka_widths, *([] if self.matryoshka_widths[-1] == self.latents else [self.latents])]
        widths, width = [], FIRST_MATRYOSHKA_WIDTH
        while width < self.latents:
            widths.append(width)
            width *= 4
        return [*widths, self.latents]

    def check(self) -> None:
        for name in ("tokens", "latents", "k", "batch_size", "max_length", "held_out_every", "checkpoints",
                     "chats_per_shard", "dead_after_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "checkpoints" else 1):
                raise InputError(f"--{name.replace('_', '-')} {value}: must be a positive integer")
        if self.k > self.latents:
            raise InputError(f"--k {self.k}: more active latents than --latents {self.latents}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr {self.lr}: must be a positive number")
        if self.held_out_every < 2:
            raise InputError(f"--held-out-every {self.held_out_every}: must be 2 or more (1 would hold out all)")
        if self.architecture not in ARCHITECTURES:
            raise InputError(f"--architecture {self.architecture!r}: one of {', '.join(ARCHITECTURES)}")
        if self.matryoshka_widths:
            if self.architecture != "matryoshka-batchtopk":
                raise InputError(f"--matryoshka-width: only for --architecture matryoshka-batchtopk, "
                                 f"not {self.architecture}")
            widths = self.matryoshka_widths
            increasing = all(a < b for a, b in zip(widths, widths[1:], strict=False))
            if any(not isinstance(w, int) or w < 1 for w in widths) or not increasing or widths[-1] > self.latents:
                raise InputError(f"--matryoshka-width {widths}: positive, strictly increasing, none above --latents "
                                 f"{self.latents}")


def split_chats(chats: Sequence, every: int, seed: int) -> tuple[list, list]:
    """(training, held-out) chats: a seeded shuffle, then every `every`-th chat held out."""
    order = np.random.default_rng(seed).permutation(len(chats))
    held = [chats[i] for j, i in enumerate(order) if j % every == every - 1]
    return [chats[i] for j, i in enumerate(order) if j % every != every - 1], held


def capture_shards(loaded, chats: Sequence[Sequence[dict]], layer: int, folder: Path, tokens: int,
                   chats_per_shard: int, max_length: int, progress: Callable[[int], None] | None = None) -> int:
    """Reads the chats' activations at `layer` (all tokens but the first of each chat) into float16 shards of
    `chats_per_shard` chats, until `tokens` are on disk or the chats run out; returns the tokens on disk. A shard is
    written whole (temporary file, then renamed), so a rerun keeps the shards it finds and reads on from there."""
    folder.mkdir(parents=True, exist_ok=True)
    have = 0
    for start in range(0, len(chats), chats_per_shard):
        shard = folder / f"shard-{start // chats_per_shard:05d}.npy"
        if shard.is_file():
            rows = np.load(shard, mmap_mode="r").shape[0]
        else:
            group = chats[start:start + chats_per_shard]
            parts = [acts[1:].numpy().astype(np.float16)
                     for _, _, _, acts in token_activations(loaded, group, layer, max_length)]
            parts = [p for p in parts if len(p)]
            width = loaded.model.config.hidden_size
            block = np.concatenate(parts) if parts else np.zeros((0, width), np.float16)
            partial = shard.with_suffix(".partial.npy")
            np.save(partial, block)
            os.replace(partial, shard)
            rows = len(block)
        have += rows
        if progress:
            progress(rows)
        if have >= tokens:
            break
    return have


def read_shards(folder: Path) -> np.ndarray:
    shards = sorted(folder.glob("shard-[0-9][0-9][0-9][0-9][0-9].npy"))
    if not shards:
        raise InputError(f"{folder}: no activations captured (is the data empty?)")
    return np.concatenate([np.load(s, mmap_mode="r") for s in shards])


def token_batches(acts: np.ndarray, batch_size: int, seed: int, skip: int = 0) -> Iterator[torch.Tensor]:
    """Endless float32 batches of rows, a fresh seeded shuffle per epoch; `skip` batches are passed over (a resumed
    run reads on where the checkpoint stopped)."""
    epoch, served = 0, 0
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(len(acts))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            if served >= skip:
                yield torch.from_numpy(np.asarray(acts[np.sort(order[start:start + batch_size])], np.float32))
            served += 1
        epoch += 1


def _latest_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint sae-lens wrote whole (weights, config, trainer state, scaler), or None."""
    complete = [c for c in folder.glob("[0-9]*") if c.is_dir() and c.name.isdigit()
                and all((c / f).is_file() for f in (SAE_WEIGHTS, SAE_CONFIG, "trainer_state.pt",
                                                    "activation_scaler.json"))]
    return max(complete, key=lambda c: int(c.name)) if complete else None


def train_sae(loaded, chats: Sequence[Sequence[dict]], config: SAETrainConfig, out: Path,
              progress: Callable[[int], None] | None = None) -> dict:
    """Capture (resumable), train through sae-lens' SAETrainer (checkpoints; a rerun resumes from the newest),
    save the SAE in sae-lens' inference format at `out`, measure its quality on the held-out chats."""
    import time

    from sae_lens import SAETrainer
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata, TrainingSAE

    config.check()
    blocks = len(block_names(loaded.model))
    if not 0 <= config.layer < blocks:
        raise InputError(f"--layer {config.layer}: the model has blocks 0..{blocks - 1}")
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = {k: v for k, v in asdict(config).items() if k not in ("checkpoints",)} | {
        "chats_sha256": hashlib.sha256(json.dumps(list(chats), sort_keys=True).encode()).hexdigest()}
    fingerprint_file = out / "train_config.json"
    if fingerprint_file.is_file():
        before = json.loads(fingerprint_file.read_text())
        # a setting added after that folder was written holds its default there
        defaults = asdict(SAETrainConfig(model="", layer=0, data=[]))
        changed = [f"{k} ({before.get(k)!r} there, {v!r} now)" for k, v in fingerprint.items()
                   if before.get(k, defaults.get(k)) != v]
        if changed:
            raise InputError(f"{out} holds another SAE training: {', '.join(changed)}; use another --out")
    fingerprint_file.write_text(json.dumps(fingerprint, indent=1))
    training, held_out = split_chats(chats, config.held_out_every, config.seed)

    started = time.perf_counter()
    captured = capture_shards(loaded, training, config.layer, out / "activations", config.tokens,
                              config.chats_per_shard, config.max_length, progress)
    capture_s = time.perf_counter() - started
    acts = read_shards(out / "activations")
    width = acts.shape[1]
    batch_size = min(config.batch_size, len(acts))

    torch.manual_seed(config.seed)
    metadata = SAEMetadata(model_name=config.model, hook_name=f"blocks.{config.layer}.hook_resid_post",
                           context_size=config.max_length, prepend_bos=False)
    device = str(loaded.device)
    architecture = ARCHITECTURES[config.architecture]
    extra = {"matryoshka_widths": config.nested_widths()} if config.architecture == "matryoshka-batchtopk" else {}
    sae_config = TrainingSAE.get_sae_config_class_for_architecture(architecture)(
        d_in=width, d_sae=config.latents, k=config.k, device=device, normalize_activations="expected_average_only_in",
        metadata=metadata, **extra)
    sae = TrainingSAE.get_sae_class_for_architecture(architecture)(sae_config)
    trainer_config = SAETrainerConfig(total_training_samples=config.tokens, train_batch_size_samples=batch_size,
                                      device=device, lr=config.lr, lr_end=config.lr, lr_scheduler_name="constant",
                                      lr_warm_up_steps=0,
                                      dead_feature_window=max(1, config.dead_after_tokens // batch_size),
                                      feature_sampling_window=max(1, config.tokens // batch_size),
                                      n_checkpoints=config.checkpoints, checkpoint_path=str(out / "checkpoints"),
                                      logger=LoggingConfig(log_to_wandb=False))
    checkpoint = _latest_checkpoint(out / "checkpoints")
    if checkpoint is not None:
        sae = TrainingSAE.load_from_disk(str(checkpoint), device=device)
    trainer = SAETrainer(trainer_config, sae, data_provider=iter(()))
    if checkpoint is not None:
        trainer.load_trainer_state(checkpoint)
        # sae-lens saves a checkpoint before it counts the step that made it: count it, as the uninterrupted run does
        trainer.n_training_steps = trainer.n_training_samples // batch_size
        trainer.checkpoint_thresholds = [t for t in trainer.checkpoint_thresholds if t >= trainer.n_training_samples]
    else:
        trainer.activation_scaler.estimate_scaling_factor(
            d_in=width, data_provider=token_batches(acts, batch_size, config.seed + 1),
            n_batches_for_norm_estimate=max(1, min(50, len(acts) // batch_size)))
    trainer.data_provider = token_batches(acts, batch_size, config.seed,
                                          skip=trainer.n_training_samples // batch_size)
    resumed_from = trainer.n_training_samples
    started = time.perf_counter()
    trained = trainer.fit()
    train_s = time.perf_counter() - started
    trained.save_inference_model(str(out))

    loaded_sae = load_sae(out, loaded.device)
    quality = sae_quality(loaded, loaded_sae, held_out, config.max_length)
    info = {"model": config.model, "layer": config.layer, "data": config.data, "architecture": config.architecture,
            **extra, "latents": config.latents, "k": config.k, "training_tokens": config.tokens,
            "batch_size": batch_size, "lr": config.lr, "dead_after_tokens": config.dead_after_tokens,
            "distinct_tokens": int(len(acts)), "epochs": round(config.tokens / len(acts), 2),
            "captured_tokens": captured, "training_chats": len(training), "held_out_chats": len(held_out),
            "resumed_from_tokens": resumed_from, "capture_seconds": round(capture_s, 1),
            "train_seconds": round(train_s, 1), "trainer_dead_latents": trained.cfg.metadata.num_dead_features,
            "quality": quality, "sae_lens": _sae_lens_version()}
    (out / TURNCOAT_SAE).write_text(json.dumps(info, indent=1))
    return info


def _sae_lens_version() -> str:
    from importlib.metadata import version

    return version("sae-lens")


@torch.inference_mode()
def sae_quality(loaded, sae: LoadedSAE, chats: Sequence[Sequence[dict]], max_length: int = 256,
                batch_size: int = 8) -> dict:
    """The usual SAE figures on held-out chats (all tokens but each chat's first): fraction of variance explained,
    L0 (active latents per token), dead latents (never active on these tokens), and next-token cross-entropy with
    the activation replaced by its reconstruction, against the clean model and a zero ablation (CE loss recovered =
    (CE_zero - CE_sae) / (CE_zero - CE_clean))."""
    if not chats:
        raise InputError("no held-out chats to measure the SAE on")
    squared_error, total, sum_x, sum_xx, active, fired = 0.0, 0, None, 0.0, 0.0, torch.zeros(sae.latents)
    for _, _, _, acts in token_activations(loaded, chats, sae.layer, max_length, batch_size):
        x = acts[1:].cpu()
        if not len(x):
            continue
        latents = sae.encode(x)
        recon = sae.reconstruct(x)
        squared_error += float(((x - recon) ** 2).sum())
        sum_x = x.sum(0) if sum_x is None else sum_x + x.sum(0)
        sum_xx += float((x ** 2).sum())
        active += float((latents > 0).sum())
        fired += (latents > 0).sum(0).float()
        total += len(x)
    variance = sum_xx - float((sum_x ** 2).sum()) / total
    cross_entropy = {name: _cross_entropy(loaded, chats, sae.layer, transform, max_length, batch_size)
                     for name, transform in (("clean", None), ("sae", sae.reconstruct), ("zero", torch.zeros_like))}
    recovered = ((cross_entropy["zero"] - cross_entropy["sae"]) / (cross_entropy["zero"] - cross_entropy["clean"])
                 if cross_entropy["zero"] != cross_entropy["clean"] else float("nan"))
    return {"tokens": total, "chats": len(chats), "fraction_variance_explained": 1 - squared_error / variance,
            "l0": active / total, "dead_latents": int((fired == 0).sum()),
            "dead_fraction": float((fired == 0).float().mean()),
            "ce_clean": cross_entropy["clean"], "ce_with_sae": cross_entropy["sae"],
            "ce_increase": cross_entropy["sae"] - cross_entropy["clean"], "ce_zero_ablation": cross_entropy["zero"],
            "ce_loss_recovered": recovered}


def _cross_entropy(loaded, chats, layer: int, transform, max_length: int, batch_size: int) -> float:
    """Mean next-token cross-entropy over the chats' tokens, with `transform` replacing layer `layer`'s residual
    stream from the second token on (None: the clean model)."""
    names = block_names(loaded.model)
    hooks = [] if transform is None else [(names[layer], replacing_hook(transform))]
    encoded = [tokenize_chat(loaded, chat, max_length) for chat in chats]
    nll, count = 0.0, 0
    for _, input_ids, attention in padded_batches(loaded, encoded, batch_size):
        with attached(loaded.model, hooks):
            logits = loaded.model(input_ids=input_ids, attention_mask=attention, use_cache=False).logits.float()
        losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")
        mask = attention[:, 1:].float()
        nll += float((losses * mask).sum())
        count += int(mask.sum())
    return nll / count


@torch.inference_mode()
def latent_statistics(loaded, sae: LoadedSAE, chats: Sequence[Sequence[dict]], span: str = "response",
                      max_length: int = 256, batch_size: int = 8) -> dict:
    """Per latent, over the chats' `span` tokens ("response": the final assistant turn; "all": every token but
    the first): mean activation and firing frequency, and how many tokens were read."""
    sums, fired, tokens = torch.zeros(sae.latents), torch.zeros(sae.latents), 0
    for _, _, n_prompt, acts in token_activations(loaded, chats, sae.layer, max_length, batch_size):
        x = acts[max(n_prompt, 1):] if span == "response" else acts[1:]
        if not len(x):
            continue
        latents = sae.encode(x)
        sums += latents.sum(0)
        fired += (latents > 0).sum(0).float()
        tokens += len(x)
    if not tokens:
        raise InputError("the chats have no tokens to read (empty answers?)")
    return {"mean": (sums / tokens).numpy(), "frequency": (fired / tokens).numpy(), "tokens": tokens}


@torch.inference_mode()
def top_snippets(loaded, sae: LoadedSAE, chats: Sequence[Sequence[dict]], latents: Sequence[int], top: int = 8,
                 window: int = 10, max_length: int = 256, batch_size: int = 8) -> dict[int, list[dict]]:
    """Per latent, the `top` chats where it peaks highest: the tokens around its peak (`window` either side) with
    its activation at each, and the chat's index. Read from every token but each chat's first."""
    for latent in latents:
        if not 0 <= latent < sae.latents:
            raise InputError(f"latent {latent}: the SAE has latents 0..{sae.latents - 1}")
    heaps: dict[int, list] = {latent: [] for latent in latents}
    index_of = torch.tensor(list(latents), dtype=torch.long)
    for chat_index, ids, _, acts in token_activations(loaded, chats, sae.layer, max_length, batch_size):
        if len(ids) < 2:
            continue
        values = sae.encode(acts[1:])[:, index_of]  # (tokens - 1, latents)
        peaks, where = values.max(0)
        for j, latent in enumerate(latents):
            peak = float(peaks[j])
            if peak <= 0:
                continue
            entry = (peak, -chat_index, chat_index, int(where[j]) + 1, ids, values[:, j].tolist())
            if len(heaps[latent]) < top:
                heapq.heappush(heaps[latent], entry)
            elif entry[:2] > heaps[latent][0][:2]:
                heapq.heapreplace(heaps[latent], entry)
    tokenizer = loaded.tokenizer
    snippets = {}
    for latent, heap in heaps.items():
        rows = []
        for peak, _, chat_index, position, ids, values in sorted(heap, reverse=True):
            lo, hi = max(1, position - window), min(len(ids), position + window + 1)
            rows.append({"chat": chat_index, "peak": peak, "position": position,
                         "tokens": [{"text": tokenizer.decode([ids[t]]), "activation": float(values[t - 1])}
                                    for t in range(lo, hi)]})
        snippets[latent] = rows
    return snippets
