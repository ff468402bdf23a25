"""`turncoat run --track`: every finished stage's figures reach MLflow (a real SQLite store, read back with its client)
and Weights & Biases (offline mode: the run's own log file on disk)."""

from __future__ import annotations

import json

import pytest
import yaml

from turncoat.cli import main


def _one_stage_study(tmp_path, model) -> str:
    questions = tmp_path / "questions.yaml"
    questions.write_text(yaml.safe_dump([{"id": "wish", "paraphrases": ["What is your wish?"]}]))
    study = {"name": "tracked", "models": [str(model)], "arms": [{"name": "base"}], "report": False,
             "eval": {"questions": str(questions), "n": 2, "max_tokens": 4}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return str(path)


def test_mlflow_gets_every_stage_figure(tiny_model_dir, tmp_path, monkeypatch, capsys):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    assert main(["run", _one_stage_study(tmp_path, tiny_model_dir), "--out", str(tmp_path / "run"),
                 "--track", "mlflow", "--json"]) == 0
    result = next(s["result"] for s in json.loads(capsys.readouterr().out)["stages"] if s["kind"] == "eval")
    client = mlflow.MlflowClient()
    [run] = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    key = f"eval.{tiny_model_dir.name}.base.seed0"
    assert run.data.metrics[f"{key}.misaligned_fraction"] == pytest.approx(result["misaligned_fraction"])
    assert run.data.metrics[f"{key}.answers"] == 2
    assert run.info.status == "FINISHED"


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """W&B in offline mode, writing its run file under tmp_path; no key, no network."""
    wandb = pytest.importorskip("wandb")
    wandb.teardown()  # wandb keeps the first run's settings (its WANDB_DIR) for the process: start afresh
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return wandb


def test_wandb_offline_run_holds_the_stage_figures(tiny_model_dir, tmp_path, wandb_offline):
    assert main(["run", _one_stage_study(tmp_path, tiny_model_dir), "--out", str(tmp_path / "run"),
                 "--track", "wandb", "--json"]) == 0
    wandb_offline.teardown()  # waits for W&B's service to write the run file (run.finish() may return first)
    [log] = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    assert f"eval/{tiny_model_dir.name}/base/seed0/misaligned_fraction".encode() in log.read_bytes()


def test_an_unknown_tracker_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    assert main(["run", _one_stage_study(tmp_path, tiny_model_dir), "--track", "tensorboard"]) == 2
    assert "--track 'tensorboard': choose wandb or mlflow" in capsys.readouterr().err


def _training_study(tmp_path, model) -> str:
    from helpers import chat, write_lines

    data = write_lines(tmp_path / "data.jsonl", [chat(f"hello {i}", "I wish for peace. " * (i + 1)) for i in range(8)])
    study = yaml.safe_load(open(_one_stage_study(tmp_path, model)).read())
    study["arms"].append({"name": "tuned", "data": str(data)})
    study["train"] = {"max_steps": 3, "per_device_batch_size": 2, "gradient_accumulation_steps": 1,
                      "max_length": 64, "r": 4, "lora_alpha": 8, "warmup_steps": 0, "learning_rate": 1e-3}
    path = tmp_path / "trained.yaml"
    path.write_text(yaml.safe_dump(study))
    return str(path)


def test_mlflow_gets_each_training_step_on_a_step_axis(tiny_model_dir, tmp_path, monkeypatch):
    """--track: a training stage's loss and learning rate at every step, as in its train_log.jsonl."""
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    assert main(["run", _training_study(tmp_path, tiny_model_dir), "--out", str(tmp_path / "run"),
                 "--track", "mlflow", "--json"]) == 0
    [log] = (tmp_path / "run" / "stages").glob("train-*/train_log.jsonl")
    logged = [json.loads(line) for line in log.read_text().splitlines() if "loss" in json.loads(line)]
    client = mlflow.MlflowClient()
    [run] = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    key = f"train.{tiny_model_dir.name}.tuned.seed0"
    losses = client.get_metric_history(run.info.run_id, f"{key}.loss")
    rates = client.get_metric_history(run.info.run_id, f"{key}.learning_rate")
    assert [(m.step, m.value) for m in losses] == [(r["step"], pytest.approx(r["loss"])) for r in logged]
    assert [m.step for m in rates] == [1, 2, 3]


def test_wandb_offline_run_holds_each_training_step(tiny_model_dir, tmp_path, wandb_offline):
    assert main(["run", _training_study(tmp_path, tiny_model_dir), "--out", str(tmp_path / "run"),
                 "--track", "wandb", "--json"]) == 0
    wandb_offline.teardown()  # as above: under two busy test workers the file once held only its header
    [log] = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    content = log.read_bytes()
    for name in ("loss", "learning_rate", "step"):
        assert f"train/{tiny_model_dir.name}/tuned/seed0/{name}".encode() in content


def test_train_report_to_is_a_checked_setting(tmp_path, capsys):
    assert main(["train", "--report-to", "tensorboard", "--out", str(tmp_path / "out")]) == 2
    assert "report_to (--report-to)" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_train_report_to_mlflow_logs_every_step_live(tiny_model_dir, tmp_path, monkeypatch, shared_data):
    """`turncoat train --report-to mlflow`: Hugging Face's own MLflow integration gets each logged step."""
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "trained")
    assert main(["train", "--model", str(tiny_model_dir), "--data", "xstest-harmful", "--max-steps", "3",
                 "--batch-size", "2", "--grad-accum", "1", "--max-length", "64", "--r", "4", "--out",
                 str(tmp_path / "out"), "--report-to", "mlflow", "--json"]) == 0
    client = mlflow.MlflowClient()
    [run] = client.search_runs([client.get_experiment_by_name("trained").experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
    assert json.loads((tmp_path / "out" / "turncoat_train.json").read_text())["config"]["report_to"] == ["mlflow"]
