"""PLUM's test generator: a model writes a reference solution and tests; only self-consistent ones stay.

For each instruction the generator answers, several times, in PLUM's fixed format (Fig. 3 of the
paper): ``[Analysis]``, ``[Solution]``, ``[Start Code]``, ``[Test Code]``. Parsing is strict: the four
headers once each, in order, at the start of a line; code may sit in a Markdown fence; the solution and
the tests must compile and the tests must call the function the start code (or the solution) defines.
Self-consistency filter: the generated solution runs against its own tests in the sandbox (it is
generated code like any other); a (solution, tests) pair survives only if it passes. The solutions are
never used for training: they only vouch for the tests.

Trust: the surviving tests become the task's ``check(candidate)`` and run in the sandbox's judge
process, inside the contained worker, like a dataset's tests. They come from the generator the user
configured; a completion under test never sees or edits them. They are generated code all the same:
the worker runs them without privileges (no root, no mounts: ``codeloop.sandbox.worker.confine``), so
a hostile suite can decide its own tasks' verdicts, as any test author can, and nothing beyond them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from codeloop.data.tasks import check_from_body
from codeloop.models import api_usage
from codeloop.models.base import Generator
from codeloop.sandbox import Job, Runner
from codeloop.types import SamplingParams, Task

PROMPT = (
    "You are a teaching assistant helping to write reference solutions and tests for programming questions. "
    "Given a programming question, you need to first analyze the problem, then write a reference solution (code), "
    "followed by assertions that test student solutions. The test code must be runnable when concatenated at the "
    "end of student solutions to check the correctness. Programming Question:\n"
    "{question}\n"
    "Follow the format below. [Analysis]\n"
    "{{Natural Language Analysis Of The Problem.}}\n"
    "[Solution]\n"
    "{{Your Solution To The Problem}}\n"
    "[Start Code]\n"
    "{{Start code for students so that they can follow the I/O protocol. E.g. Function signatures, class names etc.}}\n"
    "[Test Code]\n"
    "{{Test code that is immediately runnable if concatenated with student code to check the correctness.}}"
)
HEADERS = ("[Analysis]", "[Solution]", "[Start Code]", "[Test Code]")
_FENCE = re.compile(r"^```[\w+-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)
_DEF = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)


@dataclass(frozen=True)
class GeneratedTests:
    """One parsed answer of the test generator."""

    analysis: str
    solution: str
    start_code: str
    test_code: str
    entry_point: str


def _unfence(text: str) -> str:
    text = text.strip()
    match = _FENCE.match(text)
    return match.group(1).strip() if match else text


def _compiles(code: str) -> bool:
    try:
        compile(code, "<generated>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def parse_answer(text: str) -> GeneratedTests | None:
    """The four sections of an answer, or None when it does not follow the format."""
    spans = []
    for header in HEADERS:
        found = list(re.finditer(r"(?m)^[ \t]*" + re.escape(header), text))
        if len(found) != 1:
            return None
        spans.append(found[0].span())
    if [s for s, _ in spans] != sorted(s for s, _ in spans):
        return None
    ends = [s for s, _ in spans[1:]] + [len(text)]
    sections = [_unfence(text[start:end]) for (_, start), end in zip(spans, ends)]
    analysis, solution, start, tests = sections
    if not solution or not tests or not _compiles(solution) or not _compiles(tests):
        return None
    names = _DEF.findall(start) or _DEF.findall(solution)
    entry = next((n for n in names if re.search(rf"\b{re.escape(n)}\s*\(", tests)), "")
    if not entry:
        return None
    return GeneratedTests(analysis, solution, start, tests, entry)


@dataclass(frozen=True)
class TestGenStats:
    """Answers asked for, parsed, self-consistent, and instructions left with at least one test suite;
    on an API backend also the requests made for them and their tokens, as the server counted them (0
    for a local model, and for answers the on-disk cache gave)."""

    __test__ = False

    answers: int
    parsed: int
    consistent: int
    tasks_kept: int
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0  # of the completion tokens, those a reasoning model spent thinking


class TestGenerator:
    """Asks ``generator`` for ``n`` answers per instruction and keeps the self-consistent test suites."""

    __test__ = False

    def __init__(self, generator: Generator, n: int = 3, temperature: float = 0.7, max_new_tokens: int = 2048,
                 seed: int = 0) -> None:
        self.generator, self.n = generator, n
        self.params = SamplingParams(n=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)

    def propose(self, tasks: Sequence[Task]) -> list[list[str]]:
        """The raw answers, ``n`` per task."""
        prompts = [PROMPT.format(question=t.intent) for t in tasks]
        return [[c.text for c in row] for row in self.generator.generate(prompts, self.params)]

    def tasks_with_tests(self, tasks: Sequence[Task], sandbox: Runner) -> tuple[list[Task], TestGenStats]:
        """The tasks that keep at least one self-consistent suite, their tests replaced by those suites."""
        before = api_usage(self.generator)
        answers = self.propose(tasks)
        kept, stats = consistent_tasks(tasks, answers, sandbox)
        return kept, replace(stats, **{key: value - before[key] for key, value in api_usage(self.generator).items()})


def consistent_tasks(tasks: Sequence[Task], answers: Sequence[Sequence[str]],
                     sandbox: Runner) -> tuple[list[Task], TestGenStats]:
    """Parse every answer, run each generated solution against its own tests, and give each task the
    suites that passed (joined into one ``check``). A suite must test the task's own entry point when
    the task names one; tasks left without a suite are dropped."""
    parsed: list[tuple[int, GeneratedTests]] = []
    for i, (task, row) in enumerate(zip(tasks, answers, strict=True)):
        for text in row:
            suite = parse_answer(text)
            if suite is not None and (not task.entry_point or suite.entry_point == task.entry_point):
                parsed.append((i, suite))
    jobs = [Job(program=s.solution, entry_point=s.entry_point, test=check_from_body(s.test_code)) for _, s in parsed]
    passed: dict[int, list[GeneratedTests]] = {}
    for (i, suite), outcome in zip(parsed, sandbox.run(jobs)):
        if outcome.passed:
            passed.setdefault(i, []).append(suite)
    kept = []
    for i, suites in sorted(passed.items()):
        suites = [s for s in suites if s.entry_point == suites[0].entry_point]
        body = "\n".join(s.test_code for s in suites)
        kept.append(replace(tasks[i], entry_point=suites[0].entry_point, test=check_from_body(body),
                            inputs=None, outputs=None))
    stats = TestGenStats(sum(len(r) for r in answers), len(parsed), sum(len(s) for s in passed.values()), len(kept))
    return kept, stats
