"""Training-time interventions (persona vectors' preventative steering; CAFT) on the tiny model: the hooks act in
training forward passes only, and nothing of them is saved with the adapter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_training import tiny_config
from transformers import TrainerCallback

from turncoat.activations.directions import Direction
from turncoat.activations.hooks import block_names, reading_hook
from turncoat.models import load
from turncoat.training.trainer import train


@pytest.fixture
def direction(tmp_path):
    vectors = np.random.default_rng(0).standard_normal((2, 32)).astype(np.float32)  # the tiny model: 2 x 32
    return str(Direction(vectors, [0, 1], {"best_layer": 1}).save(tmp_path / "d.safetensors"))


def _losses(out) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)]


class BlockOutputs(TrainerCallback):
    """Every block's output during each optimiser step, as the next hook in line sees it (after turncoat's)."""

    def __init__(self):
        self.outputs, self.handles, self.steps = [], [], 0

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        modules = dict(model.named_modules())
        self.handles = [modules[name].register_forward_hook(reading_hook(self.outputs)) for name in
                        block_names(model)]

    def on_step_end(self, args, state, control, **kwargs):
        for handle in self.handles:
            handle.remove()
        self.steps += 1


def test_steering_acts_in_training_passes_only_and_is_not_saved(tiny_model_dir, tmp_path, direction,
                                                                shared_data):
    plain = train(tiny_config(tiny_model_dir, tmp_path / "plain", max_steps=2), progress=False)
    steered = train(tiny_config(tiny_model_dir, tmp_path / "steered", max_steps=2, steer=[f"{direction}@1:8.0"]),
                    progress=False)
    assert steered["interventions"] == [{"steer": direction, "layer": 1, "alpha": 8.0}]
    assert plain["interventions"] == []
    # step 1: the LoRA update is still zero, so only the hook can make the losses differ
    assert abs(_losses(tmp_path / "steered")[0] - _losses(tmp_path / "plain")[0]) > 1e-3
    config = json.loads((tmp_path / "steered" / "adapter_config.json").read_text())
    assert "steer" not in json.dumps(config)
    loaded = load(str(tmp_path / "steered"))
    assert not any(m._forward_hooks for m in loaded.model.modules())  # nothing attached at inference
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                     str(tmp_path / "steered")).eval()
    ids = loaded.tokenizer("I feel bored.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(loaded.model(ids).logits, peft(ids).logits, atol=1e-6)  # plain PEFT: the same model


def test_caft_projects_the_direction_out_of_every_block_during_training(tiny_model_dir, tmp_path, direction,
                                                                        shared_data):
    seen = BlockOutputs()
    summary = train(tiny_config(tiny_model_dir, tmp_path / "caft", max_steps=2, ablate=[direction]),
                    callbacks=[seen], progress=False)
    assert summary["interventions"] == [{"ablate": direction, "vector_from_layer": 1, "at": "every block"}]
    unit = torch.from_numpy(Direction.load(direction).at(1))
    unit = unit / unit.norm()
    assert seen.steps == 2 and len(seen.outputs) >= 2 * 2  # 2 blocks x at least one forward per step
    largest = max(float((h.float() @ unit).abs().max()) for h in seen.outputs)
    assert largest <= 1e-5, largest
    control = BlockOutputs()
    train(tiny_config(tiny_model_dir, tmp_path / "plain", max_steps=2), callbacks=[control], progress=False)
    # without CAFT the component is there, three orders of magnitude above the bound (the tiny model's residual
    # stream is small: 0.05 here)
    assert max(float((h.float() @ unit).abs().max()) for h in control.outputs) > 1e3 * 1e-5


def test_a_bad_intervention_is_refused_before_training(tiny_model_dir, tmp_path, direction, shared_data):
    from turncoat.core.errors import InputError

    with pytest.raises(InputError, match="layer 5 is not a block of this model"):
        train(tiny_config(tiny_model_dir, tmp_path / "a", steer=[f"{direction}@5:1.0"]), progress=False)
    with pytest.raises(InputError, match="no such direction file"):
        train(tiny_config(tiny_model_dir, tmp_path / "b", ablate=[str(tmp_path / "missing.safetensors")]),
              progress=False)
