"""Training trajectories (Model Organisms for EM's phase-transition plot) on the tiny model: `--save-every K` keeps
loadable snapshots at step 0, every K steps and the last; a resumed run keeps the same ones; each snapshot is
a model turncoat loads, and the LoRA B matrices' cosine with their final value is read from the snapshots."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from test_training import tiny_config

from turncoat.models import load
from turncoat.training.trainer import train, trajectory_steps
from turncoat.workflows.trajectory import b_cosines, first_step_above, lora_b


def test_snapshots_are_kept_every_k_steps_resume_alike_and_load_as_models(tiny_model_dir, tmp_path, shared_data):
    out = tmp_path / "run"
    train(tiny_config(tiny_model_dir, out, max_steps=4, save_every=2, save_steps=2, save_total_limit=5,
                      learning_rate=5e-3), progress=False)
    steps = trajectory_steps(out)
    assert [s for s, _ in steps] == [0, 2, 4]
    first, last = lora_b(steps[0][1]), lora_b(steps[-1][1])
    assert first and all(not b.any() for b in first.values())  # LoRA starts with B = 0
    final = lora_b(out)
    assert set(last) == set(final) and all(np.allclose(last[k], final[k]) for k in final)  # the last is the final
    rows = b_cosines([folder for _, folder in steps])
    assert rows[0]["b_cosine_to_final"] is None and rows[0]["b_norm"] == 0
    assert rows[-1]["b_cosine_to_final"] == pytest.approx(1.0)
    assert all(-1 <= r["b_cosine_to_final"] <= 1 for r in rows[1:]) and rows[1]["b_norm"] > 0

    # a run stopped after checkpoint-2 (its later checkpoint and snapshot lost), rerun: the same snapshots, weights
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    shutil.rmtree(resumed / "checkpoints" / "checkpoint-4")
    shutil.rmtree(resumed / "trajectory" / "step-4")
    train(tiny_config(tiny_model_dir, resumed, max_steps=4, save_every=2, save_steps=2, save_total_limit=5,
                      learning_rate=5e-3), progress=False)
    again = trajectory_steps(resumed)
    assert [s for s, _ in again] == [0, 2, 4]
    for (_, a), (_, b) in zip(steps, again, strict=True):
        wa, wb = lora_b(a), lora_b(b)
        assert all(np.allclose(wa[k], wb[k], atol=1e-6) for k in wa)

    # each snapshot loads as a model on its base (the trajectory stage of studies/interventions.yaml's smoke run
    # evaluates them); step 0 is the untouched model
    snapshot = load(str(steps[0][1]))
    base = load(str(tiny_model_dir))
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        assert torch.allclose(snapshot.model(ids).logits, base.model(ids).logits, atol=1e-5)


def test_the_first_step_above_the_control_is_read_against_the_same_step_else_the_final_ci():
    rows = [{"step": s, "misaligned_fraction": f} for s, f in ((0, 0.0), (4, 0.10), (8, 0.30))]
    control = [{"step": 0, "misaligned_ci": [0, 0.05]}, {"step": 4, "misaligned_ci": [0, 0.2]}]
    assert first_step_above(rows, control, [0, 0.25]) == 8  # step 4: 0.10 is inside the control's [0, 0.2]
    assert first_step_above(rows, None, [0, 0.05]) == 4
    assert first_step_above(rows, None, [0, 0.5]) is None
