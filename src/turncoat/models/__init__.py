"""Models: one `load(spec)` for aliases, GGUF files, local folders, Hub ids and PEFT adapters.

The loader (and torch) is imported on first use, so commands that need no model start fast.
"""

from turncoat.models.specs import ALIASES, DEFAULT_MODEL, resolve_spec

_LOADER_NAMES = {"LoadedModel", "describe", "gguf_to_folder", "hf_location", "load", "pick_device", "pick_dtype"}


def __getattr__(name: str):
    if name in _LOADER_NAMES:
        from turncoat.models import loader  # torch and transformers: loaded on first use, not on import

        return getattr(loader, name)
    raise AttributeError(f"module 'turncoat.models' has no attribute {name!r}")


__all__ = ["ALIASES", "DEFAULT_MODEL", "resolve_spec", *sorted(_LOADER_NAMES)]
