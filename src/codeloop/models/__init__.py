"""Generators: one protocol (prompts in, n completions each out), three backends.

``hf`` (transformers; also the built-in ``seed-python``), ``vllm`` (GPU, optional extra) and
``openai`` (any OpenAI-compatible endpoint: ``openai`` asks its ``/completions``, ``openai-chat`` its
``/chat/completions``, the only one OpenAI's current models serve). Heavy libraries are imported only by
the backend chosen. Where a model writes code, :func:`load_code_writer` puts a chat model behind
:class:`~codeloop.models.chat.ChatCoder`, which turns continuation prompts into requests and answers
back into continuations; a judge or a test generator takes the chat model as it is.
"""

from __future__ import annotations

from typing import Any

from codeloop.models.base import Generator, GeneratorError, truncate_at_stop

BACKENDS = ("hf", "vllm", "openai", "openai-chat")
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
    if backend in ("openai", "openai-chat"):
        from codeloop.models.openai import OpenAIGenerator

        return OpenAIGenerator(model, mode="chat" if backend == "openai-chat" else "completions", **kwargs)
    raise GeneratorError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")


def load_code_writer(backend: str, model: str, **kwargs: Any) -> Generator:
    """:func:`load_generator` for a model that continues code prompts (sampling, refining, optimising):
    on a chat backend, behind a :class:`~codeloop.models.chat.ChatCoder`."""
    generator = load_generator(backend, model, **kwargs)
    if backend == "openai-chat":
        from codeloop.models.chat import ChatCoder

        return ChatCoder(generator)
    return generator


def api_usage(generator: Generator | None) -> dict[str, int]:
    """The requests an API generator (the openai backends) has made so far, and their tokens as the server
    counted them: ``requests``, ``prompt_tokens``, ``completion_tokens`` and ``reasoning_tokens`` (those of
    the completion tokens a reasoning model spent thinking; 0 where the server does not say); {} for any
    other generator."""
    usage = getattr(generator, "usage", None)
    keys = ("requests", "prompt_tokens", "completion_tokens", "reasoning_tokens")
    return {key: int(usage[key]) for key in keys if key in usage} if isinstance(usage, dict) else {}


def usage_line(generator: Generator | None) -> str:
    """What an API generator has used so far, in one line ("" for a local model or none asked yet): its
    requests, with their tokens as the server counted them (and how many of the completion tokens a reasoning
    model spent thinking, where it says) and the cost where prices were given, and the answers the on-disk
    cache gave (free)."""
    usage = getattr(generator, "usage", None)
    if generator is None or not isinstance(usage, dict) or not (usage.get("requests") or usage.get("cached")):
        return ""
    requests = usage["requests"]
    reasoning = f", {usage['reasoning_tokens']:,} of them reasoning" if usage.get("reasoning_tokens") else ""
    cost = f", ${usage['cost_usd']:.4f}" if usage.get("cost_usd") else ""
    return (f"{generator.name}: {requests:,} request{'' if requests == 1 else 's'} "
            f"({usage['prompt_tokens']:,} prompt + {usage['completion_tokens']:,} completion tokens{reasoning}{cost}), "
            f"{usage.get('cached', 0):,} answered from the cache")


__all__ = ["BACKENDS", "VLLM_MEMORY", "Generator", "GeneratorError", "api_usage", "engine_settings", "load_code_writer",
           "load_generator", "truncate_at_stop", "usage_line"]
