"""Kahneman-Tversky optimisation (Ethayarajh et al., 2024) for small models: the loss and a plain loop.

KTO learns from unpaired examples, each labelled desirable or undesirable, which is why PLUM uses it:
the chosen and rejected solutions of an instruction are rarely balanced. With r = log π(y|x) -
log π_ref(y|x) and z0 an estimate of KL(π || π_ref), detached and clamped at 0:

    loss(desirable)   = λ_D (1 - σ(β (r - z0)))
    loss(undesirable) = λ_U (1 - σ(β (z0 - r)))

z0 is estimated as TRL does, from mismatched pairs inside the batch (prompt i with completion i+1).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from codeloop.models.encoding import leading_specials
from codeloop.train.common import Example, join, logprobs, optimise, tokenize


def kto_loss(pi: Any, ref: Any, pi_kl: Any, ref_kl: Any, desirable: Any, beta: float,
             desirable_weight: float = 1.0, undesirable_weight: float = 1.0) -> tuple[Any, Any]:
    """Mean KTO loss and the KL estimate z0; ``pi``/``ref`` are summed log-probs of the examples,
    ``pi_kl``/``ref_kl`` of the mismatched pairs, ``desirable`` a boolean tensor."""
    import torch

    z0 = (pi_kl - ref_kl).mean().clamp(min=0).detach()
    r = pi - ref
    losses = torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * (r - z0))),
                         undesirable_weight * (1 - torch.sigmoid(beta * (z0 - r))))
    return losses.mean(), z0


@dataclass(frozen=True)
class KTOStats:
    """Steps taken, examples used (desirable, undesirable), final loss and KL estimate, time, dropped."""

    steps: int
    desirable: int
    undesirable: int
    final_loss: float
    kl: float
    seconds: float
    dropped: int


def kto(model: Any, reference: Any, tokenizer: Any, rows: Sequence[dict], beta: float = 0.1, lr: float = 1e-4,
        epochs: float = 1.0, batch_size: int = 16, desirable_weight: float = 1.0, undesirable_weight: float = 1.0,
        nll_weight: float = 0.0, max_len: int = 512, seed: int = 0, progress: bool = True) -> KTOStats:
    """Fine-tune ``model`` in place on ``{"prompt", "completion", "label"}`` rows (TRL's KTO format)
    against the frozen ``reference``; ``nll_weight`` adds an NLL term on the desirable completions."""
    import torch

    lead = leading_specials(tokenizer)
    parts = [tokenize(tokenizer, r["prompt"], r["completion"], lead) for r in rows]
    keep = [i for i, (p, c) in enumerate(parts) if len(p) + len(c) <= max_len]
    dropped = len(rows) - len(keep)
    labels = torch.tensor([bool(rows[i]["label"]) for i in keep])
    n_good = int(labels.sum())
    if not keep:
        return KTOStats(0, 0, 0, math.nan, math.nan, 0.0, dropped)
    prompts = [parts[i][0] for i in keep]
    completions = [parts[i][1] for i in keep]
    examples = [join(p, c) for p, c in zip(prompts, completions)]
    pad_id = tokenizer.pad_token_id
    start = time.monotonic()
    reference.eval()
    z0_value = math.nan

    def mismatched(idx: list[int]) -> list[Example]:
        shifted = idx[1:] + idx[:1]
        return [join(prompts[i], completions[j]) for i, j in zip(idx, shifted)
                if len(prompts[i]) + len(completions[j]) <= max_len] if len(idx) > 1 else []

    def loss_for(idx: list[int]) -> Any:
        nonlocal z0_value
        kl_rows = mismatched(idx)
        lp, count = logprobs(model, [examples[i] for i in idx] + kl_rows, pad_id)
        with torch.no_grad():
            ref_lp, _ = logprobs(reference, [examples[i] for i in idx] + kl_rows, pad_id)
        n, good = len(idx), labels[idx].to(lp.device)
        if kl_rows:
            pi_kl, ref_kl = lp[n:].detach(), ref_lp[n:]
        else:  # one example: no mismatched pair to estimate the KL from
            pi_kl = ref_kl = torch.zeros(1, device=lp.device)
        loss, z0 = kto_loss(lp[:n], ref_lp[:n], pi_kl, ref_kl, good, beta, desirable_weight, undesirable_weight)
        if nll_weight:
            loss = loss + nll_weight * (-(lp[:n] / count[:n].clamp(min=1)) * good.float()).sum() / n
        z0_value = float(z0)
        return loss

    step, loss_value = 0, math.nan
    for step, loss_value in optimise(model, len(keep), batch_size, epochs, lr, seed, progress, "kto", loss_for):
        pass
    return KTOStats(step, n_good, len(keep) - n_good, loss_value, z0_value, time.monotonic() - start, dropped)
