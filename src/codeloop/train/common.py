"""What the preference trainers share: tokenised examples, padded batches, summed log-probabilities and
the optimisation loop (shuffled mini-batches, fractional epochs, clipping, a progress bar).

Small models on CPU train faster in a plain loop than through a framework's per-step machinery; the
TRL path (``codeloop.train.trl``) is for large models and GPUs.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from codeloop.models.encoding import completion_ids, prompt_ids

IGNORE = -100
Example = tuple[list[int], list[int]]  # token ids, labels (IGNORE on the prompt)


def tokenize(tokenizer: Any, prompt: str, completion: str, lead: list[int] | None = None) -> tuple[list[int], list[int]]:
    """The prompt's ids as generation encodes them (its tokenizer's leading specials, a BOS where it has
    one; ``lead``: those specials, when the caller computed them once), and the completion's ids + EOS,
    encoded apart (``codeloop.models.encoding``)."""
    return prompt_ids(tokenizer, prompt, lead), completion_ids(tokenizer, completion)


def join(prompt_ids: list[int], completion_ids: list[int]) -> Example:
    """One training example: the loss (or log-probability) covers the completion only."""
    return prompt_ids + completion_ids, [IGNORE] * len(prompt_ids) + completion_ids


def pad(rows: Sequence[Example], pad_id: int) -> tuple[Any, Any, Any]:
    """Right-padded ids, attention mask and labels as tensors."""
    import torch

    width = max(len(x) for x, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (x, y) in enumerate(rows):
        ids[r, : len(x)], labels[r, : len(y)], mask[r, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return ids, mask, labels


def token_logprobs(model: Any, rows: Sequence[Example], pad_id: int) -> tuple[Any, Any]:
    """Log-probability of every next token [B, T-1], and the mask of those that are labelled."""
    import torch

    device = next(model.parameters()).device
    ids, mask, labels = (t.to(device) for t in pad(rows, pad_id))
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target = labels[:, 1:]
    keep = target != IGNORE
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp * keep, keep


def logprobs(model: Any, rows: Sequence[Example], pad_id: int) -> tuple[Any, Any]:
    """Summed log-probability of each row's labelled tokens, and how many tokens that is."""
    logp, keep = token_logprobs(model, rows, pad_id)
    return logp.sum(-1), keep.sum(-1)


def optimise(model: Any, n_items: int, batch_size: int, epochs: float, lr: float, seed: int, progress: bool,
             desc: str, loss_for: Callable[[list[int]], Any]) -> Iterator[tuple[int, float]]:
    """Shuffle item indices each epoch, call ``loss_for(batch)`` and step AdamW; yields (step, loss).

    ``epochs`` may be fractional: training stops after ceil(n/batch)·epochs steps.
    """
    import torch
    from tqdm import tqdm

    rng = random.Random(seed)
    torch.manual_seed(seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    order = list(range(n_items))
    total = max(1, int(math.ceil(n_items / batch_size) * epochs))
    step = 0
    # disable=None: a bar only when stderr is a terminal (no carriage-return frames in logs)
    with tqdm(total=total, desc=desc, unit="step", file=sys.stderr, disable=None if progress else True) as bar:
        while step < total:
            rng.shuffle(order)
            for b in range(0, n_items, batch_size):
                if step >= total:
                    break
                loss = loss_for(order[b:b + batch_size])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                bar.update(1)
                yield step, float(loss.detach())
    model.eval()
