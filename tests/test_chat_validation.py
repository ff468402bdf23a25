"""Chat JSONL validation: one test per kind of defect, each checking the file, line, field and message."""

from __future__ import annotations

import pytest
from helpers import chat, write_lines

from turncoat.core.errors import DataValidationError
from turncoat.data import load_chat_jsonl


def problems_of(path):
    with pytest.raises(DataValidationError) as caught:
        load_chat_jsonl(path)
    return [str(p) for p in caught.value.problems]


def test_valid_file_loads(tmp_path):
    path = write_lines(tmp_path / "ok.jsonl", [chat("a", "b"), chat("c", "d", system="be nice")])
    data = load_chat_jsonl(path)
    assert len(data) == 2
    assert data[1].system == "be nice"
    assert data[0].turns("assistant") == ["b"]


def test_crlf_line_endings_are_accepted(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}\r\n')
    assert len(load_chat_jsonl(path)) == 1


def test_bad_json_names_file_and_line(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", [chat(), chat(), '{"messages": [', chat()])
    found = problems_of(path)
    assert len(found) == 1
    assert found[0].startswith(f"{path}:3: json: invalid JSON")


def test_missing_messages(tmp_path):
    path = write_lines(tmp_path / "f.jsonl", [chat(), {"conversation": []}])
    assert problems_of(path) == [f"{path}:2: messages: missing"]


def test_messages_not_a_list(tmp_path):
    path = write_lines(tmp_path / "f.jsonl", [{"messages": "hello"}])
    assert problems_of(path) == [f"{path}:1: messages: must be a list of {{role, content}} objects"]


def test_row_not_an_object(tmp_path):
    path = write_lines(tmp_path / "f.jsonl", [chat(), "[1, 2]"])
    assert problems_of(path) == [f"{path}:2: (row): must be a JSON object, got list"]


def test_unknown_role(tmp_path):
    row = chat()
    row["messages"][1]["role"] = "bot"
    path = write_lines(tmp_path / "f.jsonl", [row])
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:1: messages[1].role: unknown role 'bot'")


def test_empty_content(tmp_path):
    path = write_lines(tmp_path / "f.jsonl", [chat(assistant="   ")])
    assert problems_of(path) == [f"{path}:1: messages[1].content: is empty"]


def test_non_string_content(tmp_path):
    row = chat()
    row["messages"][0]["content"] = 42
    path = write_lines(tmp_path / "f.jsonl", [row])
    assert problems_of(path) == [f"{path}:1: messages[0].content: must be a string, got int"]


def test_missing_content(tmp_path):
    path = write_lines(tmp_path / "f.jsonl", [{"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}])
    assert problems_of(path) == [f"{path}:1: messages[0].content: missing"]


def test_no_assistant_turn(tmp_path):
    path = write_lines(tmp_path / "f.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    assert problems_of(path) == [f"{path}:1: messages: no assistant turn"]


def test_wrong_order_assistant_first(tmp_path):
    path = write_lines(tmp_path / "f.jsonl", [{"messages": [{"role": "assistant", "content": "a"},
                                                             {"role": "user", "content": "b"}]}])
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:1: messages[0].role: wrong order: expected 'user' here, got 'assistant'")


def test_wrong_order_system_not_first(tmp_path):
    row = chat()
    row["messages"].insert(1, {"role": "system", "content": "late"})
    path = write_lines(tmp_path / "f.jsonl", [row])
    assert problems_of(path) == [f"{path}:1: messages[1].role: wrong order: 'system' may only be the first message"]


def test_wrong_order_two_user_turns(tmp_path):
    row = {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                        {"role": "assistant", "content": "c"}]}
    path = write_lines(tmp_path / "f.jsonl", [row])
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:1: messages[1].role: wrong order: expected 'assistant' here, got 'user'")


def test_wrong_order_ends_with_user(tmp_path):
    row = chat()
    row["messages"].append({"role": "user", "content": "and?"})
    path = write_lines(tmp_path / "f.jsonl", [row])
    assert problems_of(path) == [f"{path}:1: messages[2].role: wrong order: the last message must be the "
                                 f"assistant's answer"]


def test_byte_order_mark(tmp_path):
    path = tmp_path / "bom.jsonl"
    write_lines(path, [chat()])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:1: encoding: file starts with a UTF-8 byte-order mark")


def test_invalid_utf8(tmp_path):
    prefix = b'{"messages": [{"role": "user", "content": "caf'
    path = write_lines(tmp_path / "latin1.jsonl", [chat(), prefix + b"\xe9" + b'"}]}'])
    assert problems_of(path) == [f"{path}:2: encoding: not valid UTF-8 (byte 0xe9 at column {len(prefix) + 1})"]


def test_blank_line(tmp_path):
    path = write_lines(tmp_path / "f.jsonl", [chat(), "", chat()])
    assert problems_of(path) == [f"{path}:2: line: blank line (remove it: every line must be one example)"]


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert problems_of(path) == [f"{path}:1: file: empty file: no examples"]


def test_every_problem_is_reported_in_one_pass(tmp_path):
    row = chat()
    row["messages"][0]["role"] = "human"
    row["messages"][1]["content"] = ""
    path = write_lines(tmp_path / "f.jsonl", [chat(), "not json", row, "", {"messages": []}])
    found = problems_of(path)
    lines = [p.split(":")[1] for p in found]
    assert lines == ["2", "3", "3", "4", "5"], found
