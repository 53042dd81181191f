"""The critic of CodeRL (DESIGN.md 1.3): predicts how a program's tests will end, from the task and the program.

A classifier over four outcome classes, {CompileError, RuntimeError, FailedTest, PassedTest}, reading
(task, program) through a causal LM's hidden states h_t over the program's tokens:

    h_pool = maxpool_t(h_t),  û = softmax(Linear(h_pool)),  L_critic = -Σ_i log p(u_i | W_i, D_i)

It serves twice. In training, each program token gets an intermediate value from the same head on its
own hidden state: v_t = softmax(Linear(h_t)), q̂(w_t) = v_t[u], the probability of the sample's actual
outcome u at token t. At inference it ranks samples by their pooled P(PassedTest).

The backbone is a copy of a causal LM (the policy's starting point, here), so the critic shares its
tokenizer and reads the prompt exactly as the policy does (``codeloop.models.encoding``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeloop.train.common import IGNORE, Example, join, optimise, pad, tokenize
from codeloop.types import Status

CLASSES = ("compile_error", "runtime_error", "failed", "passed")
"""CodeRL's outcome classes, in the order of the critic's outputs."""

OUTCOME_CLASS = {
    Status.COMPILE_ERROR: 0,
    Status.RUNTIME_ERROR: 1,
    Status.TIMEOUT: 1,
    Status.MEMORY_EXCEEDED: 1,
    Status.SANDBOX_VIOLATION: 1,
    Status.FAILED: 2,
    Status.PASSED: 3,
}
"""Sandbox status -> class. Infrastructure errors have no class: the critic never trains on them."""

PASSED = CLASSES.index("passed")


@dataclass(frozen=True)
class CriticStats:
    """One training run: steps, examples, the last batch's loss, accuracy on the training examples after it."""

    steps: int
    examples: int
    final_loss: float
    accuracy: float


class Critic:
    """``Critic.from_model(lm)``: a copy of ``lm`` and a fresh linear head over its last hidden states."""

    def __init__(self, backbone: Any, head: Any) -> None:
        self.backbone, self.head = backbone, head

    @classmethod
    def from_model(cls, model: Any, seed: int = 0) -> Critic:
        import torch

        backbone = copy.deepcopy(model)
        torch.manual_seed(seed)
        head = torch.nn.Linear(backbone.config.hidden_size, len(CLASSES)).to(next(backbone.parameters()).device)
        return cls(backbone, head)

    def _states(self, rows: Sequence[Example], pad_id: int) -> tuple[Any, Any]:
        """Last hidden states [B, T, H] and the mask of program tokens [B, T]."""
        device = next(self.backbone.parameters()).device
        ids, mask, labels = (t.to(device) for t in pad(rows, pad_id))
        trunk = self.backbone.base_model  # the transformer without its LM head: its last hidden states
        return trunk(input_ids=ids, attention_mask=mask).last_hidden_state, labels != IGNORE

    def pooled_logits(self, rows: Sequence[Example], pad_id: int) -> Any:
        """Linear(maxpool over the program's tokens of h_t): [B, 4]."""
        states, program = self._states(rows, pad_id)
        pooled = states.masked_fill(~program.unsqueeze(-1), float("-inf")).max(dim=1).values
        return self.head(pooled.float())

    def token_values(self, rows: Sequence[Example], pad_id: int) -> Any:
        """v_t = softmax(Linear(h_t)) at every position: [B, T, 4] (read them at the program's tokens)."""
        states, _ = self._states(rows, pad_id)
        return self.head(states.float()).softmax(-1)

    def save(self, path: Path, tokenizer: Any = None) -> None:
        """The backbone (Hugging Face format), the head, ``critic.json``; with ``tokenizer`` also the
        tokenizer, so that the folder alone can score programs (``codeloop rank``)."""
        import torch

        self.backbone.save_pretrained(path)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
        torch.save(self.head.state_dict(), path / "critic_head.pt")
        (path / "critic.json").write_text(json.dumps({"classes": list(CLASSES)}) + "\n")

    @classmethod
    def load(cls, path: Path) -> Critic:
        """A critic saved by :meth:`save`; a ValueError names what the folder lacks."""
        import torch
        from transformers import AutoModelForCausalLM

        missing = [name for name in ("critic.json", "critic_head.pt", "config.json") if not (Path(path) / name).is_file()]
        if missing:
            raise ValueError(f"{path}: not a critic saved by `codeloop loop coderl` (RUN/iter_N/critic): "
                             f"no {', '.join(missing)}")
        classes = json.loads((Path(path) / "critic.json").read_text()).get("classes")
        if classes != list(CLASSES):
            raise ValueError(f"{path}/critic.json: classes {classes!r}, expected {list(CLASSES)!r}")
        backbone = AutoModelForCausalLM.from_pretrained(path)
        head = torch.nn.Linear(backbone.config.hidden_size, len(CLASSES))
        head.load_state_dict(torch.load(path / "critic_head.pt", weights_only=True))
        return cls(backbone, head)

    def to(self, device: str) -> Critic:
        self.backbone.to(device)
        self.head.to(device)
        return self


def encode(tokenizer: Any, items: Sequence[tuple[str, str]]) -> list[Example]:
    """(prompt, program) pairs as the trainers encode them: the program's tokens are the labelled ones."""
    return [join(*tokenize(tokenizer, prompt, program)) for prompt, program in items]


def train_critic(critic: Critic, tokenizer: Any, items: Sequence[tuple[str, str]], labels: Sequence[int], lr: float = 1e-4,
                 epochs: float = 2.0, batch_size: int = 16, seed: int = 0, progress: bool = False) -> CriticStats:
    """Minimise -Σ log p(u_i | W_i, D_i) over (prompt, program) items with class labels (``OUTCOME_CLASS``)."""
    import torch

    rows = encode(tokenizer, items)
    target = torch.tensor(list(labels))
    pad_id = tokenizer.pad_token_id
    device = next(critic.backbone.parameters()).device

    def loss_for(batch: list[int]) -> Any:
        logits = critic.pooled_logits([rows[i] for i in batch], pad_id)
        return torch.nn.functional.cross_entropy(logits, target[batch].to(device))

    module = torch.nn.ModuleDict({"backbone": critic.backbone, "head": critic.head})
    steps, loss = 0, float("nan")
    for steps, loss in optimise(module, len(rows), batch_size, epochs, lr, seed, progress, "critic", loss_for):
        pass
    predicted = class_probabilities(critic, tokenizer, items).argmax(-1)
    return CriticStats(steps, len(rows), loss, float((predicted == target).float().mean()) if len(rows) else 0.0)


def class_probabilities(critic: Critic, tokenizer: Any, items: Sequence[tuple[str, str]], batch_size: int = 64) -> Any:
    """û for each (prompt, program): [N, 4] on the CPU."""
    import torch

    rows = encode(tokenizer, items)
    out = []
    with torch.no_grad():
        for b in range(0, len(rows), batch_size):
            out.append(critic.pooled_logits(rows[b:b + batch_size], tokenizer.pad_token_id).softmax(-1).cpu())
    return torch.cat(out) if out else torch.zeros((0, len(CLASSES)))


def token_rewards(critic: Critic, tokenizer: Any, items: Sequence[tuple[str, str]], labels: Sequence[int],
                  batch_size: int = 64) -> list[list[float]]:
    """q̂(w_t) = v_t[u] for every program token of every item (the encoded program: its tokens, then EOS)."""
    import torch

    rows = encode(tokenizer, items)
    out: list[list[float]] = []
    with torch.no_grad():
        for b in range(0, len(rows), batch_size):
            chunk = rows[b:b + batch_size]
            values = critic.token_values(chunk, tokenizer.pad_token_id).cpu()
            for r, (_ids, lab) in enumerate(chunk):
                where = [t for t, y in enumerate(lab) if y != IGNORE]
                out.append([float(values[r, t, labels[b + r]]) for t in where])
    return out
