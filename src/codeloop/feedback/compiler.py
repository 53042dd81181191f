"""The compiler expert κ: 1 when the program parses and compiles, checked in the trusted parent.

Python's ``compile()`` only parses and builds bytecode; nothing of the sample runs.
"""

from __future__ import annotations

from codeloop.types import Feedback


def compiles(program: str) -> Feedback:
    try:
        compile(program, "<sample>", "exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) else ""
        return Feedback("compiler", 0.0, f"{type(exc).__name__}: {getattr(exc, 'msg', exc)}{where}")
    return Feedback("compiler", 1.0)
