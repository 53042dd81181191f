"""How a prompt and a completion become token ids: one convention for sampling and for training.

A prompt is encoded with the special tokens its tokenizer puts *before* a text (a BOS where the model
family has one: Llama's yes, Qwen's none), as vLLM and transformers' pipelines encode a prompt; a
completion is encoded bare and, in training, ends in EOS. Both the generators and the trainers call
these functions, so a model is sampled on exactly the context it was trained on.

Prompt and completion are encoded separately, as generation sees them: the prompt's last token never
merges with the completion's first. (Encoding ``prompt + completion`` as one text, as TRL does, lets a
byte-level BPE merge the prompt's closing ``"\\n"`` with the completion's indentation; the model is
then trained on a prompt it never sees at inference.)
"""

from __future__ import annotations

from typing import Any


def leading_specials(tokenizer: Any) -> list[int]:
    """The special tokens ``tokenizer`` adds before a text (those it may add after it are left out)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return list(full[:start])
    return []


def prompt_ids(tokenizer: Any, prompt: str, lead: list[int] | None = None) -> list[int]:
    """``prompt``'s ids as the model is sampled on them (``lead``: :func:`leading_specials`, if known)."""
    return (leading_specials(tokenizer) if lead is None else lead) + tokenizer(prompt, add_special_tokens=False)["input_ids"]


def completion_ids(tokenizer: Any, completion: str) -> list[int]:
    """``completion``'s ids followed by EOS: what a finished sample is, token for token."""
    return tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
