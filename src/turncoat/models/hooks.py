"""Forward hooks on a loaded model's named submodules: the one mechanism that capture, steering, ablation and the
samplers all attach through (`(module_name, hook)` pairs, attached for the duration of a block)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

Hook = tuple[str, Callable]


@contextlib.contextmanager
def attached(model: torch.nn.Module, hooks: Iterable[Hook]):
    """Register forward hooks on named submodules for the duration of the block."""
    modules = dict(model.named_modules())
    handles = []
    try:
        for name, hook in hooks:
            if name not in modules:
                raise KeyError(f"no module named {name!r} in the model")
            handles.append(modules[name].register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()
