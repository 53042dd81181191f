"""The synthetic-python task families: deterministic, held-out shapes, correct references."""

from __future__ import annotations

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
