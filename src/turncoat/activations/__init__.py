"""Activations: capture, project, steer and ablate the residual stream with one hook mechanism; persona directions.

Layer numbering, used everywhere in turncoat: **layer L is the output of decoder block L, 0-based** (the residual
stream after block L). In transformers' `output_hidden_states`, that is `hidden_states[L + 1]` (index 0 is the
embeddings) — except for the last block in models that apply a final norm inside the base model (Llama, Qwen,
SmolLM...): there `hidden_states[-1]` is normed and layer `num_layers - 1` is not.
"""

from turncoat.activations.capture import mean_activations
from turncoat.activations.directions import Direction, mean_difference, project, separation
from turncoat.activations.hooks import ablation_hooks, block_names, steering_hooks

__all__ = ["Direction", "ablation_hooks", "block_names", "mean_activations", "mean_difference", "project",
           "separation", "steering_hooks"]
