"""Prompt formats shared by training and inference, so a model sees at run time what it learned on.

A completion always continues a Python function header: the task prompt ends with the signature and
docstring, the completion is the body. The repair prompt (used by self-refinement, and in the seed
policy's corpus) puts the previous attempt and what execution said about it in comments above the
task prompt, so the completion is again just a body.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from codeloop.types import Outcome, Status

STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\n\n\n")
"""Where a body ends: the start of anything at module level."""
ST_STOP: tuple[str, ...] = ()
"""Structured Text: a program may hold several units (a helper FUNCTION, then the main one), so
generation runs to the model's end of text or the token limit."""


def stop_for(languages: Iterable[str]) -> tuple[str, ...]:
    """The stop sequences for a batch of tasks in ``languages`` (none when they are mixed)."""
    found = set(languages)
    if found <= {"python"}:
        return STOP
    return ST_STOP if found == {"st"} else ()


def _commented(text: str) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in text.rstrip("\n").splitlines())


def repair_block(prompt: str, attempt: str, feedback: str) -> str:
    """One earlier attempt and its feedback, as comments."""
    return "# Previous attempt:\n" + _commented(prompt + attempt) + "# Feedback:\n" + _commented(feedback or "none")


def repair_prompt(prompt: str, attempt: str, feedback: str) -> str:
    """The task, a previous attempt at its body, and the feedback it got; continue with a fixed body."""
    return repair_block(prompt, attempt, feedback) + prompt


def history_prompt(prompt: str, attempts: list[tuple[str, str]]) -> str:
    """Like :func:`repair_prompt` with every earlier (attempt, feedback), oldest first."""
    return "".join(repair_block(prompt, a, f) for a, f in attempts) + prompt


def optimise_prompt(prompt: str, slow_program: str, attempts: Sequence[tuple[str, str]] = ()) -> str:
    """Ask for a faster body: the slow program in comments, earlier attempts with feedback, the header."""
    head = "# Program to speed up (keep its results, take less time):\n" + _commented(slow_program)
    return head + "".join(repair_block(prompt, a, f) for a, f in attempts) + prompt


def execution_feedback(status: str, reason: str) -> str:
    """What execution said about an attempt, as the repair prompt shows it: ``failed: 2/6 cases ...``."""
    return f"{status}: {reason}" if reason else status


def describe_failure(inputs: object, expected: object, got: object, limit: int = 300) -> str:
    """One failing I/O case in the words the sandbox uses: ``input ... expected ... got ...``."""
    def short(value: object) -> str:
        text = repr(value)
        return text if len(text) <= limit else text[: limit - 3] + "..."

    return f"input {short(inputs)} expected {short(expected)} got {short(got)}"


def outcome_feedback(outcome: Outcome, reveal_tests: bool = True) -> str:
    """Execution feedback for a repair prompt, from a sandbox Outcome.

    With ``reveal_tests`` it is the sandbox's reason (the failing input, expected and actual output,
    or the error). Without it, nothing about the tests' expected outputs is shown: how many tests
    failed, or the kind of error and where.
    """
    if reveal_tests or outcome.status is not Status.FAILED:
        reason = outcome.reason
        if not reveal_tests:  # runtime errors: keep the exception, drop anything quoting a test
            reason = reason.split(" (assert", 1)[0].split("assertion failed:", 1)[0].strip()
        return execution_feedback(outcome.status.value, reason)
    failed = sum(not t.passed for t in outcome.tests)
    total = len(outcome.tests)
    return execution_feedback("failed", f"{failed}/{total} hidden tests failed" if total else "a hidden test failed")
