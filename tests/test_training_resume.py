"""kill -9 of `turncoat train` in the middle of writing a checkpoint, then a rerun: the cut-off checkpoint is
skipped and removed, training continues from the last complete one, every step is logged once and train_loss covers
all steps, as in an uninterrupted run. A rerun with another model, data or setting is refused, naming it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import chat, write_lines
from servers import TURNCOAT

ARGS = ["--data", "xstest-harmful", "--learning-rate", "2e-3", "--max-length", "96", "--batch-size", "4",
        "--grad-accum", "1", "--save-steps", "3", "--save-total-limit", "5", "--r", "8", "--lora-alpha", "16",
        "--seed", "0", "--json"]

# Kill this very process (SIGKILL: no handler, no cleanup) once the Trainer has written checkpoint-9's weights and
# optimizer state but not yet its RNG and trainer state.
KILLED_MID_CHECKPOINT = textwrap.dedent("""
    import os, signal, sys
    import transformers
    original = transformers.Trainer._save_rng_state
    def save_rng_state(self, output_dir):
        if self.state.global_step == 9:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, output_dir)
    transformers.Trainer._save_rng_state = save_rng_state
    from turncoat.cli import main
    sys.exit(main(["train", *sys.argv[1:]]))
""")


def _train(model: Path, out: Path, *more: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(TURNCOAT), "train", "--model", str(model), "--out", str(out), *ARGS, *more],
                          capture_output=True, text=True, timeout=600)


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_kill_mid_checkpoint_then_rerun_matches_an_uninterrupted_run(tiny_model_dir, tmp_path, shared_data):
    whole = _train(tiny_model_dir, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    uninterrupted = json.loads(whole.stdout)

    out = tmp_path / "killed"
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_CHECKPOINT, "--model", str(tiny_model_dir),
                             "--out", str(out), *ARGS], capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL
    cut = out / "checkpoints" / "checkpoint-9"
    assert cut.is_dir() and not (cut / "trainer_state.json").exists()  # what a kill mid-write leaves

    rerun = _train(tiny_model_dir, out)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    resumed = json.loads(rerun.stdout)
    assert resumed["resumed_from"].endswith("checkpoint-6") and resumed["steps"] == uninterrupted["steps"] == 20
    assert f"removed {cut}: an incomplete checkpoint" in rerun.stderr
    assert (cut / "trainer_state.json").is_file()  # written again, whole, when training passed step 9
    steps = [r["step"] for r in _log(out) if "loss" in r]
    assert steps == list(range(1, 21))  # each step once, though steps 7-9 were logged before the kill too
    whole_losses = [r["loss"] for r in _log(tmp_path / "whole") if "loss" in r]
    losses = [r["loss"] for r in _log(out) if "loss" in r]
    assert losses == pytest.approx(whole_losses, rel=1e-4)
    assert resumed["train_loss"] == pytest.approx(sum(losses) / 20, rel=1e-6)  # all 20 steps, not the last 14
    assert resumed["train_loss"] == pytest.approx(uninterrupted["train_loss"], rel=1e-4)


def test_a_rerun_of_another_training_into_the_same_out_is_refused(tiny_model_dir, tmp_path, shared_data):
    out = tmp_path / "run"
    other_data = write_lines(tmp_path / "other.jsonl", [chat(f"question {i}", f"answer {i}") for i in range(12)])
    first = _train(tiny_model_dir, out, "--max-steps", "3")
    assert first.returncode == 0, first.stderr[-2000:]
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    for more, named in [(["--learning-rate", "1e-3"], "learning_rate (0.002 there, 0.001 now)"),
                        (["--data", str(other_data)], "data_sha256"),
                        (["--r", "4"], "r (8 there, 4 now)")]:
        other = _train(tiny_model_dir, out, "--max-steps", "3", *more)
        assert other.returncode == 2, (more, other.stderr[-1500:])
        assert "its checkpoints are of another training" in other.stderr and named in other.stderr, other.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before
    # bookkeeping may change: more checkpoints kept, another logging of the same training
    again = _train(tiny_model_dir, out, "--max-steps", "3", "--save-total-limit", "3")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["resumed_from"].endswith("checkpoint-3")
