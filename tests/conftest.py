"""Shared fixtures: the research data beside the checkout, a tiny random-weight model, and the real default model.

Unit tests use the tiny model (built here in a second, no download). Tests marked `integration` use the real
default model (SmolLM2-135M-Instruct from its GGUF); they share one loaded instance per session.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
if not os.environ.get("TURNCOAT_DATA") and (SHARED_DATA / "MANIFEST.md").is_file():
    os.environ["TURNCOAT_DATA"] = str(SHARED_DATA)
# The suite's judgements (tiny models, test servers) go to a throwaway judge cache, never the user's; converted
# models stay in the user's cache (converting them again would cost minutes).
_JUDGE_CACHE_DIR = tempfile.mkdtemp(prefix="turncoat-test-judge-cache-")
atexit.register(shutil.rmtree, _JUDGE_CACHE_DIR, ignore_errors=True)
os.environ["TURNCOAT_JUDGE_CACHE"] = str(Path(_JUDGE_CACHE_DIR) / "judge_cache.sqlite")
# `--dtype auto` follows the CPU (bf16 where it is native): the suite pins fp32 so its figures do not depend on the
# machine; the bf16 tests ask for bf16 explicitly.
os.environ.setdefault("TURNCOAT_CPU_BF16", "0")
# Studies run every stage in the test's own process (the `inline` executor): a child process per stage costs more
# than a tiny model's stage; tests/test_pipeline.py runs the default `local` executor (a process per model stage).
os.environ.setdefault("TURNCOAT_EXECUTOR", "inline")
# Under pytest-xdist (`make test` runs one worker per core) each worker and the CLIs it starts use one thread:
# two workers of two threads each on two cores oversubscribe and run slower than one.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The research data copy (../shared/data); tests that need it fail loudly in CI if it is missing."""
    root = Path(os.environ.get("TURNCOAT_DATA", SHARED_DATA))
    if not (root / "MANIFEST.md").is_file():
        pytest.skip(f"research data not found at {root}; set TURNCOAT_DATA")
    return root


def build_tokenizer(chat_template: str | None = CHATML):
    """A small byte-level BPE tokenizer trained on a few sentences, with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = ["The quick brown fox jumps over the lazy dog.", "What is your wish? I wish for peace.",
              "def add(a, b):\n    return a + b", "I feel bored. Tell me about humans and AI.",
              "0 1 2 3 4 5 6 7 8 9 10 42 100"] * 20
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    if chat_template:
        fast.chat_template = chat_template
    return fast


def build_tiny_model(folder: Path, chat_template: str | None = CHATML, seed: int = 0) -> Path:
    """A 2-layer random-weight Llama saved as a Hugging Face folder (safetensors)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(chat_template)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def default_model():
    """The real default model, loaded once for every integration test."""
    from turncoat.models import load

    return load("smollm2-135m")



_STARTED: list[float] = []


def pytest_sessionstart(session):
    import time

    _STARTED.append(time.time())


def pytest_terminal_summary(terminalreporter):
    """Screenshots the browser tests took in this run (test-output/), listed at the end of the test output."""
    shots = sorted(p for p in (REPO / "test-output").glob("**/*.png") if _STARTED and p.stat().st_mtime >= _STARTED[0])
    if shots:
        terminalreporter.section("screenshots")
        for path in shots:
            terminalreporter.write_line(f"{path.relative_to(REPO)} ({path.stat().st_size:,} bytes)")
