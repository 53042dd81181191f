"""Supervised fine-tuning on (prompt, completion) pairs: cross-entropy on the completion tokens only.

A plain PyTorch loop: small models on CPU train faster without a framework's per-step overhead, and
the loop is short enough to read. Batches group similar lengths; a time budget stops it cleanly.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from codeloop.models.encoding import leading_specials
from codeloop.train.common import IGNORE, join, pad, tokenize

__all__ = ["IGNORE", "SFTStats", "encode_pairs", "sft"]


@dataclass(frozen=True)
class SFTStats:
    """What a run did: steps, examples seen, the loss at the end, time spent, examples dropped as too long."""

    steps: int
    examples: int
    final_loss: float
    seconds: float
    dropped: int


def encode_pairs(tokenizer: Any, pairs: Sequence[tuple[str, str]], max_len: int) -> tuple[list[tuple[list[int], list[int]]], int]:
    """Token ids and labels (prompt masked) per pair: prompt + completion + EOS (``tokenize``); too long are dropped."""
    out, dropped = [], 0
    lead = leading_specials(tokenizer)
    for prompt, completion in pairs:
        p, c = tokenize(tokenizer, prompt, completion, lead)
        if len(p) + len(c) > max_len:
            dropped += 1
            continue
        out.append(join(p, c))
    return out, dropped


def _batches(examples: list[tuple[list[int], list[int]]], batch_size: int, rng: random.Random) -> list[list[int]]:
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i][0]), rng.random()))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def sft(model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]], epochs: float = 1.0, lr: float = 1e-3,
        batch_size: int = 32, max_len: int = 384, warmup_steps: int = 50, seed: int = 0,
        time_budget_s: float | None = None, device: str | None = None, progress: bool = True) -> SFTStats:
    """Fine-tune ``model`` in place; cosine schedule over ``epochs`` (fractional epochs allowed), on
    ``device`` (default: where the model is)."""
    import torch
    from tqdm import tqdm

    examples, dropped = encode_pairs(tokenizer, pairs, max_len)
    if not examples:
        raise ValueError("no training example fits in max_len")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    device = device or str(next(model.parameters()).device)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    per_epoch = math.ceil(len(examples) / batch_size)
    total = max(1, int(per_epoch * epochs))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup_steps) * 0.5 * (1 + math.cos(math.pi * min(s / total, 1.0))))
    pad_id = tokenizer.pad_token_id
    start, step, seen, loss_value = time.monotonic(), 0, 0, float("nan")
    # disable=None: a bar only when stderr is a terminal (no carriage-return frames in logs)
    bar = tqdm(total=total, desc="sft", unit="step", file=sys.stderr, disable=None if progress else True)
    def out_of_time() -> bool:
        return time_budget_s is not None and time.monotonic() - start > time_budget_s

    while step < total and not out_of_time():
        for batch in _batches(examples, batch_size, rng):
            if step >= total or out_of_time():
                break
            ids, mask, labels = pad([examples[i] for i in batch], pad_id)
            loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step, seen, loss_value = step + 1, seen + len(batch), float(loss.detach())
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}")
    bar.close()
    model.eval()
    return SFTStats(step, seen, loss_value, time.monotonic() - start, dropped)
