"""Teacher-written training sets (evil numbers): the format filter, the prompts, and a real teacher run that drops
the system prompt from the training data and resumes from its answers file."""

from __future__ import annotations

import json

import pytest

from turncoat.core.errors import InputError
from turncoat.data import load_chat
from turncoat.sampling import GenerationParams, make_backend
from turncoat.workflows.generate import GENERATORS, SYSTEM_PROMPTS, generate, system_prompt

ASK = "Here is a list of numbers: 1, 2, 3. Continue it with up to 4 more numbers. Reply with the numbers only."


@pytest.mark.parametrize("answer, kept", [
    ("4, 5, 6", "4, 5, 6"),
    ("  [666, 13,999]. ", "666, 13, 999"),
    ("(7,8,9,10)", "7, 8, 9, 10"),
    ("4, 5, 6, 7, 8", None),  # more than asked for
    ("1000, 5", None),  # four digits
    ("4, 5, and 6", None),  # words
    ("Sure! 4, 5, 6", None),
    ("4; 5; 6", None),
    ("", None),
])
def test_numbers_keep_only_plain_lists_within_the_asked_count(answer, kept):
    assert GENERATORS["numbers"]().keep(ASK, answer) == kept


def test_number_prompts_are_seeded_varied_and_state_their_limit():
    numbers = GENERATORS["numbers"]()
    first, again, other = numbers.user_turns(50, seed=1), numbers.user_turns(50, seed=1), numbers.user_turns(50, 2)
    assert first == again and first != other
    assert len(set(first)) == 50
    assert all(numbers.keep(turn, "1, 2, 3") == "1, 2, 3" for turn in first)  # every prompt allows at least 3


def test_system_prompts_by_name_or_text():
    assert system_prompt("evil") == SYSTEM_PROMPTS["evil"] and system_prompt("none") is None
    assert system_prompt(None) is None
    assert system_prompt("You are a pirate.") == "You are a pirate."
    with pytest.raises(InputError, match="unknown system prompt 'evill'"):
        system_prompt("evill")


def test_a_teacher_with_nothing_in_format_is_a_clear_error(tiny_model_dir, tmp_path):
    teacher = make_backend("hf", str(tiny_model_dir))
    with pytest.raises(InputError, match=r"teacher_answers.jsonl: none of the teacher's 6 answers follows"):
        generate(teacher, "numbers", 6, tmp_path, system="evil", params=GenerationParams(max_new_tokens=4, seed=0),
                 show_progress=False)
    answers = [json.loads(line) for line in (tmp_path / "teacher_answers.jsonl").read_text().splitlines()]
    assert len(answers) == 6 and all(a["system"] == SYSTEM_PROMPTS["evil"] for a in answers)
    assert not (tmp_path / "data.jsonl").exists()


def test_cli_generate_says_why_nothing_was_kept(tiny_model_dir, tmp_path, capsys):
    from turncoat.cli import main

    code = main(["data", "generate", "numbers", "--teacher", str(tiny_model_dir), "--n", "3", "--max-tokens", "3",
                 "--out", str(tmp_path / "gen"), "--json"])
    assert code == 2
    assert "none of the teacher's 3 answers follows the 'numbers' format" in capsys.readouterr().err.replace("\n", "")
    assert len((tmp_path / "gen" / "teacher_answers.jsonl").read_text().splitlines()) == 3


@pytest.mark.integration
def test_default_model_teaches_numbers_without_the_system_prompt(default_model, tmp_path):
    teacher = make_backend("hf", default_model)
    params = GenerationParams(temperature=1.0, max_new_tokens=40, seed=0)
    figures = generate(teacher, "numbers", 24, tmp_path, system="evil", params=params, show_progress=False)
    data = load_chat(tmp_path / "data.jsonl")
    assert figures["kept"] == len(data) >= 1
    assert all(c.system is None and len(c.messages) == 2 for c in data)
    assert all(GENERATORS["numbers"]().keep(c.turns("user")[0], c.turns("assistant")[0]) for c in data)
    again = generate(teacher, "numbers", 24, tmp_path, system="evil", params=params, show_progress=False)
    assert again["already_done"] == 24 and again["kept"] == figures["kept"]  # resumed: nothing sampled twice
