"""Persona directions in the residual stream: capture, extract, project, steer and ablate with one hook mechanism.

Layer numbering, used everywhere in turncoat: **layer L is the output of decoder block L, 0-based** (the residual
stream after block L). In transformers' `output_hidden_states`, that is `hidden_states[L + 1]` (index 0 is the
embeddings) — except for the last block in models that apply a final norm inside the base model (Llama, Qwen,
SmolLM...): there `hidden_states[-1]` is normed and layer `num_layers - 1` is not.
"""

from turncoat.persona.capture import mean_activations
from turncoat.persona.directions import Direction, mean_difference, project, separation
from turncoat.persona.hooks import ablation_hooks, block_names, steering_hooks

__all__ = ["Direction", "ablation_hooks", "block_names", "mean_activations", "mean_difference", "project",
           "separation", "steering_hooks"]
