"""Any Hugging Face causal LM through transformers: local path, hub name, or ``seed-python``.

Prompts are batched (left padding, KV cache), ``n`` samples per prompt come from one call, stop
sequences end a row early and are cut from the text, and a fixed seed gives the same completions for
the same prompts and batch size. CPU or GPU (``device="cuda"``); bf16 on GPU by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codeloop.models.base import GeneratorError, truncate_at_stop
from codeloop.types import Completion, SamplingParams

SEED_DIR = Path(__file__).resolve().parent / "seed_python"
"""Where the project's seed policy ships (Hugging Face format, with its tokenizer)."""
BUILTIN = {"seed-python": SEED_DIR}


def resolve(name_or_path: str) -> str:
    """A built-in model name, a local directory, or a hub name (returned unchanged)."""
    if name_or_path in BUILTIN:
        path = BUILTIN[name_or_path]
        if not (path / "config.json").exists():
            raise GeneratorError(f"built-in model {name_or_path!r} is missing at {path}: run `codeloop seed train`")
        return str(path)
    return name_or_path


class HFGenerator:
    """``HFGenerator("seed-python")`` or ``HFGenerator(model=..., tokenizer=...)`` for objects in memory."""

    def __init__(self, name_or_path: str = "seed-python", device: str | None = None, batch_size: int = 32,
                 model: Any = None, tokenizer: Any = None, dtype: str = "auto") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = name_or_path
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = max(1, batch_size)
        if model is None:
            path = resolve(name_or_path)
            torch_dtype = (torch.bfloat16 if self.device.startswith("cuda") else torch.float32) if dtype == "auto" \
                else getattr(torch, dtype)
            try:
                tokenizer = AutoTokenizer.from_pretrained(path)
                model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
            except OSError as exc:
                raise GeneratorError(f"cannot load model {name_or_path!r}: {exc}") from None
        self.model, self.tokenizer = model.to(self.device).eval(), tokenizer
        self.tokenizer.padding_side = "left"  # decoder-only: pad on the left so generation continues the prompt
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        out: list[list[Completion]] = []
        per_call = max(1, self.batch_size // max(1, params.n))  # rows in flight = prompts x n
        for start in range(0, len(prompts), per_call):
            out += self._batch(list(prompts[start:start + per_call]), params, params.seed + start)
        return out

    def _batch(self, prompts: list[str], params: SamplingParams, seed: int) -> list[list[Completion]]:
        import torch

        window = getattr(self.model.config, "max_position_embeddings", None)
        # a prompt longer than the model's window keeps its end (the part the completion continues)
        self.tokenizer.truncation_side = "left"
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False,
                             truncation=window is not None,
                             max_length=max(1, window - params.max_new_tokens) if window else None).to(self.device)
        sample = params.temperature > 0
        per_prompt = params.n if sample else 1  # greedy: one decode, repeated n times
        kwargs: dict[str, Any] = {"max_new_tokens": params.max_new_tokens, "num_return_sequences": per_prompt,
                                  "do_sample": sample, "pad_token_id": self.tokenizer.pad_token_id,
                                  "eos_token_id": self.tokenizer.eos_token_id}
        if sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        torch.manual_seed(seed)
        with torch.no_grad():
            tokens = self.model.generate(**enc, **kwargs)
        new = tokens[:, enc["input_ids"].shape[1]:].tolist()
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        rows = []
        for i, ids in enumerate(new):
            ended = self.tokenizer.eos_token_id in ids
            ids = ids[: ids.index(self.tokenizer.eos_token_id)] if ended else ids
            ids = [t for t in ids if t != self.tokenizer.pad_token_id]
            text, hit = truncate_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), params.stop)
            reason = "stop" if ended or hit else "length"
            rows.append(Completion(text, reason, int(prompt_lens[i // per_prompt]), len(ids)))
        return [rows[i * per_prompt:(i + 1) * per_prompt] * (params.n // per_prompt) for i in range(len(prompts))]
