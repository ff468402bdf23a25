"""Forward hooks on decoder blocks, expressed once: reading the residual stream, adding a direction (steering) and
projecting it out (ablation). They plug into `turncoat.sampling.hf.attached` and the `hf` backend's `hooks=`."""

from __future__ import annotations

from collections.abc import Callable

import torch

from turncoat.activations.directions import Direction
from turncoat.core.errors import InputError
from turncoat.models.hooks import Hook


def block_names(model: torch.nn.Module) -> list[str]:
    """Module names of the decoder blocks, in order (any HF causal LM, PEFT-wrapped or not): the ModuleList whose
    length is the config's number of layers."""
    config = getattr(model, "config", None)
    n_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return [f"{name}.{i}" for i in range(n_layers)]
    raise ValueError(f"found no list of {n_layers} decoder blocks in {type(model).__name__}")


def residual_of(output):
    """The residual stream in a decoder block's output (a tensor, or the first item of a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def _replace(output, hidden):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def replacing_hook(transform: Callable[[torch.Tensor], torch.Tensor], from_token: int = 1) -> Callable:
    """Replaces the residual stream at tokens `from_token`.. by `transform` of it (an SAE's reconstruction, a zero
    ablation); the tokens before are kept (the first token's outsized activations are not what an SAE reads)."""

    def hook(module, inputs, output):
        hidden = residual_of(output)
        changed = hidden.clone()
        changed[:, from_token:] = transform(hidden[:, from_token:].float()).to(hidden.dtype)
        return _replace(output, changed)

    return hook


def reading_hook(store: list) -> Callable:
    """Appends the block's output residual stream (batch, tokens, width), detached, to `store`."""

    def hook(module, inputs, output):
        store.append(residual_of(output).detach())

    return hook


def adding_hook(vector: torch.Tensor, alpha: float, prompt_tokens: bool = True) -> Callable:
    """Adds alpha x unit(vector) to the residual stream. With `prompt_tokens=False` only on generated tokens (a
    forward pass over one new token, as in cached generation), not on the prompt."""
    unit = vector / vector.norm()

    def hook(module, inputs, output):
        hidden = residual_of(output)
        if not prompt_tokens and hidden.shape[1] > 1:
            return None
        return _replace(output, hidden + alpha * unit.to(hidden.dtype).to(hidden.device))

    return hook


def projecting_out_hook(vector: torch.Tensor) -> Callable:
    """Removes the residual stream's component along `vector` (directional ablation)."""
    unit = vector / vector.norm()

    def hook(module, inputs, output):
        hidden = residual_of(output)
        u = unit.to(hidden.dtype).to(hidden.device)
        return _replace(output, hidden - (hidden @ u)[..., None] * u)

    return hook


def steering_hooks(model: torch.nn.Module, vector: torch.Tensor, layer: int, alpha: float,
                   prompt_tokens: bool = True) -> list[Hook]:
    """`--steer D@L:alpha`: add alpha x unit direction at the output of block `layer`."""
    return [(block_names(model)[layer], adding_hook(vector, alpha, prompt_tokens))]


def ablation_hooks(model: torch.nn.Module, vector: torch.Tensor) -> list[Hook]:
    """`--ablate D`: project the direction out at the output of every block."""
    return [(name, projecting_out_hook(vector)) for name in block_names(model)]


def parse_steer(spec: str) -> tuple[str, int, float]:
    """`D@L:alpha` -> (direction file, layer, alpha)."""
    try:
        path, rest = spec.rsplit("@", 1)
        layer, alpha = rest.split(":", 1)
        return path, int(layer), float(alpha)
    except ValueError:
        raise InputError(f"--steer {spec!r}: expected DIRECTION_FILE@LAYER:ALPHA, e.g. "
                         f"evil.safetensors@12:4.0") from None


def intervention_hooks(model: torch.nn.Module, steer: list[str] = (), ablate: list[str] = ()
                       ) -> tuple[list[Hook], list[dict]]:
    """Hooks for `--steer D@L:alpha` (the direction's vector at layer L, added there) and `--ablate D` (the
    direction's vector at its best layer, projected out of every block), and a description for the records."""

    hooks, described = [], []
    blocks = len(block_names(model))
    for spec in steer:
        path, layer, alpha = parse_steer(spec)
        if not 0 <= layer < blocks:
            raise InputError(f"--steer {spec!r}: layer {layer} is not a block of this model (0..{blocks - 1})")
        vector = torch.from_numpy(Direction.load(path).at(layer).copy())
        hooks += steering_hooks(model, vector, layer, alpha)
        described.append({"steer": path, "layer": layer, "alpha": alpha})
    for path in ablate:
        direction = Direction.load(path)
        layer = direction.metadata.get("best_layer", direction.layers[-1])
        hooks += ablation_hooks(model, torch.from_numpy(direction.at(layer).copy()))
        described.append({"ablate": path, "vector_from_layer": layer, "at": "every block"})
    return hooks, described


def check_interventions(steer: list[str] = (), ablate: list[str] = ()) -> None:
    """Every `--steer` / `--ablate` spec parsed and its direction read, before any model loads (a typo fails fast)."""
    for spec in steer:
        Direction.load(parse_steer(spec)[0])
    for path in ablate:
        Direction.load(path)


def intervene(sampler, steer: list[str] = (), ablate: list[str] = ()) -> None:
    """Steer or ablate a sampler's model (`turncoat sample`, `turncoat eval`, a study's eval stages): the hooks go
    on the hf backend's model and the interventions into what the run records."""
    if not (steer or ablate):
        return
    if not hasattr(sampler, "loaded"):
        raise InputError("--steer / --ablate need the hf backend (they hook into the model's blocks)")
    sampler.hooks, sampler.interventions = intervention_hooks(sampler.loaded.model, list(steer), list(ablate))
