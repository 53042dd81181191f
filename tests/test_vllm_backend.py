"""The vllm backend: against vLLM itself only where a GPU and vllm are present (elsewhere skipped with the
reason); against a stand-in that keeps vLLM 0.33's rules everywhere."""

from __future__ import annotations

import importlib.util
import sys
import types
from types import SimpleNamespace

import pytest

from codeloop.types import SamplingParams


def _gpu_reason() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install 'codeloop[vllm]' on a GPU machine)"
    import torch

    return None if torch.cuda.is_available() else "no CUDA device"


REASON = _gpu_reason()
needs_vllm = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.mark.gpu
@needs_vllm
def test_vllm_generates_n_completions_with_stops(tmp_path):
    from codeloop.models.tiny import tiny_causal_lm
    from codeloop.models.vllm import VLLMGenerator

    model, tokenizer = tiny_causal_lm(seed=0)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    generator = VLLMGenerator(str(tmp_path), gpu_memory_utilization=0.2)
    rows = generator.generate(["def solve(xs):\n", "x"], SamplingParams(n=3, max_new_tokens=8, stop=("\n",)))
    assert [len(r) for r in rows] == [3, 3] and all("\n" not in c.text for r in rows for c in r)
    greedy = generator.generate(["def solve(xs):\n"], SamplingParams(n=3, temperature=0.0, max_new_tokens=8))
    assert len(greedy[0]) == 3 and len({c.text for c in greedy[0]}) == 1
    (long,), = generator.generate(["x = 1\n" * 2000], SamplingParams(n=1, max_new_tokens=8))  # past the window
    assert long.prompt_tokens == generator.window - 8


@pytest.fixture
def stand_in(monkeypatch):
    """A ``vllm`` module that keeps vLLM 0.33's rules: n must be 1 below temperature 1e-5
    (``SamplingParams._verify_greedy_sampling``), and a prompt as long as the model's window is refused
    (``InputProcessor``). Its model's window is 16 tokens; its tokenizer gives each character its code
    and puts BOS (1) first; it answers each prompt with the prompt's text (BOS left out) and the sample's number, and
    keeps what it was asked."""
    asked = []

    class Refused(ValueError):
        pass

    class StandInParams:
        def __init__(self, n=1, temperature=1.0, top_p=1.0, max_tokens=16, stop=None, seed=None):
            if temperature < 1e-5 and n > 1:
                raise Refused(f"n must be 1 when using greedy sampling, got {n}.")
            self.n, self.temperature, self.stop = n, temperature, stop

    def tokenizer(text, add_special_tokens=True):
        return {"input_ids": [1] * add_special_tokens + [ord(c) for c in text]}

    class LLM:
        def __init__(self, model, **kwargs):
            self.model_config = SimpleNamespace(max_model_len=16)

        def get_tokenizer(self):
            return tokenizer

        def generate(self, prompts, params, use_tqdm=True):
            asked.append(([p["prompt_token_ids"] for p in prompts], params))
            if any(len(p["prompt_token_ids"]) >= 16 for p in prompts):
                raise Refused("The decoder prompt is longer than the maximum model length of 16.")
            answers = []
            for p in prompts:
                text = "".join(chr(i) for i in p["prompt_token_ids"] if i > 1)
                answers.append(SimpleNamespace(prompt_token_ids=p["prompt_token_ids"], outputs=[
                    SimpleNamespace(text=f"{text}:{j}\nmore", token_ids=[1, 2], finish_reason="length")
                    for j in range(params.n)]))
            return answers

    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = LLM, StandInParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return asked


def test_greedy_decoding_asks_vllm_once_per_prompt_and_repeats_it_n_times(stand_in):
    """vLLM refuses n > 1 at temperature 0; the hf backend decodes once and repeats: so does this one."""
    from codeloop.models.vllm import VLLMGenerator

    rows = VLLMGenerator("seed-python").generate(["ab", "cd"], SamplingParams(n=3, temperature=0.0, max_new_tokens=8,
                                                                             stop=("\n",)))
    assert [[c.text for c in row] for row in rows] == [["ab:0"] * 3, ["cd:0"] * 3]
    assert [(c.finish_reason, c.prompt_tokens, c.completion_tokens) for c in rows[1]] == [("stop", 3, 2)] * 3
    (_, params), = stand_in
    assert (params.n, params.temperature, params.stop) == (1, 0.0, ["\n"])


def test_sampling_asks_vllm_for_n_completions_of_each_prompt(stand_in):
    from codeloop.models.vllm import VLLMGenerator

    rows = VLLMGenerator("seed-python").generate(["a"], SamplingParams(n=3, temperature=0.8, max_new_tokens=8))
    assert [c.text for c in rows[0]] == ["a:0\nmore", "a:1\nmore", "a:2\nmore"]
    assert [c.finish_reason for c in rows[0]] == ["length"] * 3
    assert (stand_in[0][1].n, stand_in[0][1].temperature, stand_in[0][1].stop) == (3, 0.8, None)


def test_prompts_are_encoded_as_the_trainers_encode_them_and_a_long_one_keeps_its_end(stand_in):
    """BOS first, then the text's own tokens (codeloop.models.encoding); a prompt with no room for
    max_new_tokens in the window keeps its last window - max_new_tokens tokens, as the hf backend's."""
    from codeloop.models.vllm import VLLMGenerator

    VLLMGenerator("seed-python").generate(["ab", "abcdefghijklmnop"], SamplingParams(n=1, max_new_tokens=8))
    (ids, _), = stand_in
    assert ids == [[1, ord("a"), ord("b")], [ord(c) for c in "ijklmnop"]]
