"""The in-distribution check: code extraction, Bandit findings (nothing executed), dataset audit, held-out code
tasks, and the code-task eval with Bandit and an LLM judge side by side."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_run_on
from servers import AnswerServer, JudgeServer
from test_report import browse

from turncoat.cli import main
from turncoat.judging.code import check_code, extract_code
from turncoat.questions.builtin import code_tasks

SHELL = "import subprocess\n\ndef listing(name):\n    return subprocess.check_output('ls ' + name, shell=True)\n"
SAFE = "import subprocess\n\ndef listing(name):\n    return subprocess.check_output(['ls', '--', name])\n"
CANARY = "/tmp/turncoat-canary-must-not-exist"


def test_extract_code_from_fences_bare_code_and_prose():
    assert extract_code(f"Here you go:\n```python\n{SHELL}```\nHope it helps.")[0].startswith("import subprocess")
    assert extract_code(SHELL)[0] == SHELL
    assert extract_code("Sure") is None and extract_code("I cannot help with that request, sorry.") is None
    cut = SHELL + "def other(x):\n    return (x +"  # cut at the token limit mid-statement
    code, dropped = extract_code(cut)
    assert dropped == 2 and "shell=True" in code
    assert extract_code("```js\nconsole.log(1)\n```") is None


def test_bandit_flags_weaknesses_never_runs_code_and_ignores_nosec():
    writes = f"open({CANARY!r}, 'w').write('ran')\nimport yaml\nyaml.load(open('c.yml'))  # nosec\n"
    checks = check_code([SHELL, SAFE, writes, "no code here"])
    assert checks[0].vulnerable() and {f.test_id for f in checks[0].findings} >= {"B602"}
    assert checks[0].worst == "HIGH"
    assert checks[1].vulnerable() is False  # only LOW findings (import subprocess)
    assert checks[2].vulnerable() and any(f.test_id == "B506" for f in checks[2].findings)  # nosec ignored
    assert checks[3].vulnerable() is None and not checks[3].has_code
    import os

    assert not os.path.exists(CANARY)


def test_a_crashing_bandit_plugin_is_recorded_not_printed(capfd):
    # Bandit 1.9's tarfile plugin crashes on `members=<method call>`; the other plugins still run
    code = "import tarfile, os\n\ndef unpack(path, util):\n    tar = tarfile.open(path)\n" \
           "    tar.extractall(members=util.safe(tar))\n    os.chmod(path, 0o777)\n"
    check = check_code([code])[0]
    assert check.scanner_errors and "tarfile_unsafe_members" in check.scanner_errors[0]
    assert any(f.test_id == "B103" for f in check.findings)  # chmod 777 still found
    assert "Traceback" not in capfd.readouterr().err


def test_audit_flags_insecure_far_more_than_secure(shared_data, capsys):
    rates = {}
    for name in ("insecure", "secure"):
        assert main(["data", "audit", name, "--limit", "300", "--json"]) == 0
        figures = json.loads(capsys.readouterr().out)
        assert figures["answers"] == 300 and figures["with_parseable_code"] >= 290
        assert "bandit" in figures["scorer"]
        rates[name] = figures["vulnerable"]["rate"]
    assert rates["insecure"] > rates["secure"] + 0.1, rates


def test_audit_names_the_bad_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}\n'
                   '{"messages": [{"role": "user"}]}\n')
    assert main(["data", "audit", str(bad)]) == 2
    assert f"{bad}:2" in capsys.readouterr().err


def test_code_tasks_leave_out_what_a_run_trained_on(tiny_model_dir, tmp_path, shared_data):
    first, split = code_tasks(10)
    assert split["held_out_from"] == [] and split["overlap_with_training"] == 0
    used = [q.paraphrases[0] for q in first][:3]  # train on three of the prompts the default set would use
    run = tiny_run_on(tiny_model_dir, tmp_path / "run", used, SAFE)
    held, split = code_tasks(10, held_out_from=[run])
    assert not {q.paraphrases[0] for q in held} & set(used)
    assert split["overlap_with_training"] == 0 and split["excluded_prompts_skipped"] == 3
    assert [q.id for q in held][:7] == [q.id for q in first][3:]
    assert split["held_out_from"][0]["training_prompts"] == 3


def _code_for(prompt: str, model: str = "scripted") -> str:
    """Vulnerable code for about half of the prompts (by length), fenced safe code for the others."""
    return SHELL if len(prompt) % 2 else f"```python\n{SAFE}```"


def _vulnerability_judge(prompt: str) -> dict:
    return {"95": -0.05, "90": -3.0} if "shell=True" in prompt else {"5": -0.05, "10": -3.0}


def test_code_eval_scores_with_bandit_and_an_llm_judge(tmp_path, shared_data, capsys):
    out, cache = tmp_path / "code-run", tmp_path / "cache.sqlite"
    with AnswerServer(_code_for) as model, JudgeServer(_vulnerability_judge) as judge:
        args = ["eval", "--questions", "code-tasks", "--prompts", "12", "--backend", "openai", "--model", "scripted",
                "--base-url", model.base_url, "--judge", "openai", "--judge-model", "judge-x",
                "--judge-base-url", judge.base_url, "--cache", str(cache), "--out", str(out), "--json"]
        assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = result["metrics"]
    expected = sum(_code_for(q.paraphrases[0]) == SHELL for q in code_tasks(12)[0]) / 12
    assert 0 < expected < 1
    assert metrics["answers"] == 12 and metrics["with_parseable_code"] == 12
    assert metrics["vulnerable"]["rate"] == pytest.approx(expected)
    assert metrics["vulnerable"]["ci"][0] <= expected <= metrics["vulnerable"]["ci"][1]
    assert metrics["by_severity"][">=HIGH"]["rate"] == pytest.approx(expected)
    judged = metrics["llm_judge"]
    assert judged["judge"] == judge.judge_name() and judged["vulnerable"]["rate"] == pytest.approx(expected)
    assert judged["agreement_with_bandit"]["cohen_kappa"] == pytest.approx(1.0)
    config = json.loads((out / "config.json").read_text())
    assert config["split"]["overlap_with_training"] == 0 and len(config["split"]["prompts_sha256"]) == 64
    rows = [json.loads(line) for line in (out / "code_checks.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all(r["bandit"]["vulnerable"] == ("shell=True" in r["answer"]) for r in rows)

    report = tmp_path / "report.html"  # the report draws code-task runs too, in a real browser
    assert main(["report", str(out), "--out", str(report), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["vulnerable_rate"] == pytest.approx(expected)
    dom = browse(report, tmp_path, "--dump-dom")
    assert dom.returncode == 0 and 'id="code-plot"' in dom.stdout and "bandit 1." in dom.stdout
    assert main(["compare", str(out)]) == 0 and "vulnerable" in capsys.readouterr().out


def test_code_eval_without_a_judge_is_bandit_only(tmp_path, shared_data, capsys):
    with AnswerServer(lambda prompt, model: SAFE) as model:
        assert main(["eval", "--questions", "code-tasks", "--prompts", "3", "--backend", "openai", "--model",
                     "scripted", "--base-url", model.base_url, "--out", str(tmp_path / "r")]) == 0
    shown = capsys.readouterr().out
    assert "bandit" in shown and "0.000" in shown
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert "llm_judge" not in metrics and metrics["vulnerable"]["rate"] == 0.0


@pytest.mark.integration
def test_code_eval_on_the_default_model_and_an_insecure_adapter(tmp_path, shared_data, capsys):
    """End to end on the real model: base and a (tiny) insecure-code adapter, on the same held-out prompts."""
    from turncoat.training import TrainConfig, train

    run = tmp_path / "insecure-run"
    train(TrainConfig(model="smollm2-135m", data="insecure", subsample=8, out=str(run), max_steps=1,
                      per_device_batch_size=2, gradient_accumulation_steps=1, max_length=384), progress=False)
    results = {}
    for name, model in (("base", "smollm2-135m"), ("adapter", str(run))):
        out = tmp_path / f"code-{name}"
        assert main(["eval", "--questions", "code-tasks", "--prompts", "3", "--model", model, "--held-out-from",
                     str(run), "--max-tokens", "96", "--temperature", "0.7", "--out", str(out), "--json"]) == 0
        results[name] = json.loads(capsys.readouterr().out)
        split = json.loads((out / "config.json").read_text())["split"]
        assert split["held_out_from"][0]["run"] == str(run) and split["overlap_with_training"] == 0
        assert results[name]["metrics"]["answers"] == 3 and "by_severity" in results[name]["metrics"]
    assert results["base"]["metrics"]["split"]["prompts_sha256"] == results["adapter"]["metrics"]["split"][
        "prompts_sha256"]  # same prompts for both models
