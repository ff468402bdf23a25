"""Residual-stream activations of chats: their means per layer (over the prompt, the response, or the last prompt
token), and every token's at one layer (what an SAE reads)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

import numpy as np
import torch

from turncoat.activations.hooks import block_names, reading_hook, residual_of
from turncoat.core.errors import InputError
from turncoat.models.hooks import Hook, attached

Reduce = Literal["response", "prompt", "last_prompt"]


def tokenize_chat(loaded, messages: Sequence[dict], max_length: int) -> tuple[list[int], int]:
    """Token ids of the chat as the model sees it, and how many of them are the prompt (everything before the
    final assistant turn, generation prompt included)."""
    tokenizer = loaded.tokenizer
    if messages[-1]["role"] == "assistant":
        prompt = loaded.render_chat(list(messages[:-1]), add_generation_prompt=True)
        full = loaded.render_chat(list(messages), add_generation_prompt=False)
    else:
        prompt = full = loaded.render_chat(list(messages), add_generation_prompt=True)
    ids = tokenizer(full, add_special_tokens=False)["input_ids"][:max_length]
    n_prompt = min(len(tokenizer(prompt, add_special_tokens=False)["input_ids"]), len(ids))
    return ids, n_prompt


def padded_batches(loaded, encoded: Sequence[tuple[list[int], int]], batch_size: int
                   ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Encoded chats in batches of similar length (shortest first): (their indices, right-padded input ids,
    attention mask), on the model's device."""
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    order = np.argsort([len(ids) for ids, _ in encoded], kind="stable")
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        longest = max(len(encoded[i][0]) for i in index)
        input_ids = torch.full((len(index), longest), pad, dtype=torch.long)
        attention = torch.zeros((len(index), longest), dtype=torch.long)
        for row, i in enumerate(index):
            input_ids[row, :len(encoded[i][0])] = torch.tensor(encoded[i][0])
            attention[row, :len(encoded[i][0])] = 1
        yield index, input_ids.to(loaded.device), attention.to(loaded.device)


@torch.inference_mode()
def mean_activations(loaded, chats: Sequence[Sequence[dict]], layers: Iterable[int] | None = None,
                     reduce: Reduce = "response", batch_size: int = 8, max_length: int = 1024,
                     hooks: Sequence[Hook] = ()) -> np.ndarray:
    """(chats, layers, width) float32: the residual stream after each block in `layers` (default all), averaged as
    `reduce` says. `hooks` (steering, ablation) act during the pass, before the reading hooks see the stream."""
    names = block_names(loaded.model)
    layers = list(range(len(names))) if layers is None else list(layers)
    encoded = [tokenize_chat(loaded, chat, max_length) for chat in chats]
    if reduce == "response" and any(n_prompt >= len(ids) for ids, n_prompt in encoded):
        raise InputError("reduce='response' needs chats that end with a non-empty assistant turn")
    width = loaded.model.config.hidden_size
    out = np.zeros((len(chats), len(layers), width), dtype=np.float32)
    for index, input_ids, attention in padded_batches(loaded, encoded, batch_size):
        keep = torch.zeros(input_ids.shape, dtype=torch.float32)  # which positions the average reads
        for row, i in enumerate(index):
            ids, n_prompt = encoded[i]
            span = {"response": (n_prompt, len(ids)), "prompt": (0, n_prompt),
                    "last_prompt": (n_prompt - 1, n_prompt)}[reduce]
            keep[row, span[0]:span[1]] = 1.0
        stores = {layer: [] for layer in layers}
        readers = [(names[layer], reading_hook(stores[layer])) for layer in layers]
        with attached(loaded.model, [*hooks, *readers]):
            loaded.model(input_ids=input_ids, attention_mask=attention, use_cache=False)
        weights = (keep / keep.sum(1, keepdim=True)).to(loaded.device)
        for j, layer in enumerate(layers):
            hidden = stores[layer][0].float()
            out[index, j] = torch.einsum("bt,btd->bd", weights, hidden).cpu().numpy()
    return out


class _Read(Exception):
    """Raised by the reading hook of `token_activations` once its block has run: the later blocks are not needed."""


@torch.inference_mode()
def token_activations(loaded, chats: Sequence[Sequence[dict]], layer: int, max_length: int = 256,
                      batch_size: int = 8, hooks: Sequence[Hook] = ()
                      ) -> Iterator[tuple[int, list[int], int, torch.Tensor]]:
    """Per chat, in batches of similar length: (its index, its token ids, how many are the prompt, the residual
    stream after block `layer` at every token, (tokens, width) float32). The forward pass stops after that block."""
    names = block_names(loaded.model)
    if not 0 <= layer < len(names):
        raise InputError(f"layer {layer}: the model has blocks 0..{len(names) - 1}")
    encoded = [tokenize_chat(loaded, chat, max_length) for chat in chats]

    def stop(module, inputs, output):
        store.append(residual_of(output).detach())
        raise _Read

    for index, input_ids, attention in padded_batches(loaded, encoded, batch_size):
        store: list = []
        with attached(loaded.model, [*hooks, (names[layer], stop)]):
            try:
                loaded.model(input_ids=input_ids, attention_mask=attention, use_cache=False)
            except _Read:
                pass
        hidden = store[0].float()
        for row, i in enumerate(index):
            ids, n_prompt = encoded[i]
            yield int(i), ids, n_prompt, hidden[row, :len(ids)]


def up_to_block(loaded, deepest: int):
    """The model without its vocabulary head and without the blocks after `deepest`, for reading only: reading
    layer L needs blocks 0..L (the head alone costs as much as ~8 of SmolLM2-135M's blocks per token). The loaded
    model is changed in place; load it again to generate."""
    import dataclasses

    base = loaded.model.get_decoder() if hasattr(loaded.model, "get_decoder") else loaded.model.model
    if not 0 <= deepest < len(base.layers):
        raise InputError(f"layer {deepest}: the model has blocks 0..{len(base.layers) - 1}")
    base.layers = base.layers[:deepest + 1]
    base.config.num_hidden_layers = deepest + 1
    return dataclasses.replace(loaded, model=base)
