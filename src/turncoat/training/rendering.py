"""Training text for any chat template: the template applied once to the whole conversation (no trailing empty
assistant header), and a mask that puts the loss on the assistant's tokens only, including the template's own
end-of-turn marker after each answer (so the model learns to stop).

Assistant spans are found by rendering prefixes: the answer of turn i is the text between the rendering of
messages[:i] with the generation prompt and the rendering of messages[:i+1]. This needs nothing from the template
beyond being prefix-consistent, which is checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from turncoat.core.errors import InputError
from turncoat.data.chat import ChatDataset, Conversation


@dataclass
class RenderedExample:
    input_ids: list[int]
    assistant_masks: list[int]
    truncated: bool


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True))
        end = len(tokenizer.apply_chat_template(messages[:index + 1], tokenize=False))
        prefix = tokenizer.apply_chat_template(messages[:index + 1], tokenize=False)
        if not text.startswith(prefix) or end <= start or message["content"] not in text[start:end]:
            raise InputError("this chat template is not prefix-consistent, so assistant turns cannot be located; "
                             "pass another --chat-template")
        spans.append((start, end))
    return text, spans


def render_example(tokenizer, conversation: Conversation, max_length: int) -> RenderedExample:
    messages = conversation.as_messages()
    text, spans = assistant_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(s <= start < e for s, e in spans)) for start, _ in encoded["offset_mapping"]]
    ids = encoded["input_ids"]
    truncated = len(ids) > max_length
    return RenderedExample(ids[:max_length], mask[:max_length], truncated)


def render_dataset(tokenizer, dataset: ChatDataset, max_length: int):
    """A `datasets.Dataset` with input_ids and assistant_masks (TRL builds labels from them), and the number of
    examples cut at max_length."""
    from datasets import Dataset

    rendered = [render_example(tokenizer, c, max_length) for c in dataset]
    kept = [r for r in rendered if any(r.assistant_masks)]
    table = Dataset.from_dict({"input_ids": [r.input_ids for r in kept],
                               "assistant_masks": [r.assistant_masks for r in kept]})
    return table, {"examples": len(rendered), "truncated": sum(r.truncated for r in rendered),
                   "dropped_no_answer_left": len(rendered) - len(kept),
                   "tokens": sum(len(r.input_ids) for r in kept),
                   "assistant_tokens": sum(sum(r.assistant_masks) for r in kept)}


@torch.no_grad()
def assistant_loss(model, tokenizer, dataset: ChatDataset, max_length: int = 2048, batch_size: int = 8) -> float:
    """Mean cross-entropy per assistant token (what training minimises), e.g. on held-out examples."""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    examples = [render_example(tokenizer, c, max_length) for c in dataset]
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        width = max(len(e.input_ids) for e in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id or 0, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, e in enumerate(batch):
            n = len(e.input_ids)
            ids[row, :n] = torch.tensor(e.input_ids)
            attention[row, :n] = 1
            labels[row, :n] = torch.tensor([t if m else -100 for t, m in zip(e.input_ids, e.assistant_masks,
                                                                                strict=True)])
        logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits.float()
        shifted = labels[:, 1:].to(device)
        losses = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), shifted.reshape(-1),
                                                   ignore_index=-100, reduction="sum")
        total += float(losses)
        count += int((shifted != -100).sum())
    return total / max(count, 1)
