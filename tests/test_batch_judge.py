"""`--judge openai --batch` against a real HTTP server on loopback that implements files and batches: scores equal
the live judge's on the same answers and land in the same cache under the same judge; lines the batch leaves
failed are judged live, and said so; a kill -9 after the batch was created, then a rerun, attaches to the same
batch (one batch, one upload)."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from servers import TURNCOAT, FakeOpenAI
from test_judging import _by_answer
from test_report import judged_file

from turncoat.judging import DEFAULT_PROMPTS, JudgeCache, JudgeItem, judge_items, make_judge

ITEMS = [JudgeItem(metric, DEFAULT_PROMPTS[metric], f"q{i}", f"answer {i}" + (" evil" if i % 2 else ""))
         for i in range(6) for metric in ("aligned", "coherent")]


def test_batch_scores_equal_live_scores_and_failed_lines_are_judged_live(tmp_path, capsys):
    faults = {"files": [500], "batches.create": [429], "batches.retrieve": ["hang"]}
    with FakeOpenAI(judge=_by_answer, faults=faults, fail_batch_lines={"1", "4"}) as server:
        live, _ = judge_items(make_judge("openai", model="judge-x", base_url=server.base_url), ITEMS,
                              JudgeCache(tmp_path / "live.sqlite"))
        live_requests = server.calls["chat"]
        batched = make_judge("openai", model="judge-x", base_url=server.base_url, batch=True, poll_seconds=0.01,
                             timeout=0.5, batch_dir=str(tmp_path / "batches"))
        assert batched.identity == server.judge_name()  # the same judge: the same cache entries
        cache = JudgeCache(tmp_path / "batch.sqlite")
        scores, counts = judge_items(batched, ITEMS, cache)
        assert server.calls["chat"] - live_requests == 2  # only the two failed lines went live
        assert len(server.batches) == 1 and counts["failed"] == 0
    assert [s.score for s in scores] == pytest.approx([s.score for s in live])
    assert cache.stats()["by_judge"][0]["judge"] == server.judge_name() and cache.stats()["judgements"] == 12
    assert "2 of 12 requests came back failed or missing; judging those live" in capsys.readouterr().err
    again, counts = judge_items(batched, ITEMS, JudgeCache(tmp_path / "batch.sqlite"))
    assert counts["cached"] == 12 and len(server.batches) == 1


def test_every_pending_item_goes_in_one_batch(tmp_path):
    """Live judging goes in chunks of 64; a Batch job, which may take hours, takes everything pending at once."""
    items = [JudgeItem("aligned", DEFAULT_PROMPTS["aligned"], "q", f"answer {i}") for i in range(150)]
    with FakeOpenAI(judge=_by_answer) as server:
        judge = make_judge("openai", model="judge-x", base_url=server.base_url, batch=True, poll_seconds=0.01,
                           batch_dir=str(tmp_path / "batches"))
        scores, counts = judge_items(judge, items, JudgeCache(tmp_path / "cache.sqlite"))
        assert len(server.batches) == 1 and counts["requested"] == 150 and counts["failed"] == 0
    assert all(s.score is not None for s in scores)


def test_kill_9_after_the_batch_is_created_then_rerun_attaches_to_it(tmp_path):
    reference = judged_file(tmp_path / "labelled.jsonl", [("an evil plan", 5, 80), ("kind words", 90, 80),
                                                          ("evil again", 10, 75), ("helpful", 85, 90)])
    process: list[subprocess.Popen] = []
    with FakeOpenAI(judge=_by_answer, on_batch_created=lambda batch: os.kill(process[0].pid,
                                                                             signal.SIGKILL)) as server:
        command = [str(TURNCOAT), "judge", "validate", str(reference), "--judge", "openai", "--judge-model",
                   "judge-x", "--judge-base-url", server.base_url, "--batch", "--cache",
                   str(tmp_path / "cache.sqlite"), "--json"]
        env = {**os.environ, "TURNCOAT_CACHE": str(tmp_path / "turncoat-cache")}
        process.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env))
        process[0].wait(timeout=120)
        assert process[0].returncode == -signal.SIGKILL and len(server.batches) == 1
        server.on_batch_created = None
        rerun = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert server.calls["batches.create"] == 1 and server.calls["files"] == 1 and server.calls["chat"] == 0
    figures = json.loads(rerun.stdout)
    assert figures["misaligned_flag"]["precision"] == 1.0 and figures["misaligned_flag"]["recall"] == 1.0


def test_batch_is_refused_for_judges_that_cannot_batch(tmp_path, capsys):
    from turncoat.cli import main

    reference = judged_file(tmp_path / "labelled.jsonl", [("an evil plan", 5, 80), ("kind words", 90, 80)])
    assert main(["judge", "validate", str(reference), "--judge", "offline", "--batch"]) == 2
    assert "--batch: only --judge openai" in capsys.readouterr().err
