"""The hf backend and SFT on tiny random models built in code (no files, no downloads)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the train extra (torch) is part of the dev install")

from codeloop.models.base import GeneratorError  # noqa: E402
from codeloop.models.hf import HFGenerator  # noqa: E402
from codeloop.models.tiny import tiny_causal_lm  # noqa: E402
from codeloop.train.sft import IGNORE, encode_pairs, sft  # noqa: E402
from codeloop.types import SamplingParams  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = tiny_causal_lm(seed=0)
    return HFGenerator(model=model, tokenizer=tokenizer, device="cpu", batch_size=8)


def texts(rows):
    return [[c.text for c in row] for row in rows]


def test_n_completions_per_prompt(tiny):
    rows = tiny.generate(["def solve(xs):\n", "x", "print("], SamplingParams(n=3, max_new_tokens=8))
    assert [len(r) for r in rows] == [3, 3, 3]


def test_same_seed_same_samples(tiny):
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=12, seed=7)
    assert texts(tiny.generate(["def f():\n", "y"], params)) == texts(tiny.generate(["def f():\n", "y"], params))


def test_other_seed_other_samples(tiny):
    a = tiny.generate(["def f():\n"], SamplingParams(n=4, temperature=1.0, max_new_tokens=12, seed=1))
    b = tiny.generate(["def f():\n"], SamplingParams(n=4, temperature=1.0, max_new_tokens=12, seed=2))
    assert texts(a) != texts(b)


def test_greedy_repeats_one_decode(tiny):
    row = tiny.generate(["def f():\n"], SamplingParams(n=3, temperature=0, max_new_tokens=6))[0]
    assert len({c.text for c in row}) == 1


def test_length_limit_is_reported(tiny):
    c = tiny.generate(["x"], SamplingParams(temperature=0, max_new_tokens=4))[0][0]
    assert c.completion_tokens <= 4 and c.finish_reason in ("length", "stop")


def test_stop_sequences_end_the_text(tiny):
    # a model trained to say "ab\ncd" must stop at "\n" when asked to
    model, tokenizer = tiny_causal_lm(seed=1)
    sft(model, tokenizer, [("Q:", "ab\ncd")] * 64, epochs=10, lr=2e-2, batch_size=16, warmup_steps=5, progress=False)
    gen = HFGenerator(model=model, tokenizer=tokenizer, device="cpu")
    c = gen.generate(["Q:"], SamplingParams(temperature=0, max_new_tokens=10, stop=("\n",)))[0][0]
    assert (c.text, c.finish_reason) == ("ab", "stop")


def test_a_saved_model_loads_by_path(tmp_path):
    model, tokenizer = tiny_causal_lm(seed=0)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert len(HFGenerator(str(tmp_path), device="cpu").generate(["x"], SamplingParams(max_new_tokens=3))[0]) == 1


def test_a_missing_model_is_a_clear_error(tmp_path):
    # not the hub's "Repo id must be in the form 'repo_name' or 'namespace/repo_name'"
    with pytest.raises(GeneratorError, match="'.*/nope': no such directory, and not a hub name either"):
        HFGenerator(str(tmp_path / "nope"), device="cpu")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(GeneratorError, match="is a file: expected a model directory"):
        HFGenerator(str(tmp_path / "weights.bin"), device="cpu")
    with pytest.raises(GeneratorError, match="the directory has no config.json"):
        HFGenerator(str(tmp_path), device="cpu")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(GeneratorError, match="cannot load model"):  # a config, and no model behind it
        HFGenerator(str(tmp_path), device="cpu")


def test_a_hub_name_fails_at_once_when_the_hub_does_not_answer(monkeypatch):
    import huggingface_hub

    from codeloop.models.hf import locate

    looked: list[str] = []

    class Unreachable:
        def head(self, url, timeout):
            looked.append(url)
            raise ConnectionError("no route to host")

    monkeypatch.setattr(huggingface_hub, "get_session", lambda: Unreachable())
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: None)
    with pytest.raises(GeneratorError, match=r"'someone/model'.*not in the Hugging Face cache.*does not answer "
                                             r"\(ConnectionError: no route to host\)"):
        HFGenerator("someone/model", device="cpu")
    assert len(looked) == 1  # one look, not transformers' minute of retries
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: f"/cache/{repo}/{name}")
    assert locate("someone/model") == "someone/model" and len(looked) == 1  # cached: no look at the hub
    assert locate("seed-python").endswith("seed_python")


def test_prompt_tokens_are_masked_from_the_loss():
    _, tokenizer = tiny_causal_lm()
    [(ids, labels)], _ = encode_pairs(tokenizer, [("def f():\n", "    return 1\n")], max_len=128)
    n_prompt = 1 + len(tokenizer("def f():\n", add_special_tokens=False)["input_ids"])
    assert labels[:n_prompt] == [IGNORE] * n_prompt and IGNORE not in labels[n_prompt:] and len(ids) == len(labels)


def test_sft_moves_the_weights_and_lowers_the_loss():
    model, tokenizer = tiny_causal_lm(seed=3)
    before = [p.detach().clone() for p in model.parameters()]
    first = sft(model, tokenizer, [("Q:", " yes")] * 32, epochs=1, lr=2e-2, batch_size=8, warmup_steps=2, progress=False).final_loss
    last = sft(model, tokenizer, [("Q:", " yes")] * 32, epochs=8, lr=2e-2, batch_size=8, warmup_steps=2, progress=False).final_loss
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())) and last < first / 2


def both_paths(gen, prompts, params):
    """The completions of the module's own decoding loop and of ``model.generate``, same seed."""
    assert gen.decoder == "auto" and gen.own_loop
    own = gen.generate(prompts, params)
    gen.decoder = "generate"
    try:
        assert not gen.own_loop
        return own, gen.generate(prompts, params)
    finally:
        gen.decoder = "auto"


@pytest.mark.parametrize("params", [
    SamplingParams(n=3, temperature=1.0, max_new_tokens=24, stop=("\n", "s"), seed=4),
    SamplingParams(n=2, temperature=0.7, top_p=0.8, max_new_tokens=24, stop=("x",), seed=9),
    SamplingParams(n=2, temperature=0, max_new_tokens=16, stop=("o",)),
])
def test_the_own_loop_gives_generates_completions_token_for_token(tiny, params):
    prompts = ["def solve(xs):\n", "x", "print('hello", "    xs = [x * 2 for", "y", "def"]
    own, reference = both_paths(tiny, prompts, params)
    assert own == reference
    lengths = {c.completion_tokens for row in own for c in row}
    assert len(lengths) > 1  # rows finished at different steps, so finished rows were dropped mid-batch


def test_the_seed_policy_samples_the_same_through_either_path():
    from codeloop.data import synthetic
    from codeloop.data.prompts import STOP

    gen = HFGenerator("seed-python", device="cpu", batch_size=32)
    prompts = [t.prompt for t in synthetic.generate("test", 16).values()]
    own, reference = both_paths(gen, prompts, SamplingParams(n=4, temperature=0.8, max_new_tokens=160, stop=STOP))
    assert own == reference and len({c.text for row in own for c in row}) > 32


@pytest.mark.parametrize("top_k", [3, 0])  # 0: no top-k filter at all
def test_a_top_k_in_the_generation_config_is_honoured(tiny, top_k):
    tiny.model.generation_config.top_k = top_k
    try:
        own, reference = both_paths(tiny, ["def", "x"], SamplingParams(n=4, temperature=1.5, max_new_tokens=12))
    finally:
        tiny.model.generation_config.top_k = None
    assert own == reference


def test_a_repetition_penalty_sends_the_model_through_generate():
    model, tokenizer = tiny_causal_lm(seed=0)
    model.generation_config.repetition_penalty = 1.3
    gen = HFGenerator(model=model, tokenizer=tokenizer, device="cpu")
    assert not gen.own_loop
    assert len(gen.generate(["x"], SamplingParams(n=2, temperature=1.0, max_new_tokens=5))[0]) == 2


def test_the_fallback_rules_name_real_generation_config_fields():
    # a field renamed in a later transformers would silently stop sending such models through generate
    from transformers import GenerationConfig

    from codeloop.models.hf import _NEUTRAL

    config = GenerationConfig()
    assert all(hasattr(config, key) for key in _NEUTRAL)


def test_an_unknown_decoder_is_refused():
    model, tokenizer = tiny_causal_lm(seed=0)
    with pytest.raises(ValueError, match="decoder must be one of auto, generate"):
        HFGenerator(model=model, tokenizer=tokenizer, device="cpu", decoder="fast")


def test_sampling_on_cuda_keeps_cudnn_attention_out_and_puts_it_back():
    import torch

    from codeloop.models.hf import attention_without_cudnn

    before = torch.backends.cuda.cudnn_sdp_enabled()
    with attention_without_cudnn("cuda:0"):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
        assert torch.backends.cuda.math_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
    with attention_without_cudnn("cpu"):
        assert torch.backends.cuda.cudnn_sdp_enabled() == before


def test_every_sampling_batch_runs_under_the_attention_rule(tiny, monkeypatch):
    import contextlib

    from codeloop.models import hf

    seen = []

    def recording(device):
        seen.append(device)
        return contextlib.nullcontext()

    monkeypatch.setattr(hf, "attention_without_cudnn", recording)
    monkeypatch.setattr(tiny, "batch_size", 2)
    tiny.generate(["a", "b", "c"], SamplingParams(n=1, temperature=0.8, max_new_tokens=3))
    assert seen == [tiny.device] * 2
