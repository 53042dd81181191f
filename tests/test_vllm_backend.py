"""The vllm backend: runs only where a GPU and vllm are present; elsewhere skipped with the reason."""

from __future__ import annotations

import importlib.util

import pytest

from codeloop.types import SamplingParams


def _gpu_reason() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install 'codeloop[vllm]' on a GPU machine)"
    import torch

    return None if torch.cuda.is_available() else "no CUDA device"


REASON = _gpu_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def test_vllm_generates_n_completions_with_stops(tmp_path):
    from codeloop.models.tiny import tiny_causal_lm
    from codeloop.models.vllm import VLLMGenerator

    model, tokenizer = tiny_causal_lm(seed=0)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    rows = VLLMGenerator(str(tmp_path), gpu_memory_utilization=0.2).generate(
        ["def solve(xs):\n", "x"], SamplingParams(n=3, max_new_tokens=8, stop=("\n",)))
    assert [len(r) for r in rows] == [3, 3] and all("\n" not in c.text for r in rows for c in r)
