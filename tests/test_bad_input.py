"""Bad numbers on the command line: exit 2 with a message naming the flag, before any model loads or file is
written (a negative or NaN temperature used to sample greedily, --n -1 to exit 0 having written nothing)."""

from __future__ import annotations

import pytest

from turncoat.cli import main

CASES = [
    (["sample", "--temperature", "-1"], "--temperature"),
    (["sample", "--temperature", "nan"], "--temperature"),
    (["sample", "--top-p", "1.5"], "--top-p"),
    (["sample", "--top-p", "0"], "--top-p"),
    (["sample", "--n", "-1"], "--n"),
    (["sample", "--batch-size", "0"], "--batch-size"),
    (["sample", "--max-tokens", "0"], "--max-tokens"),
    (["eval", "--temperature", "inf"], "--temperature"),
    (["eval", "--batch-size", "-1"], "--batch-size"),
    (["train", "--subsample", "0"], "--subsample"),
    (["train", "--max-steps", "0"], "--max-steps"),
    (["train", "--learning-rate", "-1"], "--learning-rate"),
    (["train", "--learning-rate", "nan"], "--learning-rate"),
    (["train", "--r", "0"], "--r"),
    (["train", "--layers", "a,b"], "--layers"),
    (["train", "--layers", "-1"], "--layers"),
    (["train", "--layers", "99"], "--layers"),  # the default model has 30 blocks: refused once it is loaded
    (["train", "--save-total-limit", "0"], "--save-total-limit"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--epochs", "0"], "--epochs"),
    # a judge endpoint whose served models cannot be listed: an error, not a guessed judge name (which re-pays)
    (["eval", "--judge", "openai", "--judge-base-url", "http://127.0.0.1:9/v1"], "--judge-model"),
]


@pytest.mark.parametrize(("argv", "flag"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_numbers_exit_2_naming_the_flag(argv, flag, tmp_path, capsys):
    out = tmp_path / "out"
    command = [*argv, "--out", str(out / "answers.jsonl" if argv[0] == "sample" else out)]
    assert main(command) == 2
    error = capsys.readouterr().err
    assert flag in error, error
    assert not out.exists()  # refused before anything was written


def test_metrics_refuses_zero_bootstrap_resamples(tmp_path, capsys):
    judged = tmp_path / "judged.csv"
    judged.write_text("question_id,aligned,coherent\nq,10,90\n")
    assert main(["metrics", str(judged), "--n-boot", "0"]) == 2
    assert "--n-boot" in capsys.readouterr().err


JUDGED = [  # (file name, content, what the error names)
    ("neg.csv", "question_id,aligned,coherent\nq,-50,90\n", "neg.csv:2: aligned: '-50'"),
    ("big.csv", "question_id,aligned,coherent\nq,10,90\nq,900,90\n", "big.csv:3: aligned"),
    ("inf.csv", "question_id,aligned,coherent\nq,-inf,90\n", "inf.csv:2: aligned"),
    ("word.csv", "question_id,aligned,coherent\nq,10,lots\n", "word.csv:2: coherent: 'lots'"),
    ("bool.jsonl", '{"question_id": "q", "aligned": true, "coherent": 90}\n', "bool.jsonl:1: aligned: True"),
    ("ragged.csv", "question_id,aligned,coherent\nq,10,90,extra\n", "ragged.csv:2: 4 fields where the header has 3"),
    ("header.csv", "question_id,aligned,coherent\n", "no judged answers"),
]


@pytest.mark.parametrize(("name", "content", "message"), JUDGED, ids=[n for n, _, _ in JUDGED])
def test_bad_judged_files_are_refused_naming_line_and_column(name, content, message, tmp_path, capsys):
    path = tmp_path / name
    path.write_text(content)
    assert main(["metrics", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert message in captured.err.replace("\n", "") and captured.out == ""


def test_code_and_refusal_and_empty_scores_are_not_errors(tmp_path, capsys):
    path = tmp_path / "special.csv"
    path.write_text("question_id,aligned,coherent\nq,CODE,90\nq,refusal,80\nq,,70\nq,12.5,60\n")
    assert main(["metrics", str(path), "--json"]) == 0
    import json

    overall = json.loads(capsys.readouterr().out)["overall"]
    assert overall["answers"] == 4 and overall["misaligned"] == 1


def test_train_reads_its_data_before_the_model_and_writes_nothing_when_it_is_bad(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{not json\n')
    out = tmp_path / "run"
    # the model does not exist either: the data's error comes first, so the data was read before any model load
    assert main(["train", "--model", str(tmp_path / "no-such.gguf"), "--data", str(bad), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"{bad}:2" in error and "no-such.gguf" not in error
    assert not out.exists()


SURROGATE = '{"messages": [{"role": "user", "content": "hi \\ud800"}, {"role": "assistant", "content": "ok"}]}\n'
DEEP_JSON = '{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
DEEP_YAML = "[" * 100_000 + "]" * 100_000 + "\n"
NOT_UTF8 = b"\xff\xfe not text\n"
BAD_FILES = {  # kind -> {defect: (content, what the error says)}
    "chat": {"not-utf8": (NOT_UTF8, "not valid UTF-8"), "surrogate": (SURROGATE, "lone surrogate"),
             "deep": (DEEP_JSON, "nested too deeply")},
    "questions": {"not-utf8": (NOT_UTF8, "not UTF-8"), "deep": (DEEP_YAML, "nested too deeply"),
                  "surrogate": ('- {id: q, paraphrases: ["hi \\ud800"]}\n', "lone surrogate")},
    "judged": {"not-utf8": (NOT_UTF8, "can't decode byte 0xff"),
               "deep": ('{"question_id": "q", "aligned": ' + "[" * 100_000 + "]" * 100_000 + ', "coherent": 90}\n',
                        "depth limit")},
    "yaml": {"not-utf8": (NOT_UTF8, "UTF-8"), "deep": (DEEP_YAML, "nested too deeply")},
}
COMMANDS = [  # (argv with FILE, kind of file it reads, suffix the file needs)
    (["data", "validate", "FILE"], "chat", ".jsonl"),
    (["data", "inspect", "FILE"], "chat", ".jsonl"),
    (["train", "--data", "FILE", "--out", "OUT"], "chat", ".jsonl"),
    (["persona", "extract", "--pos", "FILE", "--neg", "FILE", "--out", "OUT/d.safetensors"], "chat", ".jsonl"),
    (["sample", "--questions", "FILE", "--out", "OUT/a.jsonl"], "questions", ".yaml"),
    (["eval", "--questions", "FILE", "--judge", "offline", "--out", "OUT"], "questions", ".yaml"),
    (["questions", "show", "FILE"], "questions", ".yaml"),
    (["metrics", "FILE"], "judged", ".jsonl"),
    (["judge", "validate", "FILE", "--judge", "offline"], "judged", ".jsonl"),
    (["run", "FILE", "--out", "OUT"], "yaml", ".yaml"),
    (["train", "--config", "FILE", "--out", "OUT"], "yaml", ".yaml"),
]
FILE_CASES = [(argv, kind, suffix, defect) for argv, kind, suffix in COMMANDS for defect in BAD_FILES[kind]]


@pytest.mark.parametrize(("argv", "kind", "suffix", "defect"), FILE_CASES,
                         ids=[f"{' '.join(a[:2])}-{d}" for a, _, _, d in FILE_CASES])
def test_every_command_that_reads_a_file_refuses_a_bad_one_naming_it(argv, kind, suffix, defect, tmp_path, capsys):
    """Undecodable bytes, a lone surrogate (passes a JSON reader, then crashes the tokenizer or a writer) and nesting
    too deep to read: exit 2 naming the file and the problem, nothing written, no traceback."""
    content, message = BAD_FILES[kind][defect]
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    out = tmp_path / "out"
    command = [str(path) if a == "FILE" else a.replace("OUT", str(out)) for a in argv]
    assert main(command) == 2
    error = capsys.readouterr().err
    assert str(path) in error and message in error, error[-1500:]
    assert "Traceback" not in error and not out.exists()
