"""vLLM generation for GPU users (optional extra ``codeloop[vllm]``; imported only when chosen).

Prompts go to vLLM as token ids, encoded here as the hf backend and the trainers encode them
(:mod:`codeloop.models.encoding`), and cut as the hf backend cuts them: a prompt with no room left for
``max_new_tokens`` in the model's window keeps its end (vLLM would refuse it), so a run samples the same
contexts whichever backend serves it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from codeloop.models import VLLM_MEMORY
from codeloop.models.base import GeneratorError, truncate_at_stop
from codeloop.models.encoding import leading_specials, prompt_ids
from codeloop.models.hf import locate
from codeloop.types import Completion, SamplingParams


class VLLMGenerator:
    """``VLLMGenerator("seed-python")``: the same protocol as the hf backend, served by vLLM."""

    def __init__(self, name_or_path: str, gpu_memory_utilization: float = VLLM_MEMORY, dtype: str = "auto",
                 seed: int = 0, **engine_kwargs: Any) -> None:
        try:
            from vllm import LLM
        except ImportError:
            raise GeneratorError("the vllm backend needs the optional extra: pip install 'codeloop[vllm]' (GPU)") from None
        self.name = name_or_path
        self.llm = LLM(model=locate(name_or_path), gpu_memory_utilization=gpu_memory_utilization, dtype=dtype,
                       seed=seed, **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self._lead = leading_specials(self.tokenizer)  # what a prompt starts with (a BOS, or nothing)
        self.window = int(self.llm.model_config.max_model_len)

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        """As the hf backend: ``params.n`` completions of each prompt; greedy decoding (temperature 0)
        decodes once and repeats it n times (vLLM refuses n > 1 without sampling)."""
        from vllm import SamplingParams as VSamplingParams

        greedy = params.temperature <= GREEDY_BELOW
        sp = VSamplingParams(n=1 if greedy else params.n, temperature=0.0 if greedy else params.temperature,
                             top_p=params.top_p, max_tokens=params.max_new_tokens, stop=list(params.stop) or None,
                             seed=params.seed)
        room = max(1, self.window - params.max_new_tokens)
        encoded = [{"prompt_token_ids": prompt_ids(self.tokenizer, p, self._lead)[-room:]} for p in prompts]
        out = []
        for request in self.llm.generate(encoded, sp, use_tqdm=False):
            rows = []
            for o in request.outputs:
                text, hit = truncate_at_stop(o.text, params.stop)
                rows.append(Completion(text, "stop" if hit else (o.finish_reason or ""),
                                       len(request.prompt_token_ids or ()), len(o.token_ids)))
            out.append(rows * params.n if greedy else rows)
        return out


GREEDY_BELOW = 1e-5
"""vLLM's own threshold (``vllm.sampling_params._SAMPLING_EPS``): a temperature below it decodes greedily."""
