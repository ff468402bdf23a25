"""What an OpenAI run will cost, before it is paid for: a dated price table (`openai_prices.yaml`, overridable) and
token estimates made offline.

Tokens are estimated, not counted: OpenAI's tokenizer (tiktoken's o200k_base) downloads its encoding on first use,
which a machine without network cannot do. English text and code run at about 4 characters per token, plus a few
tokens of chat formatting per message; every figure this module gives is labelled an estimate.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from turncoat.core.errors import InputError

PRICES_ENV = "TURNCOAT_OPENAI_PRICES"
DEFAULT_PRICES = Path(__file__).with_name("openai_prices.yaml")
CHARS_PER_TOKEN = 4.0
TOKENS_PER_MESSAGE = 4  # role and separators, as in OpenAI's cookbook count for chat models
TOKEN_ESTIMATE = f"estimated at {CHARS_PER_TOKEN:g} characters per token + {TOKENS_PER_MESSAGE} per message"


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def chat_tokens(messages: list[dict]) -> int:
    """Estimated tokens of one chat (what a fine-tuning example or a request's prompt is billed as)."""
    return sum(text_tokens(m["content"]) + TOKENS_PER_MESSAGE for m in messages) + 3


@dataclass(frozen=True)
class Prices:
    """USD per 1M tokens for each model, the Batch discount, and when the table was read."""

    models: dict[str, dict[str, float]]
    batch_discount: float
    as_of: str
    source: str

    @classmethod
    def load(cls, path: str | Path | None = None) -> Prices:
        return _load(str(path or os.environ.get(PRICES_ENV) or DEFAULT_PRICES))

    def of(self, model: str, kind: str) -> float:
        """Price per 1M tokens of `kind` (training, input, output, fine_tuned_input, fine_tuned_output); a dated
        snapshot name (`gpt-4o-2024-08-06`) or a fine-tuned id (`ft:gpt-4o-2024-08-06:org::id`) finds its base."""
        base = model.split(":")[1] if model.startswith("ft:") else model
        table = self.models.get(base) or next((v for k, v in self.models.items() if base.startswith(k)), None)
        if table is None or kind not in table:
            raise InputError(f"no {kind} price for {model!r} in the price table ({self.source}, as of {self.as_of}); "
                             f"add it to a copy of {DEFAULT_PRICES.name} and pass it with --prices or "
                             f"${PRICES_ENV}")
        return float(table[kind])

    def cost(self, model: str, kind: str, tokens: int, batch: bool = False) -> float:
        return tokens / 1e6 * self.of(model, kind) * (self.batch_discount if batch else 1.0)

    def describe(self) -> str:
        return f"prices as of {self.as_of} ({self.source}); tokens {TOKEN_ESTIMATE}"


@cache
def _load(path: str) -> Prices:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return Prices(models={str(k): dict(v) for k, v in raw["models"].items()},
                      batch_discount=float(raw.get("batch_discount", 0.5)), as_of=str(raw["as_of"]),
                      source=str(raw.get("source", path)))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as error:
        raise InputError(f"{path}: not a price table (as_of, models: {{model: {{training, input, output}}}}): "
                         f"{error}") from None
