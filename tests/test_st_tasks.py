"""The shipped ``st-plc`` tasks: every ST reference compiles cleanly and passes outputs computed by an
independent Python reference (scripts/st_tasks_source.py), in the sandbox; an empty body fails them all."""

from __future__ import annotations

import pytest

from codeloop.data.tasks import load_tasks
from codeloop.eval import evaluate
from codeloop.languages import st
from codeloop.sandbox import Sandbox
from codeloop.types import Sample, Task


@pytest.fixture(scope="module")
def tasks() -> dict[str, Task]:
    return load_tasks("st-plc")


def _empty_body(source: str) -> str:
    """The reference with every statement removed: declarations kept, so it still compiles."""
    head, last = source.rstrip().rsplit("\n", 1)
    return head[:head.rindex("END_VAR") + len("END_VAR")] + "\n" + last + "\n"


def test_the_set_is_real(tasks: dict[str, Task]) -> None:
    assert len(tasks) >= 30 and all(t.language == "st" and t.inputs and t.canonical_solution for t in tasks.values())
    blocks = [t for t in tasks.values() if "FUNCTION_BLOCK" in (t.canonical_solution or "")]
    assert len(blocks) >= 8


def test_references_compile_without_a_warning(tasks: dict[str, Task]) -> None:
    for task in tasks.values():
        assert st.check(task.prompt + (task.canonical_solution or "")) == [], task.task_id


def test_references_pass_and_empty_bodies_fail(tasks: dict[str, Task]) -> None:
    refs = [Sample(t.task_id, t.canonical_solution or "") for t in tasks.values()]
    empties = [Sample(t.task_id, _empty_body(t.canonical_solution or "")) for t in tasks.values()]
    with Sandbox(workers=2, timeout_s=5.0) as sandbox:
        outcomes = evaluate(tasks, refs + empties, sandbox)
    passed = {s.task_id: o for s, o in zip(refs, outcomes[:len(refs)])}
    assert {k: o.reason for k, o in passed.items() if not o.passed} == {}
    empty = outcomes[len(refs):]
    assert all(st.errors(s.completion) == [] for s in empties)  # they compile: the tests, not κ, reject them
    assert [s.task_id for s, o in zip(empties, empty) if o.passed] == []
