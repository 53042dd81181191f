"""Prompt formats shared by training and inference, so a model sees at run time what it learned on.

A Python completion continues a function header: the task prompt ends with the signature and
docstring, the completion is the body. (A Structured Text prompt is the intent as a comment and the
completion the whole program.) The repair prompt (used by self-refinement, and in seed-python's corpus)
puts the previous attempt and what execution said about it in comments above the task prompt, in the
task's language, so the completion is again what the plain prompt asks for.
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


def _st_comment_text(text: str) -> str:
    """Text that cannot end or open an ST comment: ``*)`` and ``(*`` get a space inside."""
    return text.rstrip("\n").replace("*)", "* )").replace("(*", "( *")


def repair_block(prompt: str, attempt: str, feedback: str, language: str = "python") -> str:
    """One earlier attempt and its feedback, as comments: ``#`` lines for Python; for Structured Text
    one ``(* ... *)`` block, the attempt's own comment marks defused so they cannot close it."""
    if language == "st":
        return ("(* Previous attempt:\n" + _st_comment_text(prompt + attempt) + "\nFeedback:\n"
                + _st_comment_text(feedback or "none") + "\n*)\n")
    return "# Previous attempt:\n" + _commented(prompt + attempt) + "# Feedback:\n" + _commented(feedback or "none")


def repair_prompt(prompt: str, attempt: str, feedback: str, language: str = "python") -> str:
    """The task, a previous attempt at it, and the feedback it got; continue with a fixed version."""
    return repair_block(prompt, attempt, feedback, language) + prompt


def history_prompt(prompt: str, attempts: list[tuple[str, str]], language: str = "python") -> str:
    """Like :func:`repair_prompt` with every earlier (attempt, feedback), oldest first."""
    return "".join(repair_block(prompt, a, f, language) for a, f in attempts) + prompt


CRITIQUE = {"python": ("# Critique:\n# ", ("\n",)), "st": ("(* Critique: ", ("*)", "\n"))}
"""How a self-critique is asked for after a repair block, and where it ends, per language."""


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
