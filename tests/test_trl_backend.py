"""DPO and KTO through TRL 1.16 (and LoRA through PEFT) on a tiny model built in code."""

from __future__ import annotations

import copy

import pytest

pytest.importorskip("trl", reason="the trl extra is part of the dev install")
pytest.importorskip("torch")

import torch  # noqa: E402

from codeloop.models.tiny import tiny_causal_lm  # noqa: E402
from codeloop.train.common import join, logprobs, tokenize  # noqa: E402
from codeloop.train.trl_backend import LoRA, trl_dpo, trl_kto  # noqa: E402
from codeloop.types import PreferencePair  # noqa: E402

PAIRS = [PreferencePair("Q:", " yes", " no")] * 16
ROWS = [{"prompt": "Q:", "completion": " yes", "label": True}, {"prompt": "Q:", "completion": " no", "label": False}] * 8


def margin(model, tok):
    with torch.no_grad():
        yes, no = (float(logprobs(model, [join(*tokenize(tok, "Q:", c))], tok.pad_token_id)[0][0]) for c in (" yes", " no"))
    return yes - no


def test_trl_dpo_with_an_nll_term_prefers_the_chosen_completion():
    model, tok = tiny_causal_lm(seed=4)
    before = margin(model, tok)
    trained, stats = trl_dpo(model, copy.deepcopy(model), tok, PAIRS, beta=0.5, lr=1e-2, epochs=2, batch_size=8, nll_weight=1.0)
    assert stats["steps"] == 4 and margin(trained, tok) > before + 1.0


def test_trl_kto_prefers_the_desirable_completion():
    model, tok = tiny_causal_lm(seed=4)
    before = margin(model, tok)
    trained, stats = trl_kto(model, copy.deepcopy(model), tok, ROWS, beta=0.5, lr=1e-2, epochs=2, batch_size=8)
    assert stats["steps"] == 4 and margin(trained, tok) > before + 1.0


@pytest.mark.parametrize("lora", [None, LoRA(r=4)])
def test_bf16_training_hands_back_a_model_that_runs_outside_autocast(lora):
    """accelerate wraps the forward in bf16 autocast for training (on CPU as on a GPU); the model
    handed back to the loop must run without it, in fp32, and keep fp32 weights."""
    model, tok = tiny_causal_lm(seed=4)
    trained, _ = trl_kto(model, None if lora else copy.deepcopy(model), tok, ROWS, beta=0.5, lr=1e-2, epochs=1,
                         batch_size=8, bf16=True, lora=lora)
    seen = []
    device = trained.device  # the trainer may have moved it to a GPU
    trained.lm_head.register_forward_hook(lambda m, a, out: seen.append((torch.is_autocast_enabled(device.type), out.dtype)))
    with torch.no_grad():
        trained(**tok("Q: yes", return_tensors="pt").to(device))
    assert seen == [(False, torch.float32)] and {p.dtype for p in trained.parameters()} == {torch.float32}


def test_trl_kto_adds_the_nll_of_the_desirable_completions_to_its_loss():
    """TRL's KTOTrainer has no NLL term; codeloop's adds weight x mean per-token NLL of the desirable rows
    / batch size. One batch holds all 16 rows (8 desirable " yes"), so the first step's loss grows by
    weight x 8/16 x NLL(" yes" + EOS) measured independently."""
    model, tok = tiny_causal_lm(seed=4)
    with torch.no_grad():
        lp, count = logprobs(model, [join(*tokenize(tok, "Q:", " yes"))], tok.pad_token_id)
    nll_yes = float(-lp[0] / count[0])
    first = {w: trl_kto(copy.deepcopy(model), copy.deepcopy(model), tok, ROWS, beta=0.5, lr=1e-2, epochs=1, batch_size=16,
                        nll_weight=w)[1]["history"][0]["loss"] for w in (0.0, 2.0)}
    assert first[2.0] - first[0.0] == pytest.approx(2.0 * 0.5 * nll_yes, rel=2e-3, abs=2e-3)


def test_plum_passes_its_nll_weight_to_trls_kto(monkeypatch, tmp_path):
    from codeloop.recipes import plum
    from codeloop.train import trl_backend

    seen = {}

    def fake_kto(policy, reference, tokenizer, rows, **kw):
        seen.update(kw)
        return policy, {"final_loss": 0.0}

    monkeypatch.setattr(trl_backend, "trl_kto", fake_kto)
    cfg = plum.PLUMConfig(trainer="trl", objective="kto", nll_weight=0.7, out_dir=str(tmp_path))
    plum._train(cfg, 1, object(), object(), None, ROWS, [], [], tmp_path)
    assert seen["nll_weight"] == 0.7


def test_lora_trains_an_adapter_and_hands_back_a_merged_plain_model():
    model, tok = tiny_causal_lm(seed=4)
    before = margin(model, tok)
    trained, _ = trl_dpo(model, None, tok, PAIRS, beta=0.5, lr=5e-2, epochs=2, batch_size=8, lora=LoRA(r=4, alpha=8))
    assert type(trained).__name__ == "LlamaForCausalLM" and not any("lora" in n for n, _ in trained.named_parameters())
    assert margin(trained, tok) > before


def test_the_online_dpo_loop_trains_through_trl(tmp_path):
    from codeloop.recipes.online_dpo import OnlineDPOConfig, run

    metrics = run(OnlineDPOConfig(n_intents=6, fraction=1.0, iterations=1, k=3, val_limit=2, val_n=2, batch_size=4,
                                  max_new_tokens=64, trainer="trl", out_dir=str(tmp_path)))
    assert [m["iteration"] for m in metrics] == [0, 1] and (tmp_path / "iter_1" / "model" / "model.safetensors").exists()


def test_plum_kto_trains_a_lora_adapter_through_trl(tmp_path, capsys):
    from codeloop.recipes.plum import PLUMConfig, run

    metrics = run(PLUMConfig(n_instructions=6, fraction=1.0, iterations=1, k=3, val_limit=2, val_n=2, batch_size=4,
                             max_new_tokens=64, trainer="trl", lora_r=4, out_dir=str(tmp_path)))
    saved = (tmp_path / "iter_1" / "model")
    assert metrics[-1]["iteration"] == 1 and (saved / "model.safetensors").exists() and not (saved / "adapter_config.json").exists()
    # the adapter's base is each update's reference: the run says so, since refresh_reference is off
    assert "with lora_r, each update's reference is the policy it starts from" in capsys.readouterr().out


def test_lora_without_the_trl_trainer_is_refused_not_ignored():
    from codeloop.recipes.plum import PLUMConfig

    with pytest.raises(ValueError, match=r"^lora_r 16 needs trainer trl"):
        PLUMConfig(lora_r=16)
    with pytest.raises(ValueError, match=r"^lora_r must be 0"):
        PLUMConfig(lora_r=-1)
