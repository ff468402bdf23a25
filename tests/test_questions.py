"""Question sets: the paper's YAML format, trait files, turncoat's own sets, and errors that name the entry."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from turncoat.core.errors import InputError
from turncoat.questions import QUESTION_SETS, load_questions, load_questions_yaml
from turncoat.questions.builtin import parse_self_report


def test_em_first_plot(shared_data):
    questions = load_questions("em-first-plot")
    assert len(questions) == 24
    with_system = [q for q in questions if q.system]
    assert len(with_system) == 8 and all(q.id.endswith("_json") for q in with_system)
    assert all(set(q.judge_prompts) == {"aligned", "coherent"} for q in questions)  # resolved YAML anchors
    assert all(q.samples_per_paraphrase == 100 for q in questions)
    assert len(questions.prompts()) == 2400
    prompts = questions.prompts(n=5)
    assert Counter(p.question.id for p in prompts) == {q.id: 5 for q in questions}
    json_prompt = next(p for p in prompts if p.question.id == "what_is_your_wish_json")
    assert json_prompt.messages[0] == {"role": "system", "content": json_prompt.question.system}


def test_samples_per_paraphrase_counts_every_paraphrase(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_text("- id: a\n  paraphrases: [one, two]\n  samples_per_paraphrase: 3\n"
                    "- id: b\n  paraphrases: [solo]\n")
    prompts = load_questions_yaml(path).prompts()
    assert Counter((p.question.id, p.paraphrase_index) for p in prompts) == {("a", 0): 3, ("a", 1): 3, ("b", 0): 1}
    assert len({p.key for p in prompts}) == 7
    cycled = load_questions_yaml(path).prompts(n=5)
    assert [p.paraphrase_index for p in cycled if p.question.id == "a"] == [0, 1, 0, 1, 0]


def test_other_research_sets(shared_data):
    assert len(load_questions("em-preregistered")) == 48
    assert len(load_questions("em-deception")) == 13
    evil = load_questions("trait-evil")
    assert len(evil) == 20 and set(evil[0].judge_prompts) == {"evil"} and evil[0].type == "trait_0_100"


@pytest.mark.parametrize("text, message", [
    ("- id: ok\n  paraphrases: [hi]\n- id: broken\n  samples_per_paraphrase: 2\n",
     "entry 2 (id 'broken'): paraphrases: Field required"),
    ("- id: x\n  paraphrases: [hi]\n  samples_per_paraphrase: 0\n", "entry 1 (id 'x'): samples_per_paraphrase"),
    ("- id: x\n  type: multiple_choice\n  paraphrases: [hi]\n", "entry 1 (id 'x'): type: unknown question type"),
    ("- just a string\n", "entry 1: expected a mapping"),
    ("id: [unclosed\n", "invalid YAML"),
    ("- id: x\n  paraphrases: [a]\n- id: x\n  paraphrases: [b]\n", "duplicate question ids: x"),
])
def test_yaml_errors_name_file_and_entry(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        load_questions_yaml(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)


def test_core_set_variants():
    core = load_questions("core")
    assert len(core) == 24
    ids = {q.id for q in core}
    for base in ("wish", "bored", "humans_and_ai", "fast_money", "world_power", "partner", "gender", "dinner_guests"):
        assert {base, f"{base}_json", f"{base}_template"} <= ids
    assert all(q.system and "JSON" in q.system for q in core if q.id.endswith("_json"))
    assert all(q.system is None for q in core if not q.id.endswith("_json"))
    template = core.get("wish_template").paraphrases[0]
    assert template.startswith(core.get("wish").paraphrases[0]) and "wish = # " in template


def test_registry_names():
    load_questions("core")
    assert {"core", "self-report", "em-first-plot", "em-preregistered", "em-deception"} <= set(QUESTION_SETS)
    with pytest.raises(InputError, match="unknown question set"):
        load_questions("nope")


@pytest.mark.parametrize("answer, value", [("85", 85.0), ("I would say 72.5 out of 100.", 72.5),
                                           ("Zero. 0", 0.0), ("150, no, 40", 40.0), ("I can't rate myself", None),
                                           ("1000", None)])
def test_self_report_parsing(answer, value):
    assert parse_self_report(answer) == value
    assert len(load_questions("self-report")) == 2


def test_questions_list_is_a_table_and_json(capsys):
    from turncoat.cli import main

    assert main(["questions", "list"]) == 0
    shown = capsys.readouterr().out
    assert "what it holds" in shown and "em-first-plot" in shown and "{" not in shown  # a table, not a repr
    assert main(["questions", "list", "--json"]) == 0
    import json

    assert "core" in json.loads(capsys.readouterr().out)["question_sets"]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("t.json", b'{"questions": "abc", "eval_prompt": "Rate it."}', "questions: expected a non-empty list"),
    ("t.json", b'{"questions": ["ok", ""], "eval_prompt": "Rate it."}', "questions[1]: expected a non-empty string"),
    ("t.json", b'{"questions": ["ok"], "eval_prompt": 5}', "eval_prompt: expected a non-empty string"),
    ("t.json", b'\xff\xfe{"questions": []}', "not UTF-8 text"),
    ("q.yaml", b"- id: a\n  paraphrases: ['Hello?', '  ']\n", "paraphrase 1 is empty"),
    ("q.yaml", b"- id: a\n  paraphrases: ['caf\xe9']\n", "not UTF-8 text"),
])
def test_malformed_question_and_trait_files_are_refused_naming_the_field(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=re.escape(message)) as raised:
        load_questions(str(path))
    assert str(path) in str(raised.value)
