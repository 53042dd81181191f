"""A chat model as a code writer: continuation prompts in, continuations out.

Every code-writing prompt here is a continuation (:mod:`codeloop.data.prompts`): a Python task's ends with
the function's signature and docstring, and the completion is the body. A chat endpoint (OpenAI's
current models serve only ``/chat/completions``) does not continue text: asked to complete the code, it
answers with the whole function, mostly in a fenced block, often with words around it. :class:`ChatCoder`
asks for the finished code in one block, takes the first block (or the whole answer when there is none;
an unclosed block cut by ``max_new_tokens`` runs to the end), and returns it after a blank line as the
continuation. Python runs the prompt's stub (a docstring is a body) and then the answer's definition,
which replaces it; helpers and imports of the prompt stay defined, and an answer that is only the body,
indented, still continues the stub. A Structured Text prompt is a comment, so its continuation is the
program. EvalPlus, too, takes a chat model's code out of its answer and runs the whole function, not a
body. The samples' ``completion`` then holds the whole function, so give chat models a larger
``max_new_tokens`` than a body needs.

The prompt's own stop sequences (the next module-level statement) are not passed on: a whole function
starts with the statement that ends a body.

Chat models like to show their function at work: ``print(f(3))``, ``assert f(2) == 5``, a loop over
examples, ``unittest.main()``, an ``input()`` for a demo. That code is the answer's, not the task's, yet
it would run when the sample is loaded, and fail (or hang) a correct function: a wrong expected value in a
demo assert, ``input()`` at end of file, ``unittest.main()``'s exit. Where the prompt is a Python function
to complete and the answer defines that function, :func:`without_script` keeps of the answer's module
level only what defines things: imports, functions, classes, ``sys.setrecursionlimit(...)``, and the
statements (assignments, and ``if``/``try``/loop blocks) that set a name those definitions use, unless
they assert, print or read input. EvalPlus's ``sanitize`` does the same for chat answers (keeping
imports, definitions and global assignments). An I/O task's program is left whole.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from codeloop.models.base import Generator
from codeloop.types import Completion, SamplingParams

ASK = ("Complete the code below. Reply with the finished code in one fenced code block (```), and nothing "
       "after the block.\n\n{code}")
"""The user message around a continuation prompt."""

_FENCE = re.compile(r"```[^\n`]*\n")


def code_of(answer: str) -> str:
    """The code in a chat answer: its first fenced block; the rest of the answer after an opening fence
    never closed (cut by the token limit); the whole answer when it has no fence."""
    opening = _FENCE.search(answer)
    if opening is None:
        return answer.strip("\n") + "\n"
    rest = answer[opening.end():]
    end = rest.find("```")
    code = rest if end < 0 else rest[:end]
    return code.rstrip() + "\n"


_SCRIPT_CALLS = frozenset({"print", "input", "exit", "quit", "breakpoint", "help"})
"""Calls that mark a module-level statement as a demo, not a definition."""


def stub_name(prompt: str) -> str | None:
    """The function a Python prompt asks to complete: its last statement, a ``def`` (None if it is not)."""
    try:
        body = ast.parse(prompt).body
    except (SyntaxError, ValueError):  # not Python (Structured Text), or not whole
        return None
    last = body[-1] if body else None
    return last.name if isinstance(last, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _sets(stmt: ast.stmt) -> set[str]:
    """Names a statement binds or changes: assigned, imported, defined, or an object's item, attribute or
    method (``table[i] = x``, ``table.append(x)``) under the name."""
    names = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(_root(node) or "")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            names.add(_root(node.func.value) or "")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names - {""}


def _reads(node: ast.AST) -> set[str]:
    """Names ``node`` reads: loaded, or declared ``global`` (``count += 1`` under it stores only)."""
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            names.add(n.id)
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            names.update(n.names)
    return names


def _calls(node: ast.AST) -> Iterator[str]:
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            yield n.func.id if isinstance(n.func, ast.Name) else n.func.attr if isinstance(n.func, ast.Attribute) else ""


def _is_main_guard(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.If) and "__name__" in _reads(stmt.test)


def _kind(stmt: ast.stmt) -> str:
    """"definition" (always kept), "script" (never) or "setting" (kept if it sets a name in use)."""
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return "definition"
    if isinstance(stmt, ast.Expr):  # a call for its effect: only sys.setrecursionlimit(...) is not a demo
        value = stmt.value
        return "definition" if isinstance(value, ast.Call) and next(_calls(value)) == "setrecursionlimit" else "script"
    if (isinstance(stmt, ast.Assert) or _is_main_guard(stmt) or any(isinstance(n, ast.Assert) for n in ast.walk(stmt))
            or _SCRIPT_CALLS.intersection(_calls(stmt))):
        return "script"
    return "setting"


def without_script(code: str, entry_point: str) -> str:
    """``code`` (a chat answer's) without its module-level demo code (see the module docstring), when it
    parses and defines ``entry_point`` at module level; otherwise ``code`` as it is."""
    try:
        body = ast.parse(code).body
    except (SyntaxError, ValueError):
        return code
    if not any(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.name == entry_point for s in body):
        return code
    kinds = [_kind(s) for s in body]
    keep = [k == "definition" for k in kinds]
    used: set[str] = set().union(*(_reads(s) for s, k in zip(body, keep) if k))
    changed = True
    while changed:  # a setting in use may read another (LIMIT = 10; TABLE = [0] * LIMIT)
        changed = False
        for i, stmt in enumerate(body):
            if not keep[i] and kinds[i] == "setting" and _sets(stmt) & used:
                keep[i], changed = True, True
                used |= _reads(stmt)
    if all(keep):
        return code
    lines = code.splitlines(keepends=True)
    spans, end = [], 0  # end: the last line of the statement before, if kept (what lies between stays)
    for stmt, kept in zip(body, keep):
        first = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
        if kept:
            spans.append("".join(lines[(end or first - 1):stmt.end_lineno]))
        end = (stmt.end_lineno or 0) if kept else 0
    return "".join(span if span.endswith("\n") else span + "\n" for span in spans)


class ChatCoder:
    """``ChatCoder(chat_generator)``: a :class:`~codeloop.models.base.Generator` that writes continuations
    through a chat model (see the module docstring). Its ``usage`` is the chat generator's."""

    def __init__(self, chat: Generator) -> None:
        self.chat = chat
        self.name = chat.name
        self.trimmed = 0  # answers whose module-level demo code was left out of the completion

    @property
    def usage(self) -> Any:
        return getattr(self.chat, "usage", None)

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        rows = self.chat.generate([ASK.format(code=p) for p in prompts], replace(params, stop=()))
        entry_points = [stub_name(p) for p in prompts]
        return [[replace(c, text="\n" + self._code(c.text, entry), answer=c.text) for c in row]
                for row, entry in zip(rows, entry_points)]

    def _code(self, answer: str, entry_point: str | None) -> str:
        code = code_of(answer)
        kept = without_script(code, entry_point) if entry_point else code
        self.trimmed += kept != code
        return kept
