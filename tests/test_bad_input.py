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
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--epochs", "0"], "--epochs"),
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
