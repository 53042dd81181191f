"""Generators: one protocol (prompts in, n completions each out), three backends.

``hf`` (transformers; also the built-in ``seed-python``), ``vllm`` (GPU, optional extra) and
``openai`` (any OpenAI-compatible endpoint). Heavy libraries are imported only by the backend chosen.
"""

from __future__ import annotations

from typing import Any

from codeloop.models.base import Generator, GeneratorError, truncate_at_stop

BACKENDS = ("hf", "vllm", "openai")


def load_generator(backend: str, model: str, **kwargs: Any) -> Generator:
    """A generator for ``model`` on ``backend``; ``kwargs`` go to the backend's constructor."""
    if backend == "hf":
        from codeloop.models.hf import HFGenerator

        return HFGenerator(model, **kwargs)
    if backend == "vllm":
        from codeloop.models.vllm import VLLMGenerator

        return VLLMGenerator(model, **kwargs)
    if backend == "openai":
        from codeloop.models.openai import OpenAIGenerator

        return OpenAIGenerator(model, **kwargs)
    raise GeneratorError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Generator", "GeneratorError", "load_generator", "truncate_at_stop"]
