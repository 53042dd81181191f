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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

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

T = TypeVar("T")
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
    """``Judge(generator).judge(intent, candidates)`` (``judge_all`` for many intents in one batch);
    ``generator`` is any backend (chat or completion)."""

    def __init__(self, generator: Generator, language: str = "Python", retries: int = 1, max_new_tokens: int = 64,
                 temperature: float = 0.0) -> None:
        self.generator, self.retries, self.max_new_tokens = generator, retries, max_new_tokens
        self.temperature = temperature
        self.system = SYSTEM.format(expertise=EXPERTISE.get(language.lower(), f"{language} programming"))
        # a chat endpoint gets the system prompt in the system role; a completion model gets it inline
        self.chat = getattr(generator, "mode", "") == "chat"
        if self.chat:
            generator.system_prompt = self.system  # type: ignore[attr-defined]

    def judge(self, intent: str, candidates: Sequence[str]) -> JudgeResult:
        return self.judge_all([(intent, candidates)])[0]

    def judge_all(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[JudgeResult]:
        """:meth:`judge` for many (intent, candidates) at once (see :meth:`_ask_all`). An item's
        ``seconds`` is its share of the wall time of the calls that answered it."""
        prompts = [self._prompt(intent, candidates) for intent, candidates in items]
        verdicts, answers, cost, seconds = self._ask_all(prompts, lambda i, text: parse_verdicts(text, len(items[i][1])))
        return [JudgeResult(verdicts[i], tuple(answers[i]), cost[i], seconds[i]) for i in range(len(items))]

    def _ask_all(self, prompts: Sequence[str], parse: Callable[[int, str], T | None]
                 ) -> tuple[list[T | None], list[list[str]], list[float], list[float]]:
        """Each prompt's answer parsed by ``parse(index, text)`` (None: off the format, asked again up to
        ``retries`` times, with the attempt's number as seed), with every answer, its cost and its share of
        the time. Each round asks for every prompt still unanswered in one ``generate`` call, which a
        backend serves together (vLLM batches them, the openai backend sends them concurrently); the
        prompts and seeds are those of asking each alone."""
        answers: list[list[str]] = [[] for _ in prompts]
        cost, seconds = [0.0] * len(prompts), [0.0] * len(prompts)
        parsed: list[T | None] = [None] * len(prompts)
        pending = list(range(len(prompts)))
        for attempt in range(self.retries + 1):
            if not pending:
                break
            started = time.monotonic()
            rows = self.generator.generate([prompts[i] for i in pending], SamplingParams(
                temperature=self.temperature, max_new_tokens=self.max_new_tokens, seed=attempt))
            share = (time.monotonic() - started) / len(pending)
            for i, row in zip(pending, rows, strict=True):
                answers[i].append(row[0].text)
                cost[i], seconds[i] = cost[i] + row[0].cost_usd, seconds[i] + share
                parsed[i] = parse(i, row[0].text)
            pending = [i for i in pending if parsed[i] is None]
        return parsed, answers, cost, seconds

    def _prompt(self, intent: str, candidates: Sequence[str]) -> str:
        user = USER.format(intent=intent, implementations="\n=====\n".join(candidates))
        return user if self.chat else self.system + "\n\n" + user

    def pick_best(self, intent: str, candidates: Sequence[str]) -> int | None:
        """Index of the best candidate by the judge, or None if it never answers a valid number."""
        return self.pick_best_all([(intent, candidates)])[0]

    def pick_best_all(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[int | None]:
        """:meth:`pick_best` for many (intent, candidates) at once (see :meth:`_ask_all`)."""
        prompts = [PICK.format(k=len(candidates), intent=intent, implementations="\n=====\n".join(candidates))
                   for intent, candidates in items]

        def number(i: int, text: str) -> int | None:
            text = text.strip()
            ok = text.isascii() and text.isdigit() and 1 <= int(text) <= len(items[i][1])  # "²" is a digit to isdigit
            return int(text) - 1 if ok else None

        return self._ask_all(prompts, number)[0]
