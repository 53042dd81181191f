"""The compiler expert κ: 1 when the program compiles, checked in the trusted parent; nothing of the
sample runs.

- ``compiles``: Python's ``compile()`` (parse + bytecode); for ``language="st"`` (IEC 61131-3 Structured
  Text) codeloop's own checker (:mod:`codeloop.languages.st`), the built-in compiler expert κ.
- ``mypy_check``: mypy's static check, PLUM's filter (optional: ``pip install mypy``); one mypy run for
  a whole batch of programs. Unannotated functions are checked too (``--check-untyped-defs``).
- ``command_check``: any external compiler or checker for other languages (an IEC 61131-3 Structured
  Text compiler, gcc, javac...): the program is written to a fresh temporary folder, the command runs
  there with ``{file}`` replaced by the program's path, exit status 0 means it compiles, and lines like
  ``FILE:LINE[:COL]: message`` in its output become the reason. The command runs with a scrubbed
  environment, no stdin, a wall-clock limit and its own process group, killed whole at the deadline.
  It is not sandboxed further: configure a compiler you trust not to execute what it compiles.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from codeloop.languages import st
from codeloop.sandbox.session import end_session
from codeloop.types import Feedback

MAX_REASON = 500


def compiles(program: str, language: str = "python") -> Feedback:
    if language == "st":
        problems = st.errors(program)
        return Feedback("compiler", 0.0 if problems else 1.0, "; ".join(str(d) for d in problems)[:MAX_REASON])
    if language != "python":
        raise ValueError(f"no built-in compiler for language {language!r} (use command_check with its compiler)")
    try:
        with warnings.catch_warnings():  # a sample's SyntaxWarnings are not the evaluator's to print
            warnings.simplefilter("ignore")
            compile(program, "<sample>", "exec", dont_inherit=True)  # as the sandbox compiles it
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) else ""
        return Feedback("compiler", 0.0, f"{type(exc).__name__}: {getattr(exc, 'msg', exc)}{where}")
    return Feedback("compiler", 1.0)


def mypy_check(programs: Sequence[str]) -> list[Feedback]:
    """mypy's verdict per program (1.0: no error), from a single mypy run over all of them. A program
    that does not even parse gets the compiler's verdict (a syntax error would stop mypy's whole run)."""
    try:
        from mypy import api
    except ImportError as exc:
        raise RuntimeError("the mypy static check needs mypy: pip install 'codeloop[plum]'") from exc
    parsed = [compiles(p) for p in programs]
    if not any(f.score for f in parsed):
        return parsed
    with tempfile.TemporaryDirectory(prefix="codeloop-mypy-") as tmp:
        paths = []
        for i, program in enumerate(programs):
            if not parsed[i].score:
                continue
            (Path(tmp) / f"sample_{i}.py").write_text(program)
            paths.append(str(Path(tmp) / f"sample_{i}.py"))
        stdout, stderr, status = api.run(["--ignore-missing-imports", "--check-untyped-defs", "--no-error-summary",
                                     "--show-error-codes", "--no-incremental", "--cache-dir", os.devnull,
                                     "--follow-imports", "skip", "--python-version", "3.11", *paths])
    errors: dict[int, list[str]] = {}
    for line in stdout.splitlines():
        match = re.match(r".*?sample_(\d+)\.py:(\d+):(?:\d+:)?\s*error:\s*(.*)", line)
        if match:
            errors.setdefault(int(match.group(1)), []).append(f"line {match.group(2)}: {match.group(3)}")
    if status not in (0, 1):  # 2: mypy itself failed (a crash, a bad option), not the programs
        raise RuntimeError(f"mypy failed: {(stderr or stdout).strip()[:MAX_REASON]}")
    return [parsed[i] if not parsed[i].score else
            Feedback("mypy", 0.0, "; ".join(errors[i])[:MAX_REASON]) if i in errors else Feedback("mypy", 1.0)
            for i in range(len(programs))]


_DIAGNOSTIC = re.compile(r"^\S*?sample[^:\s]*:(\d+)(?::(\d+))?:?\s*(.*)$")


def command_check(program: str, command: Sequence[str], suffix: str = ".txt", timeout_s: float = 60.0) -> Feedback:
    """Compile ``program`` with an external command (``{file}`` in its arguments is the program's path)."""
    if not command:
        raise ValueError("command_check needs a command, e.g. ['gcc', '-fsyntax-only', '{file}']")
    with tempfile.TemporaryDirectory(prefix="codeloop-compile-") as tmp:
        path = Path(tmp) / f"sample{suffix}"
        path.write_text(program)
        argv = [a.replace("{file}", str(path)) for a in command]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "LANG": "C.UTF-8"}
        try:
            proc = subprocess.Popen(argv, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise RuntimeError(f"cannot run the compiler {argv[0]!r}: {exc}") from exc
        out: bytes | None = None
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        finally:
            end_session(proc.pid)  # it, past its time, or what it left running: gone before its folder
        if out is None:
            proc.communicate()
            return Feedback("compiler", 0.0, f"the compiler ran past {timeout_s:g}s")
    text = out.decode(errors="replace")
    found = [m for m in (_DIAGNOSTIC.match(line.strip()) for line in text.splitlines()) if m]
    reason = "; ".join(f"line {m.group(1)}: {m.group(3)}" for m in found) or text.strip()
    return Feedback("compiler", 1.0 if proc.returncode == 0 else 0.0, "" if proc.returncode == 0 else reason[:MAX_REASON])
