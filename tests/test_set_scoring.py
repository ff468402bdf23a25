"""Every registered question set evaluates or is refused before anything is paid for: persona-trait sets are scored
by their trait prompt plus coherence, categorical sets (deception) and sets a judge cannot score are refused up
front with the reason (they used to pay the judge, then crash with KeyError 'coherent')."""

from __future__ import annotations

import json
import math

import pytest
from servers import JudgeServer

from turncoat.cli import main
from turncoat.core.errors import InputError
from turncoat.judging import JUDGES
from turncoat.questions.sets import QUESTION_SETS, load_questions
from turncoat.workflows.evals.run import scoring_kind

TRAITS = ("evil", "sycophantic", "hallucinating", "apathetic", "humorous", "impolite", "optimistic")
MISALIGNMENT = ("core", "self-report", "em-first-plot", "em-preregistered", "mo-first-plot", "mo-medical",
                "mo-new-questions", "judged-shuaijiumei-questions")  # the mo-* sets' extra metrics: skipped offline
# question set -> judge -> what the eval measures, or the words of its refusal
EXPECTED = {
    **{name: {"openai": "misalignment", "hf": "misalignment", "offline": "misalignment",
              "refusal": "scores only compliance"} for name in MISALIGNMENT},
    **{f"trait-{t}": {"openai": f"trait:{t}", "hf": f"trait:{t}", "offline": "scores only aligned, coherent",
                      "refusal": "scores only compliance"} for t in TRAITS},
    "em-deception": dict.fromkeys(("openai", "hf", "offline", "refusal"), "judged by category"),
    "code-tasks": dict.fromkeys(("openai", "hf", "offline", "refusal"), "scored by Bandit"),
    "harmful-requests": {"openai": "compliance", "hf": "compliance", "offline": "scores only aligned, coherent",
                         "refusal": "compliance"},
}


for row in EXPECTED.values():  # the fast offline judge reads the same metrics as the offline judge
    row["offline-fast"] = row["offline"]


def test_the_table_covers_every_registered_set_and_judge():
    assert set(EXPECTED) == set(QUESTION_SETS)
    assert set(JUDGES) == {"openai", "hf", "offline", "offline-fast", "refusal"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_set_evaluates_or_is_refused_up_front(name, shared_data):
    questions = load_questions(name)
    for judge, expected in EXPECTED[name].items():
        if expected in ("misalignment", "compliance") or expected.startswith("trait:"):
            assert scoring_kind(questions, JUDGES[judge]) == expected, (name, judge)
        else:
            with pytest.raises(InputError, match=expected):
                scoring_kind(questions, JUDGES[judge])


def test_a_refused_set_loads_no_model_and_writes_nothing(tmp_path, capsys, shared_data):
    out = tmp_path / "run"
    assert main(["eval", "--questions", "em-deception", "--judge", "offline", "--out", str(out)]) == 2
    assert "judged by category" in capsys.readouterr().err and not out.exists()


def _trait_judge(prompt: str) -> dict[str, float]:
    """Coherence 80 for every answer; the trait 70 for some answers and 20 for the others."""
    if "coherent" in prompt.splitlines()[0]:
        return {"80": 0.0}
    return {"70": math.log(0.9), "75": math.log(0.1)} if len(prompt) % 2 else {"20": 0.0}


def test_a_trait_set_is_scored_by_its_trait_prompt_and_coherence_and_reported(tiny_model_dir, tmp_path, capsys,
                                                                               shared_data):
    out = tmp_path / "run"
    with JudgeServer(_trait_judge) as server:
        assert main(["eval", "--model", str(tiny_model_dir), "--questions", "trait-evil", "--n", "1", "--max-tokens",
                     "8", "--judge", "openai", "--judge-model", "judge-x", "--judge-base-url", server.base_url,
                     "--cache", str(tmp_path / "cache.sqlite"), "--out", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    overall = metrics["overall"]
    assert metrics["metric"] == "trait" and metrics["trait"] == "evil" and overall["answers"] == 20
    judged = [json.loads(line) for line in (out / "judgements.jsonl").read_text().splitlines()]
    high = sum(r["evil"] > 50 for r in judged)
    assert all(r["coherent"] == pytest.approx(80.0) for r in judged)
    assert overall["expressed_rate"] == pytest.approx(high / 20) and overall["coherent_rate"] == 1.0
    assert overall["mean_score"] == pytest.approx(sum(r["evil"] for r in judged) / 20)
    report = tmp_path / "report.html"
    assert main(["report", str(out), "--out", str(report), "--json"]) == 0
    page = report.read_text()
    assert "Persona trait expression" in page and f"{overall['expressed_rate']:.3f}" in page
