"""The synthetic-python task families: deterministic, held-out shapes, correct references."""

from __future__ import annotations

import pytest
from conftest import DROPS_ONES, SQUARE_SORTED

from codeloop.data import load_tasks, synthetic
from codeloop.eval import evaluate
from codeloop.types import Sample, Status


def test_generation_is_deterministic_in_the_seed():
    assert synthetic.generate("dev", 50, seed=3) == synthetic.generate("dev", 50, seed=3)


def test_another_seed_gives_other_tasks():
    assert [t.prompt for t in synthetic.generate("dev", 20, seed=1).values()] != \
        [t.prompt for t in synthetic.generate("dev", 20, seed=2).values()]


def test_thousands_of_distinct_training_tasks():
    tasks = synthetic.generate("train")
    assert len(tasks) == 6000 and len({t.prompt for t in tasks.values()}) == 6000


def test_test_shapes_never_occur_in_training():
    train = {shape for _, shape in synthetic.generate_with_shapes("train")}
    test = {shape for _, shape in synthetic.generate_with_shapes("test")}
    assert test and not (test & train)


def test_every_step_of_the_test_split_is_taught_in_training():
    def steps(split):
        return {kind for _, shape in synthetic.generate_with_shapes(split) for kind in shape.split(":")[1].split(">")}

    assert steps("test") <= steps("train")


def test_reference_solutions_pass_in_the_sandbox(sandbox):
    tasks = synthetic.generate("test", 200)
    outcomes = evaluate(tasks, [Sample(t.task_id, t.canonical_solution) for t in tasks.values()], sandbox)
    assert {o.status for o in outcomes} == {Status.PASSED}


def test_named_sets_load_with_an_optional_size():
    assert len(load_tasks("synthetic-python:test:25")) == 25


def test_export_round_trips_through_jsonl(tmp_path, sandbox):
    from typer.testing import CliRunner

    from codeloop.cli import app

    out = tmp_path / "test.jsonl"
    assert CliRunner().invoke(app, ["tasks", "export", "synthetic-python:test:40", "--out", str(out)]).exit_code == 0
    tasks = load_tasks(str(out))
    outcomes = evaluate(tasks, [Sample(t.task_id, t.canonical_solution) for t in tasks.values()], sandbox)
    assert tasks == load_tasks("synthetic-python:test:40") and {o.status for o in outcomes} == {Status.PASSED}


# --- synthetic-python+: the same tasks with stricter tests -------------------------------------------

def test_plus_tasks_are_the_same_tasks_with_the_base_cases_first_and_more():
    base, plus = load_tasks("synthetic-python:test:50"), load_tasks("synthetic-python+:test:50")
    assert base.keys() == plus.keys()
    for task_id, b in base.items():
        p = plus[task_id]
        assert (p.prompt, p.canonical_solution, p.entry_point) == (b.prompt, b.canonical_solution, b.entry_point)
        assert p.inputs[:synthetic.CASES] == b.inputs and p.outputs[:synthetic.CASES] == b.outputs
        assert len(p.inputs) == len(p.outputs) == synthetic.PLUS_CASES
    assert plus == load_tasks("synthetic-python+:test:50")


def test_drawing_plus_tests_leaves_the_base_tasks_as_they_were():
    assert synthetic.generate("dev", 30) == load_tasks("synthetic-python:dev:30")
    assert {k: t.inputs for k, t in synthetic.generate("dev", 30).items()} == \
        {k: t.inputs[:synthetic.CASES] for k, t in synthetic.generate("dev", 30, plus=True).items()}


def test_references_pass_the_plus_tests(sandbox):
    tasks = load_tasks("synthetic-python+:test:200")
    outcomes = evaluate(tasks, [Sample(t.task_id, t.canonical_solution) for t in tasks.values()], sandbox)
    assert {o.status for o in outcomes} == {Status.PASSED}


def test_a_wrong_program_that_passes_the_six_cases_fails_the_plus_tests(sandbox):
    task_id = next(k for k, t in synthetic.generate("test").items() if SQUARE_SORTED in t.prompt)
    sample = [Sample(task_id, DROPS_ONES)]
    base, plus = load_tasks("synthetic-python:test"), load_tasks("synthetic-python+:test")
    assert evaluate(base, sample, sandbox)[0].status is Status.PASSED
    assert evaluate(plus, sample, sandbox)[0].status is Status.FAILED


def test_a_bad_size_is_refused_with_the_name():
    from codeloop.data import DataError

    for name in ("synthetic-python+:test:0", "synthetic-python:test:ten", "synthetic-python+:nope"):
        with pytest.raises(DataError, match="synthetic-python"):
            load_tasks(name)
