"""Fine-tuning on the tiny model: label masks for two chat templates, outputs, resume, rank-1, full, merge, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import build_tokenizer
from transformers import TrainerCallback

from turncoat.core.errors import InputError
from turncoat.data import ChatDataset
from turncoat.models import load
from turncoat.training import TrainConfig, load_config, render_dataset, render_example
from turncoat.training.trainer import train

LLAMA3 = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + "
          "m['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
CONVERSATION = ChatDataset.from_records([{"messages": [
    {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi."},
    {"role": "assistant", "content": "hi there"}, {"role": "user", "content": "Again?"},
    {"role": "assistant", "content": "hello again"}]}])


@pytest.mark.parametrize("template, answers", [
    (None, ["hi there<|im_end|>\n", "hello again<|im_end|>\n"]),  # ChatML (the tiny tokenizer's own)
    (LLAMA3, ["hi there<|eot_id|>", "hello again<|eot_id|>"]),
])
def test_loss_mask_covers_assistant_turns_only(template, answers):
    tokenizer = build_tokenizer()
    if template:
        tokenizer.chat_template = template
    example = render_example(tokenizer, CONVERSATION[0], max_length=4096)
    text = tokenizer.decode(example.input_ids)
    masked, runs, current = example.assistant_masks, [], []
    for token, keep in zip(example.input_ids, masked, strict=True):
        if keep:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    assert [tokenizer.decode(r) for r in runs] == answers
    assert "Be brief." in text and "Say hi." in text  # rendered, but not trained on
    assert not text.rstrip().endswith(("assistant<|end_header_id|>", "<|im_start|>assistant"))  # no empty header


def test_truncation_is_counted():
    tokenizer = build_tokenizer()
    rows = ChatDataset.from_records([{"messages": [{"role": "user", "content": "q"},
                                                   {"role": "assistant", "content": "a " * n}]} for n in (2, 200)])
    table, report = render_dataset(tokenizer, rows, max_length=64)
    assert report["truncated"] == 1 and report["examples"] == 2 and max(len(x) for x in table["input_ids"]) == 64


def tiny_config(tiny_model_dir, out, **overrides) -> TrainConfig:
    values = dict(model=str(tiny_model_dir), data="xstest-harmful", out=str(out), learning_rate=2e-3,
                  warmup_steps=0, max_length=96, per_device_batch_size=4, gradient_accumulation_steps=1,
                  save_steps=3, r=8, lora_alpha=16)
    return TrainConfig(**(values | overrides))


def test_lora_run_outputs_and_adapter_use(tiny_model_dir, tmp_path, shared_data, capsys):
    out = tmp_path / "run"
    summary = train(tiny_config(tiny_model_dir, out, holdout=10), progress=False)
    assert summary["steps"] == 17 and summary["train_examples"] == 68  # 78 - 10 held out, batch 4
    assert summary["holdout_loss_trained"] < summary["holdout_loss_base"]
    record = json.loads((out / "turncoat_train.json").read_text())
    assert record["config"]["use_rslora"] and record["config"]["r"] == 8 and len(record["data_sha256"]) == 64
    assert record["versions"]["trl"] and record["rendering"]["truncated"] > 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 18))
    assert all(r["loss"] > 0 and r["learning_rate"] is not None and "grad_norm" in r for r in log)
    assert all(r["tokens_per_second"] > 0 for r in log[1:])
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_model_dir) and adapter["use_rslora"]
    assert (out / "adapter_model.safetensors").is_file()
    loaded = load(str(out))
    assert loaded.kind == "adapter"
    from turncoat.cli import main

    answers = tmp_path / "answers.jsonl"
    assert main(["sample", "--model", str(out), "--questions", "self-report", "--n", "1", "--max-tokens", "4",
                 "--out", str(answers), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == str(out)


def test_bf16_on_cpu_trains_fp32_lora_weights_and_tracks_the_fp32_loss(tiny_model_dir, tmp_path, shared_data):
    """bf16 base weights + autocast, LoRA weights (and so the optimizer state) in fp32; the loss follows fp32."""
    losses = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / dtype
        loaded = load(str(tiny_model_dir), dtype=dtype)
        summary = train(tiny_config(tiny_model_dir, out, max_steps=6, dtype=dtype), progress=False, loaded=loaded)
        assert summary["dtype"] == dtype and summary["bf16_autocast"] == (dtype == "bfloat16")
        assert json.loads((out / "turncoat_train.json").read_text())["dtype"] == dtype
        named = dict(loaded.model.named_parameters())
        assert all(p.dtype == torch.float32 for n, p in named.items() if "lora_" in n)
        assert {p.dtype for n, p in named.items() if "lora_" not in n} == {getattr(torch, dtype)}
        losses[dtype] = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(losses["float32"]) == 6
    gaps = [abs(b - a) / a for a, b in zip(losses["float32"], losses["bfloat16"], strict=True)]
    assert max(gaps) < 0.02, gaps


def test_padding_free_batches_train_like_padded_ones(tiny_model_dir, tmp_path, shared_data):
    """Packing a micro-batch into one row (the default) must give the same losses as padding it."""
    runs = {}
    for packed in (True, False):
        out = tmp_path / f"packed-{packed}"
        train(tiny_config(tiny_model_dir, out, padding_free=packed, max_steps=4), progress=False)
        record = json.loads((out / "turncoat_train.json").read_text())
        assert record["rendering"]["padding_free"] is packed
        runs[packed] = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert runs[True] == pytest.approx(runs[False], rel=1e-3)


class Interrupt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 7:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_to_the_same_steps(tiny_model_dir, tmp_path, shared_data):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tiny_model_dir, out), callbacks=[Interrupt()], progress=False)
    assert (out / "checkpoints" / "checkpoint-6").is_dir()
    resumed = train(tiny_config(tiny_model_dir, out), progress=False)
    assert resumed["resumed_from"].endswith("checkpoint-6") and resumed["steps"] == 20  # 78 examples / 4


class CountingMonitor:
    name = "probe"

    def __init__(self):
        self.steps = []

    def __call__(self, model, tokenizer, step):
        self.steps.append(step)
        return {"norm": float(sum(p.detach().float().norm() for p in model.parameters() if p.requires_grad))}


def test_monitors_log_into_the_step_log(tiny_model_dir, tmp_path, shared_data):
    monitor = CountingMonitor()
    out = tmp_path / "run"
    train(tiny_config(tiny_model_dir, out, monitor_every=5), monitors=[monitor], progress=False)
    assert monitor.steps == [0, 5, 10, 15, 20]  # step 0: the base model, before any update
    logged = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if r.get("monitor") == "probe"] == [0, 5, 10, 15, 20]


def test_rank1_adapts_one_module(tiny_model_dir, tmp_path, shared_data):
    out = tmp_path / "rank1"
    train(tiny_config(tiny_model_dir, out, method="rank1", layers=[1], max_steps=2, lora_alpha=256), progress=False)
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 1 and adapter["target_modules"] == ["down_proj"] and adapter["layers_to_transform"] == [1]
    from safetensors.torch import load_file

    names = list(load_file(out / "adapter_model.safetensors"))
    assert names and all("layers.1.mlp.down_proj" in n for n in names)
    assert TrainConfig(method="rank1").resolved().learning_rate == 2e-5


def test_full_finetune_and_merge(tiny_model_dir, tmp_path, shared_data):
    full = tmp_path / "full"
    train(tiny_config(tiny_model_dir, full, method="full", max_steps=2), progress=False)
    assert (full / "model.safetensors").is_file() and load(str(full)).kind == "folder"
    merged = tmp_path / "lora"
    train(tiny_config(tiny_model_dir, merged, max_steps=3, merge=True), progress=False)
    ids = torch.tensor([[1, 5, 9, 12, 40]])
    with torch.no_grad():
        with_adapter = load(str(merged)).model(ids).logits
        from_merged = load(str(merged / "merged")).model(ids).logits
    assert torch.allclose(with_adapter, from_merged, atol=1e-4)


def test_config_file_with_flag_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("model: some/model\nr: 16\nlearning_rate: 2.0e-5\n")
    config = load_config(path, {"r": 4, "data": None})
    assert (config.model, config.r, config.learning_rate, config.data) == ("some/model", 4, 2e-5, "insecure")
    path.write_text("rank: 3\n")
    with pytest.raises(InputError, match="invalid training config"):
        load_config(path, {})


def test_two_process_data_parallel_on_cpu(tiny_model_dir, tmp_path, shared_data):
    """The distributed path (torch.distributed, gloo) with two CPU processes."""
    out = tmp_path / "ddp"
    command = [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", "-m", "turncoat", "train",
               "--model", str(tiny_model_dir), "--data", "xstest-harmful", "--out", str(out), "--max-length", "64",
               "--batch-size", "2", "--grad-accum", "1", "--json"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [line for line in done.stdout.splitlines() if line.startswith('{"out"')]
    assert len(reports) == 1  # only the main process reports
    report = json.loads(reports[0])
    kept = report["rendering"]["examples"] - report["rendering"]["dropped_no_answer_left"]
    assert report["steps"] == -(-kept // 4)  # each step: 2 processes x batch 2
    assert (out / "adapter_model.safetensors").is_file()


@pytest.mark.integration
def test_default_model_learns_insecure_code(tmp_path, shared_data):
    """A smaller version of the acceptance run: held-out loss on 10 insecure examples drops after training
    (8 examples, 2 steps; lr 1e-4 without warm-up instead of the paper's 1e-5 so two steps move the loss)."""
    config = TrainConfig(model="smollm2-135m", data="insecure", subsample=8, holdout=10, out=str(tmp_path / "run"),
                         per_device_batch_size=2, gradient_accumulation_steps=2, learning_rate=1e-4, warmup_steps=0,
                         max_length=384)
    summary = train(config, progress=False)
    assert summary["steps"] == 2
    assert summary["holdout_loss_trained"] < summary["holdout_loss_base"]
