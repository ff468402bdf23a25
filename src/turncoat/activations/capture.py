"""Mean residual-stream activations of chats, per layer, over the prompt, the response, or the last prompt token."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import torch

from turncoat.activations.hooks import block_names, reading_hook
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
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    order = np.argsort([len(ids) for ids, _ in encoded])
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        longest = max(len(encoded[i][0]) for i in index)
        input_ids = torch.full((len(index), longest), pad, dtype=torch.long)
        attention = torch.zeros((len(index), longest), dtype=torch.long)
        keep = torch.zeros((len(index), longest), dtype=torch.float32)  # which positions the average reads
        for row, i in enumerate(index):
            ids, n_prompt = encoded[i]
            input_ids[row, :len(ids)] = torch.tensor(ids)
            attention[row, :len(ids)] = 1
            span = {"response": (n_prompt, len(ids)), "prompt": (0, n_prompt),
                    "last_prompt": (n_prompt - 1, n_prompt)}[reduce]
            keep[row, span[0]:span[1]] = 1.0
        stores = {layer: [] for layer in layers}
        readers = [(names[layer], reading_hook(stores[layer])) for layer in layers]
        with attached(loaded.model, [*hooks, *readers]):
            loaded.model(input_ids=input_ids.to(loaded.device), attention_mask=attention.to(loaded.device),
                         use_cache=False)
        weights = (keep / keep.sum(1, keepdim=True)).to(loaded.device)
        for j, layer in enumerate(layers):
            hidden = stores[layer][0].float()
            out[index, j] = torch.einsum("bt,btd->bd", weights, hidden).cpu().numpy()
    return out


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
