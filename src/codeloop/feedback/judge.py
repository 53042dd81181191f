"""The semantic expert φ: an LLM that judges all k implementations of one intent in a single call.

The protocol is the paper's (online DPO, Fig. 2): a system prompt, then the problem and the
implementations separated by ``=====``; the answer must be exactly one bracket per implementation,
``[0] [1] [1]``. Parsing is strict (nothing else may appear); a malformed answer or a wrong count is
retried once, then recorded as a failure (scores None) with the raw answer, never guessed. Ties among
the best candidates are broken by a second call that asks for the best one's number. Cost and
latency come back on every Feedback; the generator's own cache makes reruns free.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from codeloop.models.base import Generator
from codeloop.types import Feedback, SamplingParams

SYSTEM = (
    "You are an expert in {expertise}. Your task is to evaluate the given code based on its logical, "
    "semantic, and syntactic correctness. You can tolerate minor mistakes or errors.\n"
    "IMPORTANT: Use the following format for your responses: \"[0] [1] [1]\", where 0 indicates a negative "
    "evaluation and 1 indicates a positive evaluation.\n"
    "IMPORTANT: Ensure that the number of brackets matches the number of given implementations.\n"
    "IMPORTANT: Provide the evaluations strictly in the specified format without any additional text, code, or "
    "formatting.\n"
    "INSTRUCTION: Given implementations are separated by '====='."
)
EXPERTISE = {"python": "Python programming",  # the paper's wording for ST (Fig. 2)
             "st": "PLC Structured Text (ST) programming as per IEC 61131-3 standards"}
USER = ("Great! Here is another problem and its corresponding implementations to evaluate.\n\n"
        "Problem: {intent}\n\nImplementations:\n{implementations}")
PICK = ("Here is a problem and {k} implementations, separated by '====='. Answer with the number (1 to {k}) of the "
        "best implementation and nothing else.\n\nProblem: {intent}\n\nImplementations:\n{implementations}")

_VERDICTS = re.compile(r"\s*(?:\[[01]\]\s*)+")


def parse_verdicts(text: str, expected: int) -> list[int] | None:
    """``"[0] [1] [1]"`` -> [0, 1, 1]; None unless the text is exactly ``expected`` brackets."""
    if not _VERDICTS.fullmatch(text):
        return None
    values = [int(v) for v in re.findall(r"\[([01])\]", text)]
    return values if len(values) == expected else None


@dataclass(frozen=True)
class JudgeResult:
    """Per-candidate verdicts (None when the judge never answered in format), with the raw answers."""

    verdicts: list[int] | None
    answers: tuple[str, ...]
    cost_usd: float
    seconds: float

    def feedback(self) -> list[Feedback]:
        if self.verdicts is None:
            return []
        return [Feedback("judge", float(v), "", self.cost_usd / len(self.verdicts), self.seconds / len(self.verdicts))
                for v in self.verdicts]


class Judge:
    """``Judge(generator).judge(intent, candidates)``; ``generator`` is any backend (chat or completion)."""

    def __init__(self, generator: Generator, language: str = "Python", retries: int = 1, max_new_tokens: int = 64) -> None:
        self.generator, self.retries, self.max_new_tokens = generator, retries, max_new_tokens
        self.system = SYSTEM.format(expertise=EXPERTISE.get(language.lower(), f"{language} programming"))
        # a chat endpoint gets the system prompt in the system role; a completion model gets it inline
        self.chat = getattr(generator, "mode", "") == "chat"
        if self.chat:
            generator.system_prompt = self.system  # type: ignore[attr-defined]

    def _ask(self, prompt: str, seed: int) -> tuple[str, float, float]:
        started = time.monotonic()
        completion = self.generator.generate(
            [prompt], SamplingParams(temperature=0.0, max_new_tokens=self.max_new_tokens, seed=seed))[0][0]
        return completion.text, completion.cost_usd, time.monotonic() - started

    def judge(self, intent: str, candidates: Sequence[str]) -> JudgeResult:
        user = USER.format(intent=intent, implementations="\n=====\n".join(candidates))
        prompt = user if self.chat else self.system + "\n\n" + user
        answers, cost, seconds = [], 0.0, 0.0
        for attempt in range(self.retries + 1):
            text, c, s = self._ask(prompt, seed=attempt)
            answers.append(text)
            cost, seconds = cost + c, seconds + s
            verdicts = parse_verdicts(text, len(candidates))
            if verdicts is not None:
                return JudgeResult(verdicts, tuple(answers), cost, seconds)
        return JudgeResult(None, tuple(answers), cost, seconds)

    def pick_best(self, intent: str, candidates: Sequence[str]) -> int | None:
        """Index of the best candidate by the judge, or None if it never answers a valid number."""
        prompt = PICK.format(k=len(candidates), intent=intent, implementations="\n=====\n".join(candidates))
        for attempt in range(self.retries + 1):
            text = self._ask(prompt, seed=attempt)[0].strip()
            if text.isdigit() and 1 <= int(text) <= len(candidates):
                return int(text) - 1
        return None
