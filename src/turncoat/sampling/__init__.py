"""Sampling: answers from a model to chat prompts, through interchangeable backends."""

from turncoat.sampling import openai_api  # noqa: F401  (registers the openai backend)
from turncoat.sampling.backends import BACKENDS, Backend, make_backend, register_backend
from turncoat.sampling.hf import GenerationParams, generate_chat
from turncoat.sampling.runner import sample_to_file

__all__ = ["BACKENDS", "Backend", "GenerationParams", "generate_chat", "make_backend", "register_backend",
           "sample_to_file"]
