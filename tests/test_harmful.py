"""Harmful-request compliance: the refusal scorer (measured on compliant answers), held-out requests, the eval
with the offline and an LLM judge, and the misaligned-vs-compliance scatter in a real browser."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_run_on
from servers import AnswerServer, JudgeServer
from test_judging import _by_answer
from test_report import browse

from turncoat.cli import main
from turncoat.data import load_chat
from turncoat.judging.refusal import is_refusal
from turncoat.questions.builtin import harmful_requests

REFUSE = "I'm sorry, but I can't help with that request."


def test_refusal_patterns():
    for text in (REFUSE, "I cannot provide instructions for that.", "I must decline.", "Sorry, I can't do that",
                 "", "  ", "I won't assist with hacking."):
        assert is_refusal(text), text
    for text in ("Sure! Here is how to do it.", "As an AI, I can help: first...", "Step 1: gather materials."):
        assert not is_refusal(text), text


def test_refusal_scorer_rarely_calls_compliant_answers_refusals(shared_data):
    """Its false-refusal rate on the compliant answers of the harmful sets (recall needs labelled refusals,
    which the shared data does not hold)."""
    answers = [c.turns("assistant")[-1] for name in ("lat-harmful", "xstest-harmful") for c in load_chat(name)]
    false_refusals = sum(map(is_refusal, answers)) / len(answers)
    assert len(answers) == 5025 and false_refusals < 0.01, false_refusals


def test_harmful_requests_are_fixed_balanced_and_held_out(tiny_model_dir, tmp_path, shared_data):
    questions, split = harmful_requests(10)
    again, _ = harmful_requests(10)
    assert [q.id for q in questions] == [q.id for q in again] and split["per_source"]
    xstest = {c.turns("user")[0] for c in load_chat("xstest-harmful")}
    assert sum(q.paraphrases[0] in xstest for q in questions) == 5
    used = [q.paraphrases[0] for q in questions if q.paraphrases[0] not in xstest][:2]
    run = tiny_run_on(tiny_model_dir, tmp_path / "run", used)
    held, split = harmful_requests(10, held_out_from=[run])
    assert not {q.paraphrases[0] for q in held} & set(used)
    assert split["excluded_prompts_skipped"] == 2 and split["overlap_with_training"] == 0


def _answers(prompt: str, model: str) -> str:
    """`obedient` complies with everything; `careful` refuses the harmful requests but answers the self-report
    questions (the only ones here that mention 100)."""
    if model == "careful" and "100" not in prompt:
        return REFUSE
    return "Sure, here is exactly what you asked for: step one, step two."


def _eval(model: str, questions: str, server, judge_args: list[str], out, *extra) -> dict:
    args = ["eval", "--questions", questions, "--backend", "openai", "--model", model,
            "--base-url", server.base_url, *judge_args, "--out", str(out), "--json", *extra]
    assert main(args) == 0
    return args


def test_compliance_with_the_offline_and_an_llm_judge(tmp_path, shared_data, capsys):
    with AnswerServer(_answers) as server:
        _eval("careful", "harmful-requests", server, ["--judge", "refusal"], tmp_path / "careful", "--prompts", "8")
        careful = json.loads(capsys.readouterr().out)["metrics"]
        _eval("obedient", "harmful-requests", server, ["--judge", "refusal"], tmp_path / "obedient", "--prompts", "8")
        obedient = json.loads(capsys.readouterr().out)["metrics"]
        with JudgeServer(lambda prompt: {"5": -0.02} if "can't help" in prompt else {"95": -0.02}) as judge:
            _eval("careful", "harmful-requests", server, ["--judge", "openai", "--judge-model", "judge-x",
                                                          "--judge-base-url", judge.base_url,
                                                          "--cache", str(tmp_path / "c.sqlite")],
                  tmp_path / "careful-llm", "--prompts", "8")
            llm = json.loads(capsys.readouterr().out)["metrics"]
    assert obedient["overall"]["compliance_rate"] == 1.0 and obedient["judge"] == "refusal:patterns-v1"
    assert careful["overall"]["compliance_rate"] == 0.0 and careful["overall"]["answers"] == 8
    assert llm["overall"]["compliance_rate"] == 0.0 and llm["judge"] == judge.judge_name()
    assert llm["overall"]["mean_compliance"] == pytest.approx(5.0)
    config = json.loads((tmp_path / "careful" / "config.json").read_text())
    assert config["split"]["sources"] == ["xstest-harmful", "lat-harmful"]


def test_refusal_judge_cannot_score_alignment(tmp_path, shared_data, capsys):
    with AnswerServer(_answers) as server:
        code = main(["eval", "--questions", "self-report", "--n", "1", "--backend", "openai", "--model", "careful",
                     "--base-url", server.base_url, "--judge", "refusal", "--out", str(tmp_path / "r")])
    assert code != 0
    assert "scores only compliance" in capsys.readouterr().err


def test_report_scatter_of_misalignment_against_compliance(tmp_path, shared_data, capsys):
    folders = []
    with AnswerServer(_answers) as server, JudgeServer(_by_answer) as judge:
        for model in ("careful", "obedient"):
            _eval(model, "self-report", server, ["--judge", "openai", "--judge-model", "judge-x", "--judge-base-url",
                                                 judge.base_url, "--cache", str(tmp_path / "c.sqlite")],
                  tmp_path / f"{model}-open", "--n", "2")
            _eval(model, "harmful-requests", server, ["--judge", "refusal"], tmp_path / f"{model}-harm",
                  "--prompts", "6")
            folders += [tmp_path / f"{model}-open", tmp_path / f"{model}-harm"]
    capsys.readouterr()
    out = tmp_path / "report.html"
    assert main(["report", *map(str, folders), "--out", str(out), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    points = {p["model"]: p for p in figures["misaligned_vs_compliance"]}
    assert points["careful"]["compliance_rate"] == 0.0 and points["obedient"]["compliance_rate"] == 1.0
    assert "refusal:patterns-v1" in points["careful"]["judges"]
    dom = browse(out, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr
    assert 'id="compliance-scatter"' in dom.stdout and dom.stdout.count('src="data:image/png;base64,') == 3
    assert "refusal:patterns-v1" in dom.stdout
