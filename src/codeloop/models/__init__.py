"""Generators: one protocol (prompts in, n completions each out), three backends.

``hf`` (transformers; also the built-in ``seed-python``), ``vllm`` (GPU, optional extra) and
``openai`` (any OpenAI-compatible endpoint). Heavy libraries are imported only by the backend chosen.
"""

from __future__ import annotations

from typing import Any

from codeloop.models.base import Generator, GeneratorError, truncate_at_stop

BACKENDS = ("hf", "vllm", "openai")
VLLM_MEMORY = 0.6
"""The share of the GPU's memory a vLLM engine takes unless told otherwise (its gpu_memory_utilization;
vLLM's own default, 0.92, leaves nothing for a policy trained beside it)."""


def engine_settings(backend: str, vllm_memory: float) -> dict[str, Any]:
    """What :func:`load_generator` takes for a model on ``backend``: a vLLM engine's share of the GPU."""
    return {"gpu_memory_utilization": vllm_memory} if backend == "vllm" else {}


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


__all__ = ["BACKENDS", "VLLM_MEMORY", "Generator", "GeneratorError", "engine_settings", "load_generator", "truncate_at_stop"]
