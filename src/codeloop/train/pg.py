"""Policy gradient with per-token weights: REINFORCE as CodeRL uses it (DESIGN.md 1.3).

For sampled programs W_i of prompts D_i and a weight w_{i,t} per program token,

    L(θ) = -(1/B) Σ_i Σ_t w_{i,t} · log p_θ(w_{i,t} | w_{i,<t}, D_i)

so ∇L is the REINFORCE estimate -E[Σ_t w_t ∇ log p(w_t)]. With ``length_normalise`` each program's sum is
divided by its token count T_i (GRPO's per-sample mean): every program then weighs the same, where the
plain sum lets long programs, which at this scale are mostly the failing ones, outweigh short ones. With a reference model and ``kl_weight`` β > 0
a penalty keeps the policy near it: β · (1/B) Σ_i mean_t k3_{i,t}, with the per-token estimate of
KL(p_θ || p_ref) on the sampled tokens k3 = exp(ρ) - ρ - 1, ρ = log p_ref(w_t) - log p_θ(w_t) (GRPO's; ≥ 0,
0 where the two agree).

With ``clip`` ε > 0 the loss is PPO's clipped surrogate instead (GRPO's form: no value head, the
weights are the advantages): per token, min(ρ_t w_t, clip(ρ_t, 1-ε, 1+ε) w_t) with the ratio
ρ_t = p_θ(w_t) / p_old(w_t) against the model the programs were sampled from: ``old_logprobs``, its
per-token log-probabilities from ``behaviour_logprobs`` (a caller training on the same programs
repeatedly takes them once), or by default ``model``'s as it is when called, taken before the first step. At the
first step ρ = 1 and the gradient is REINFORCE's; a token whose ratio has left [1-ε, 1+ε] in the
direction its weight pushes stops contributing, so several epochs over the same programs, or an offline
dataset, cannot drive the policy arbitrarily far from the one that wrote them. The recipe picks the weights: the advantage
r(W) - b on every token (plain REINFORCE with a baseline), CodeRL's (r(W) - b) · q̂(w_t) with the critic's
per-token values, or the paper's additive return r(W) + Σ_t q̂(w_t) less its baseline. Programs are the
tokens the trainers encode (``codeloop.models.encoding``: the completion re-encoded, then EOS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from codeloop.train.common import Example, join, optimise, token_logprobs, tokenize


@dataclass(frozen=True)
class PGStats:
    """One update: steps, programs, the last batch's loss, and the mean per-token weight it followed."""

    steps: int
    examples: int
    final_loss: float
    mean_weight: float
    kl: float = 0.0  # the last batch's mean per-token KL estimate against the reference (0 without one)
    clipped: float = 0.0  # with clip: the share of the last batch's tokens whose ratio was clipped


def check_clip(clip: float) -> None:
    """A ValueError unless ``clip`` is a usable ε (configs check it before any work starts)."""
    if not 0.0 <= clip < 1.0:
        raise ValueError(f"clip must be in [0, 1) (0: plain REINFORCE), got {clip}")


def token_weights(n_tokens: int, weight: float | Sequence[float]) -> list[float]:
    """A weight per token: a number is spread over every token; a list must have one per token."""
    if isinstance(weight, (int, float)):
        return [float(weight)] * n_tokens
    if len(weight) != n_tokens:
        raise ValueError(f"{len(weight)} token weights for a program of {n_tokens} tokens")
    return [float(w) for w in weight]


def policy_gradient(model: Any, tokenizer: Any, items: Sequence[tuple[str, str]], weights: Sequence[float | Sequence[float]],
                    lr: float = 1e-5, epochs: float = 1.0, batch_size: int = 16, seed: int = 0,
                    progress: bool = False, reference: Any = None, kl_weight: float = 0.0,
                    length_normalise: bool = False, clip: float = 0.0, old_logprobs: Sequence[Any] | None = None) -> PGStats:
    """One REINFORCE update of ``model`` in place on (prompt, program) items and their token weights
    (``reference`` and ``kl_weight``: the KL penalty above; ``clip`` and ``old_logprobs``: the clipped
    surrogate above)."""
    import torch

    if len(weights) != len(items):
        raise ValueError(f"{len(weights)} weights for {len(items)} programs")
    encoded = [tokenize(tokenizer, p, c) for p, c in items]
    rows = [join(p, c) for p, c in encoded]
    per_token = [token_weights(len(c), w) for (_, c), w in zip(encoded, weights)]
    pad_id = tokenizer.pad_token_id
    device = next(model.parameters()).device

    if kl_weight and reference is None:
        raise ValueError(f"kl_weight {kl_weight} needs a reference model")
    check_clip(clip)
    old: Sequence[Any] = []
    if clip and rows:
        old = old_logprobs if old_logprobs is not None else _logprobs_of(model, rows, pad_id, batch_size)
        if len(old) != len(rows):
            raise ValueError(f"{len(old)} rows of old log-probabilities for {len(rows)} programs")
    seen = {"kl": 0.0, "clipped": 0.0}

    def loss_for(batch: list[int]) -> Any:
        chunk = [rows[i] for i in batch]
        logp, keep = token_logprobs(model, chunk, pad_id)
        w = torch.zeros_like(logp)
        for r, i in enumerate(batch):
            where = keep[r].nonzero().squeeze(-1)
            w[r, where] = torch.tensor(per_token[i], device=device)
        if clip:
            old_logp = torch.zeros_like(logp)
            for r, i in enumerate(batch):
                old_logp[r, keep[r].nonzero().squeeze(-1)] = old[i].to(device)
            ratio = torch.exp((logp - old_logp) * keep)
            bounded = ratio.clamp(1.0 - clip, 1.0 + clip)
            per_program = (torch.minimum(ratio * w, bounded * w) * keep).sum(-1)
            seen["clipped"] = float(((ratio != bounded) & keep).sum() / keep.sum().clamp(min=1))
        else:
            per_program = (w * logp).sum(-1)
        if length_normalise:
            per_program = per_program / keep.sum(-1).clamp(min=1)
        loss = -per_program.sum() / len(batch)
        if kl_weight:
            with torch.no_grad():
                ref_logp, _ = token_logprobs(reference, chunk, pad_id)
            rho = (ref_logp - logp) * keep
            k3 = ((torch.exp(rho) - rho - 1) * keep).sum(-1) / keep.sum(-1).clamp(min=1)
            seen["kl"] = float(k3.mean().detach())
            loss = loss + kl_weight * k3.mean()
        return loss

    steps, loss = 0, float("nan")
    if rows:
        for steps, loss in optimise(model, len(rows), batch_size, epochs, lr, seed, progress, "policy gradient", loss_for):
            pass
    flat = [w for ws in per_token for w in ws]
    return PGStats(steps, len(rows), loss, sum(flat) / len(flat) if flat else 0.0, seen["kl"], seen["clipped"])


def behaviour_logprobs(model: Any, tokenizer: Any, items: Sequence[tuple[str, str]], batch_size: int = 16) -> list[Any]:
    """Per (prompt, program) item, ``model``'s log-probability of each program token, for the clip's
    ratio (``old_logprobs`` of ``policy_gradient``)."""
    return _logprobs_of(model, [join(*tokenize(tokenizer, p, c)) for p, c in items], tokenizer.pad_token_id, batch_size)


def _logprobs_of(model: Any, rows: Sequence[Example], pad_id: int, batch_size: int) -> list[Any]:
    """Each row's per-token log-probabilities of its labelled tokens under ``model`` (eval mode, no grad), on the CPU."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for b in range(0, len(rows), batch_size):
            logp, keep = token_logprobs(model, rows[b:b + batch_size], pad_id)
            out += [lp[k].cpu() for lp, k in zip(logp, keep)]
    model.train(was_training)
    return out
