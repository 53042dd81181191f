"""The training loops on a CUDA device: run where there is one, elsewhere skipped with the reason.

Found on the first GPU run: the plain trainers got the policy on the GPU (the in-process sampler moves
it there) and the reference on the CPU, and the first update failed on mixed devices."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def plum(out, **kw):
    from codeloop.recipes.plum import PLUMConfig, run

    settings = dict(n_instructions=12, fraction=0.5, iterations=1, k=3, val_limit=4, val_n=2, batch_size=4,
                    max_new_tokens=96, out_dir=str(out))
    return run(PLUMConfig(**{**settings, **kw}))


def test_the_plain_kto_loop_runs_a_plum_iteration_on_the_gpu(tmp_path):
    rows = plum(tmp_path, objective="kto", nll_weight=1.0)
    assert [r["iteration"] for r in rows] == [0, 1] and rows[1]["examples"] > 0


def test_plain_dpo_and_sft_train_on_the_gpu_and_leave_the_model_there():
    import copy

    from codeloop.models.tiny import tiny_causal_lm
    from codeloop.train.common import join, logprobs, tokenize
    from codeloop.train.dpo import dpo
    from codeloop.train.sft import sft
    from codeloop.types import PreferencePair

    model, tok = tiny_causal_lm(seed=5)
    model.to("cuda")
    reference = copy.deepcopy(model)

    def lp(m, completion):
        with torch.no_grad():
            return float(logprobs(m, [join(*tokenize(tok, "Q:", completion))], tok.pad_token_id)[0][0])

    dpo(model, reference, tok, [PreferencePair("Q:", " yes", " no")] * 8, beta=0.5, lr=1e-2, epochs=2, batch_size=4,
        progress=False)
    assert lp(model, " yes") - lp(reference, " yes") > lp(model, " no") - lp(reference, " no")
    before = lp(model, " maybe")
    sft(model, tok, [("Q:", " maybe")] * 8, epochs=2, lr=1e-2, batch_size=4, warmup_steps=1, progress=False)
    assert lp(model, " maybe") > before and next(model.parameters()).is_cuda


def test_the_trl_trainer_runs_in_bf16_mixed_precision_and_keeps_fp32_weights(tmp_path):
    pytest.importorskip("trl")
    from transformers import AutoModelForCausalLM

    rows = plum(tmp_path, trainer="trl", objective="kto", nll_weight=1.0)
    assert rows[1]["examples"] > 0
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "iter_1" / "model")
    assert {p.dtype for p in saved.parameters()} == {torch.float32}


def test_a_launched_update_trains_off_the_loops_gpu_copy_and_returns_the_policy_to_the_gpu(monkeypatch):
    """The loop's policy and reference leave the GPU while the launched process trains (bf16 there),
    and come back to it, trained in place."""
    pytest.importorskip("trl")
    import copy

    from codeloop.models.tiny import tiny_causal_lm
    from codeloop.train import launch
    from codeloop.train.trl_backend import trl_dpo
    from codeloop.types import PreferencePair

    model, tok = tiny_causal_lm(seed=5)
    model.to("cuda")
    reference = copy.deepcopy(model)
    start = [p.detach().clone() for p in model.parameters()]
    seen, run = [], launch._run
    monkeypatch.setattr(launch, "_run", lambda *a: (seen.append((model.device.type, reference.device.type)), run(*a))[1])
    trained, stats = trl_dpo(model, reference, tok, [PreferencePair("Q:", " yes", " no")] * 8, beta=0.5, lr=1e-2,
                             batch_size=8, bf16=True, launch="python")
    assert seen == [("cpu", "cpu")] and stats["processes"] == 1
    assert trained is model and model.device.type == reference.device.type == "cuda"
    assert any(not torch.equal(a, b) for a, b in zip(start, model.parameters()))


def test_a_reference_that_leaves_the_gpu_for_each_launched_update_is_written_once():
    """Each launched update moves the reference to the CPU and back: that round trip changes neither its
    version counters nor its checksums, so the second update reuses the folder the first one wrote."""
    pytest.importorskip("trl")
    import copy

    from codeloop.models.tiny import tiny_causal_lm
    from codeloop.train.trl_backend import trl_dpo
    from codeloop.types import PreferencePair

    model, tok = tiny_causal_lm(seed=5)
    model.to("cuda")
    reference, writes = copy.deepcopy(model), []
    save = reference.save_pretrained
    reference.save_pretrained = lambda *a, **k: (writes.append(a), save(*a, **k))
    for _ in range(2):
        trl_dpo(model, reference, tok, [PreferencePair("Q:", " yes", " no")] * 8, beta=0.5, lr=1e-2, batch_size=8,
                bf16=True, launch="python")
    assert len(writes) == 1 and reference.device.type == "cuda"
