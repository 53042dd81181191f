"""IEC 61131-3 Structured Text: parse and check (:func:`check`), run (:func:`entry`).

``check(source)`` returns the diagnostics a compiler front end would print (errors and warnings, each
with line and column); a program with no error compiles. ``entry(source, name)`` gives a Python
callable for one FUNCTION, FUNCTION_BLOCK or PROGRAM that takes and returns plain data (see
:mod:`codeloop.languages.st.interp`). Untrusted programs are run through ``codeloop.sandbox``.
"""

from codeloop.languages.st.check import Diagnostic
from codeloop.languages.st.check import check as _check
from codeloop.languages.st.interp import STCompileError, STRuntimeError, entry, load
from codeloop.languages.st.syntax import declaration_lines


def check(source: str) -> list[Diagnostic]:
    """Every error and warning in ``source``, sorted by position (empty: it compiles cleanly)."""
    return _check(source)[1]


def errors(source: str) -> list[Diagnostic]:
    """Only the errors: a program compiles when this is empty."""
    return [d for d in check(source) if d.severity == "error"]


def compile_message(source: str) -> str | None:
    """What a compile error reads like in an outcome (the first three errors), or None: it compiles."""
    found = errors(source)
    return "; ".join(str(d) for d in found[:3]) if found else None


__all__ = ["Diagnostic", "STCompileError", "STRuntimeError", "check", "compile_message", "declaration_lines", "entry", "errors", "load"]
