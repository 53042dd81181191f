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
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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


class ChatCoder:
    """``ChatCoder(chat_generator)``: a :class:`~codeloop.models.base.Generator` that writes continuations
    through a chat model (see the module docstring). Its ``usage`` is the chat generator's."""

    def __init__(self, chat: Generator) -> None:
        self.chat = chat
        self.name = chat.name

    @property
    def usage(self) -> Any:
        return getattr(self.chat, "usage", None)

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        rows = self.chat.generate([ASK.format(code=p) for p in prompts], replace(params, stop=()))
        return [[replace(c, text="\n" + code_of(c.text)) for c in row] for row in rows]
