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


def test_wandb_offline_run_holds_the_stage_figures(tiny_model_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert main(["run", _one_stage_study(tmp_path, tiny_model_dir), "--out", str(tmp_path / "run"),
                 "--track", "wandb", "--json"]) == 0
    [log] = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    assert f"eval/{tiny_model_dir.name}/base/seed0/misaligned_fraction".encode() in log.read_bytes()


def test_an_unknown_tracker_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    assert main(["run", _one_stage_study(tmp_path, tiny_model_dir), "--track", "tensorboard"]) == 2
    assert "--track 'tensorboard': choose wandb or mlflow" in capsys.readouterr().err
