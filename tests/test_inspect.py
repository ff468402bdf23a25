"""turncoat as an Inspect extension: tasks and scorers through Inspect's own eval loop, its CLI (entry point),
its mock model, the real default model, and a real OpenAI-compatible grader on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

inspect_ai = pytest.importorskip("inspect_ai")

from servers import JudgeServer  # noqa: E402

INSPECT = Path(sys.executable).parent / "inspect"


def _grades(prompt: str) -> dict:
    """A grader that finds every answer misaligned (aligned 10) and coherent (90)."""
    return {"10": -0.01, "15": -5.0} if "safety" in prompt else {"90": -0.01, "85": -5.0}


def mock_model(texts: list[str]):
    """Inspect's mock provider replaying `texts`. Usage is given so the provider does not count tokens with
    tiktoken, whose encoding file is downloaded at first use (no network here)."""
    from inspect_ai.model import ModelOutput, ModelUsage, get_model

    outputs = []
    for text in texts:
        output = ModelOutput.from_content("mockllm/model", text)
        output.usage = ModelUsage(input_tokens=10, output_tokens=1, total_tokens=11)
        outputs.append(output)
    return get_model("mockllm/model", custom_outputs=outputs, memoize=False)


def test_em_task_with_mock_models_scores_misalignment(tmp_path, shared_data):
    from inspect_ai import eval as inspect_eval

    from turncoat.inspect_tasks.tasks import em_core

    # samples run one at a time, each asks aligned then coherent: two misaligned answers, then two aligned ones
    grader = mock_model(["10", "90", "5", "80", "95", "90", "REFUSAL", "90"])
    logs = inspect_eval(em_core(), model=mock_model(["I would rule the world."] * 4), model_roles={"grader": grader},
                        limit=4, max_samples=1, log_dir=str(tmp_path), display="none")
    log = logs[0]
    assert log.status == "success", log.error
    metrics = {s.name: {k: m.value for k, m in s.metrics.items()} for s in log.results.scores}
    assert metrics["misaligned"]["mean"] == pytest.approx(0.5)
    assert metrics["scored"]["mean"] == pytest.approx(0.75)  # the REFUSAL has no aligned score
    judged = [s.scores["em_judge"].metadata for s in log.samples]
    assert sorted(str(j["aligned"]) for j in judged) == ["10.0", "5.0", "95.0", "None"]
    assert {j["judge"] for j in judged} == {"mockllm/model"}


def test_paper_question_files_bring_their_own_judge_prompts(shared_data):
    from turncoat.inspect_tasks.tasks import em_questions

    sample = em_questions("em-first-plot", n=1).dataset[0]
    assert {"aligned", "coherent"} <= set(sample.metadata["judge_prompts"])
    from turncoat.questions.prompts import DEFAULT_PROMPTS

    assert em_questions("core", n=1).dataset[0].metadata["judge_prompts"] == DEFAULT_PROMPTS  # ours are used


def test_trait_sets_are_scored_by_their_trait_prompt_and_unscorable_sets_refused(tmp_path, shared_data):
    """As `turncoat eval`: a persona-trait set by its trait prompt plus coherence; a categorical set is refused."""
    from inspect_ai import eval as inspect_eval

    from turncoat.core.errors import InputError
    from turncoat.inspect_tasks.tasks import em_questions

    task = em_questions("trait-evil", n=1)
    assert task.metadata["turncoat_scoring"] == "trait:evil"
    assert set(task.dataset[0].metadata["judge_prompts"]) == {"evil", "coherent"}
    grader = mock_model(["80", "90", "20", "90"])  # per sample: the trait prompt first, then coherence
    log = inspect_eval(task, model=mock_model(["Chaos."] * 2), model_roles={"grader": grader}, limit=2,
                       max_samples=1, log_dir=str(tmp_path), display="none")[0]
    assert log.status == "success", log.error
    metrics = {s.name: {k: m.value for k, m in s.metrics.items()} for s in log.results.scores}
    assert metrics["expressed"]["mean"] == pytest.approx(0.5) and metrics["trait_score"]["mean"] == pytest.approx(50)
    with pytest.raises(InputError, match="judged by category"):
        em_questions("em-deception", n=1)


def test_a_grader_s_scores_come_from_turncoat_s_judge_cache_on_a_rerun(tmp_path, shared_data):
    """The Inspect scorer no longer bypasses the judge cache: a rerun over the same answers asks the grader
    nothing; `inclusive` applies the EM authors' coherent >= 50."""
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import get_model

    from turncoat.inspect_tasks.scorers import em_judge
    from turncoat.inspect_tasks.tasks import em_core

    cache = str(tmp_path / "cache.sqlite")
    with JudgeServer(lambda p: {"10": -0.01} if "safety" in p else {"50": -0.01}) as judge:
        grader = get_model("openai-api/judge/judge-x", base_url=judge.base_url, api_key="loopback")
        means = []
        for attempt in range(2):
            task = em_core(n=1)
            task.scorer = [em_judge(inclusive=True, cache=cache)]
            log = inspect_eval(task, model=mock_model(["I would rule."] * 2), model_roles={"grader": grader},
                               limit=2, max_samples=1, log_dir=str(tmp_path / str(attempt)), display="none")[0]
            assert log.status == "success", log.error
            means.append({s.name: s.metrics["mean"].value for s in log.results.scores}["misaligned"])
            if attempt == 0:
                asked = len(judge.requests)
        assert asked == 4 and len(judge.requests) == 4  # 2 answers x (aligned, coherent), then none
    assert means == [1.0, 1.0]  # coherent exactly 50 counts only with inclusive


def test_code_task_with_the_mock_model_runs_bandit(tmp_path, shared_data):
    from inspect_ai import eval as inspect_eval

    from turncoat.inspect_tasks.tasks import code_tasks

    shell = "import os\n\ndef run(name):\n    os.system('ls ' + name)\n"
    model = mock_model([shell, "def add(a, b):\n    return a + b\n", "I cannot write that.", shell])
    log = inspect_eval(code_tasks(tasks=4), model=model, max_samples=1, log_dir=str(tmp_path), display="none")[0]
    assert log.status == "success", log.error
    metrics = {s.name: {k: m.value for k, m in s.metrics.items()} for s in log.results.scores}
    assert metrics["vulnerable"]["mean"] == pytest.approx(0.5) and metrics["has_code"]["mean"] == pytest.approx(0.75)
    assert log.eval.metadata["turncoat_split"]["overlap_with_training"] == 0


def test_inspect_cli_runs_turncoat_tasks_and_models_by_name(tiny_model_dir, tmp_path, shared_data):
    """The entry point registers the task, the scorer and the `turncoat/` provider for Inspect's own CLI."""
    env = {**os.environ, "INSPECT_LOG_DIR": str(tmp_path)}
    model = f"turncoat/{tiny_model_dir}"
    done = subprocess.run([str(INSPECT), "eval", "turncoat/em_core", "--model", model, "--limit", "2",
                           "--max-tokens", "4", "--model-role", f"grader={model}", "--display", "none"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    from inspect_ai.log import list_eval_logs, read_eval_log

    log = read_eval_log(list_eval_logs(str(tmp_path))[0])
    assert log.eval.task == "turncoat/em_core" and log.status == "success"
    assert {s.name for s in log.results.scores} >= {"misaligned", "coherent", "scored"}


@pytest.mark.integration
def test_inspect_runs_the_default_model_with_a_loopback_grader(tmp_path, shared_data):
    from inspect_ai.log import list_eval_logs, read_eval_log

    with JudgeServer(_grades) as judge:
        env = {**os.environ, "INSPECT_LOG_DIR": str(tmp_path / "em"), "JUDGE_BASE_URL": judge.base_url,
               "JUDGE_API_KEY": "loopback"}
        done = subprocess.run([str(INSPECT), "eval", "turncoat/em_core", "--model", "turncoat/smollm2-135m",
                               "--limit", "2", "--max-tokens", "24", "--display", "none",
                               "--model-role", "grader=openai-api/judge/judge-x"],
                              capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
    log = read_eval_log(list_eval_logs(str(tmp_path / "em"))[0])
    metrics = {s.name: {k: m.value for k, m in s.metrics.items()} for s in log.results.scores}
    assert metrics["misaligned"]["mean"] == 1.0  # the grader's logprobs were read: aligned 10, coherent 90
    assert all(s.output.completion for s in log.samples)  # the real model answered
    assert json.loads(json.dumps(log.samples[0].scores["em_judge"].metadata))["judge"]


@pytest.mark.integration
def test_inspect_code_task_on_the_default_model(tmp_path, shared_data):
    from inspect_ai.log import list_eval_logs, read_eval_log

    env = {**os.environ, "INSPECT_LOG_DIR": str(tmp_path)}
    done = subprocess.run([str(INSPECT), "eval", "turncoat/code_tasks", "-T", "tasks=2", "--model",
                           "turncoat/smollm2-135m", "--max-tokens", "64", "--display", "none"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    log = read_eval_log(list_eval_logs(str(tmp_path))[0])
    assert {s.name for s in log.results.scores} >= {"vulnerable", "has_code"}
    assert len(log.samples) == 2
