"""The one generator protocol every backend implements: prompts in, ``n`` completions per prompt out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from codeloop.types import Completion, SamplingParams


class GeneratorError(RuntimeError):
    """A backend could not produce completions (after its retries); the message says why and where."""


@runtime_checkable
class Generator(Protocol):
    """``generate(prompts, params)[i][j]`` is the j-th of ``params.n`` completions of ``prompts[i]``."""

    name: str

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]: ...


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` before the first stop sequence; say whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
