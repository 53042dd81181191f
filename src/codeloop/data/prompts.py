"""Prompt formats shared by training and inference, so a model sees at run time what it learned on.

A completion always continues a Python function header: the task prompt ends with the signature and
docstring, the completion is the body. The repair prompt (used by self-refinement, and in the seed
policy's corpus) puts the previous attempt and what execution said about it in comments above the
task prompt, so the completion is again just a body.
"""

from __future__ import annotations

STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\n\n\n")
"""Where a body ends: the start of anything at module level."""


def task_prompt(prompt: str) -> str:
    """The prompt a generator continues for a task (its code prompt, unchanged)."""
    return prompt


def _commented(text: str) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in text.rstrip("\n").splitlines())


def repair_prompt(prompt: str, attempt: str, feedback: str) -> str:
    """The task, a previous attempt at its body, and the feedback it got; continue with a fixed body."""
    return ("# Previous attempt:\n" + _commented(prompt + attempt) + "# Feedback:\n" + _commented(feedback or "none")
            + prompt)


def execution_feedback(status: str, reason: str) -> str:
    """What execution said about an attempt, as the repair prompt shows it: ``failed: 2/6 cases ...``."""
    return f"{status}: {reason}" if reason else status


def describe_failure(inputs: object, expected: object, got: object, limit: int = 300) -> str:
    """One failing I/O case in the words the sandbox uses: ``input ... expected ... got ...``."""
    def short(value: object) -> str:
        text = repr(value)
        return text if len(text) <= limit else text[: limit - 3] + "..."

    return f"input {short(inputs)} expected {short(expected)} got {short(got)}"
