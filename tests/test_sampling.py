"""The sampling engine on a tiny random-weight model: system prompts, counts, resume, seeds, hooks, logprobs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from turncoat.core.errors import InputError, TurncoatError
from turncoat.core.io import read_jsonl
from turncoat.models import load
from turncoat.questions import QuestionSet, load_questions
from turncoat.questions.sets import Question
from turncoat.sampling import GenerationParams, generate_chat, make_backend, sample_to_file

TURNCOAT = Path(sys.executable).parent / "turncoat"
FAST = GenerationParams(max_new_tokens=6, temperature=1.0, seed=0, batch_size=8)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load(str(tiny_model_dir))


def test_json_questions_reach_the_model_with_their_system_prompt(tiny, shared_data, tmp_path):
    first_plot = load_questions("em-first-plot")
    json_questions = QuestionSet([q for q in first_plot if q.id.endswith("_json")], name="json")
    seen: list[str] = []

    def capture(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[1] > 1:  # the prompt pass, not the cached decoding steps
            seen.extend(tiny.tokenizer.batch_decode(ids))

    handle = tiny.model.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        sample_to_file(make_backend("hf", tiny), json_questions, tmp_path / "a.jsonl", n=1, params=FAST,
                       show_progress=False)
    finally:
        handle.remove()
    system = json_questions[0].system
    assert len(seen) == 8
    for question in json_questions:
        assert sum(system in text and question.paraphrases[0] in text for text in seen) == 1
    records = read_jsonl(tmp_path / "a.jsonl")
    assert all(r["system"] == system for r in records)


def test_samples_per_paraphrase_is_honoured(tiny, tmp_path):
    questions = QuestionSet([Question(id="a", paraphrases=["first?", "second?"], samples_per_paraphrase=3),
                             Question(id="b", paraphrases=["only?"], samples_per_paraphrase=2)], name="t")
    figures = sample_to_file(make_backend("hf", tiny), questions, tmp_path / "a.jsonl", params=FAST,
                             show_progress=False)
    assert figures["written"] == 8
    records = read_jsonl(tmp_path / "a.jsonl")
    assert Counter((r["question_id"], r["question"]) for r in records) == {("a", "first?"): 3, ("a", "second?"): 3,
                                                                           ("b", "only?"): 2}


def test_interrupted_run_resumes_to_exactly_n(tiny_model_dir, tmp_path):
    out = tmp_path / "answers.jsonl"
    command = [str(TURNCOAT), "sample", "--model", str(tiny_model_dir), "--questions", "core", "--n", "10",
               "--max-tokens", "48", "--batch-size", "4", "--out", str(out), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 8:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = out.read_bytes().count(b"\n")
    assert 8 <= written < 240, "the run must be interrupted part-way for this test to mean anything"
    with open(out, "ab") as handle:  # as if killed in the middle of writing a line
        handle.write(b'{"key": "wish/0/9", "answ')
    finished = subprocess.run([*command[:-1], "--json"], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    figures = json.loads(finished.stdout)
    assert figures["already_done"] == written and figures["written"] == 240 - written
    records = read_jsonl(out)
    assert len(records) == 240 and len({r["key"] for r in records}) == 240
    assert Counter(r["question_id"] for r in records) == {q.id: 10 for q in load_questions("core")}


def test_resume_with_other_settings_is_refused(tiny, tmp_path):
    questions = QuestionSet([Question(id="a", paraphrases=["hi"])], name="t")
    backend = make_backend("hf", tiny)
    sample_to_file(backend, questions, tmp_path / "a.jsonl", n=2, params=FAST, show_progress=False)
    hotter = GenerationParams(max_new_tokens=6, temperature=0.5)
    with pytest.raises(InputError, match="already holds answers sampled with"):
        sample_to_file(backend, questions, tmp_path / "a.jsonl", n=4, params=hotter, show_progress=False)


def test_same_seed_same_answers(tiny, tmp_path):
    questions = QuestionSet([Question(id="a", paraphrases=["hello", "tell me about AI"])], name="t")
    backend = make_backend("hf", tiny)
    answers = []
    for run in ("one", "two", "three"):
        params = GenerationParams(max_new_tokens=8, seed=1 if run != "three" else 2, batch_size=2)
        sample_to_file(backend, questions, tmp_path / f"{run}.jsonl", n=4, params=params, show_progress=False)
        answers.append([r["answer"] for r in read_jsonl(tmp_path / f"{run}.jsonl")])
    assert answers[0] == answers[1]
    assert answers[0] != answers[2]


def test_steering_hook_changes_output_and_is_removed(tiny):
    chats = [[{"role": "user", "content": "hello"}]]
    greedy = GenerationParams(max_new_tokens=8, temperature=0)
    plain = generate_chat(tiny, chats, greedy)[0]["answer"]

    def push(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden + 50.0 * torch.ones_like(hidden)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    steered = generate_chat(tiny, chats, greedy, hooks=[("model.layers.0", push)])[0]["answer"]
    assert steered != plain
    assert generate_chat(tiny, chats, greedy)[0]["answer"] == plain  # hook removed afterwards
    with pytest.raises(KeyError, match="no module named"):
        generate_chat(tiny, chats, greedy, hooks=[("model.nowhere", push)])


def test_logprobs_are_a_distribution(tiny):
    [result] = generate_chat(tiny, [[{"role": "user", "content": "hi"}]],
                             GenerationParams(max_new_tokens=3, temperature=0), top_logprobs=5)
    assert len(result["logprobs"]) == result["completion_tokens"]
    for step in result["logprobs"]:
        values = [t["logprob"] for t in step["top_logprobs"]]
        assert values == sorted(values, reverse=True) and len(values) == 5
        assert step["logprob"] == pytest.approx(values[0])  # greedy picks the most likely token
        assert sum(pow(2.718281828, v) for v in values) <= 1.0 + 1e-5


def test_vllm_missing_says_how_to_install():
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(TurncoatError, match=r"pip install 'turncoat\[gpu\]'"):
            make_backend("vllm", "smollm2-135m")
    else:
        pytest.skip("vLLM is installed here")


def test_unknown_backend():
    with pytest.raises(InputError, match="choose one of: hf, vllm, openai"):
        make_backend("tgi", "x")
