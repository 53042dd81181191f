"""The synthetic-python task families: deterministic, held-out shapes, correct references."""

from __future__ import annotations

import pytest
from conftest import DROPS_ONES, SQUARE_SORTED

from codeloop.data import load_tasks, synthetic
from codeloop.eval import evaluate
from codeloop.types import Sample, Status

PYTHON_TEST_DIGEST = "de2428e0b9c52ba1"
"""sha256 of the first 30 synthetic-python:test tasks, taken before synthetic-st was added."""


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

    for name in ("synthetic-python+:test:0", "synthetic-python:test:ten", "synthetic-python:test:\u00b2", "synthetic-python+:nope"):
        with pytest.raises(DataError, match="synthetic-python"):
            load_tasks(name)


# --- synthetic-st: the integer tasks with a scalar result, in Structured Text ---------------------------

@pytest.fixture(scope="module")
def st_sandbox():
    from codeloop.sandbox import Sandbox

    with Sandbox(workers=2, timeout_s=5.0, preload=("codeloop.languages.st",)) as sb:
        yield sb


def test_st_tasks_are_deterministic_distinct_and_held_out_by_shape():
    train = synthetic._draw("train", None, 0, language="st")
    test = synthetic._draw("test", None, 0, language="st")
    assert len({t.prompt for t, *_ in train}) == len(train) == 6000
    assert not ({shape for _, shape, *_ in train} & {shape for _, shape, *_ in test})
    assert synthetic.generate("dev", 40, language="st") == load_tasks("synthetic-st:dev:40")
    assert all(t.language == "st" and t.prompt.startswith("(* ") for t in load_tasks("synthetic-st:test:40").values())


def test_st_references_compile_cleanly_and_pass_the_plus_tests(st_sandbox):
    from codeloop.languages import st

    tasks = load_tasks("synthetic-st+:test:150")
    kinds = {s for t, shape, *_ in synthetic._draw("test", 150, 0, language="st") for s in shape.split(":")[1].split(">")}
    assert {"reverse", "mod", "first", "max"} <= kinds  # the loop backwards, MOD's sign, RETURN, the found flag
    assert all(st.check(t.prompt + (t.canonical_solution or "")) == [] for t in tasks.values())
    outcomes = evaluate(tasks, [Sample(k, t.canonical_solution or "") for k, t in tasks.items()], st_sandbox)
    assert {k: o.reason for k, o in zip(tasks, outcomes) if not o.passed} == {}


def _variant(task, old: str, new: str) -> Sample:
    assert old in (task.canonical_solution or ""), task.task_id
    return Sample(task.task_id, (task.canonical_solution or "").replace(old, new))


def test_st_tests_catch_the_plausible_mistakes(st_sandbox):
    """Reading the whole array instead of xs[1..n] compiles and fails every time (tasks whose outputs
    are all alike are not drawn, so a constant never passes). ST's MOD takes the dividend's sign where
    the task asks for a remainder modulo M: that fails wherever a negative value reaches the step (not
    after abs, a square or a positive filter, where plain MOD is right)."""
    tasks = load_tasks("synthetic-st:test")
    assert all(len(set(t.outputs)) > 1 for t in tasks.values())
    past_n = [_variant(t, "TO n DO", "TO 12 DO") for t in tasks.values() if "TO n DO" in (t.canonical_solution or "")]
    raw_mod = [_variant(t, "IF x < 0 THEN", "IF FALSE THEN") for t in tasks.values()
               if "IF x < 0 THEN" in (t.canonical_solution or "")]
    assert len(past_n) >= 300 and len(raw_mod) >= 50
    outcomes = evaluate(tasks, past_n + raw_mod, st_sandbox)
    assert [s.task_id for s, o in zip(past_n, outcomes) if o.status is not Status.FAILED] == []
    assert sum(o.status is Status.FAILED for o in outcomes[len(past_n):]) >= 0.3 * len(raw_mod)


def test_python_tasks_are_unchanged_by_the_st_family():
    """The Python family draws exactly as before the ST tasks existed (the shipped seed-python and the
    README's numbers depend on it): a digest of the first test tasks, taken before the change."""
    import hashlib

    text = "".join(repr((t.prompt, t.canonical_solution, t.inputs, t.outputs))
                   for t in synthetic.generate("test", 30).values())
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == PYTHON_TEST_DIGEST


def test_unknown_families_and_languages_are_refused():
    from codeloop.data import DataError

    with pytest.raises(DataError, match="synthetic-st"):
        load_tasks("synthetic-go:test")
    with pytest.raises(ValueError, match="language"):
        synthetic.generate("test", 3, language="go")


# --- repair examples: what the seeds learn to refine from is what the sandbox says -------------------

@pytest.mark.parametrize("language", ["python", "st"])
def test_repair_examples_quote_the_sandbox_word_for_word(language, st_sandbox):
    """Each repair example's wrong attempt, run through the real sandbox, gets exactly the feedback the
    example shows: the seed learns refinement on the words self-refinement will give it."""
    from codeloop.data.prompts import outcome_feedback, repair_prompt
    from codeloop.languages import st

    check = st.compile_message if language == "st" else None
    examples = synthetic.repair_examples(30, language=language, compile_error=check)
    pool = {t.prompt: t for t, *_ in synthetic._draw("train", 30, 0, salt=":repair", language=language)}
    head = "(* Previous attempt:\n" if language == "st" else "# Previous attempt:\n"
    tasks, samples, shown = {}, [], []
    for prompt, answer in examples:
        task = next(t for p, t in pool.items() if prompt.endswith(p))
        assert answer == task.canonical_solution and prompt.startswith(head)
        attempt = _attempt_of(prompt, task, language)
        assert repair_prompt(task.prompt, attempt, prompt.split("Feedback:\n", 1)[1].rsplit("\n*)", 1)[0]
                             if language == "st" else _uncomment(prompt.split("# Feedback:\n", 1)[1][:-len(task.prompt)]),
                             language) == prompt
        tasks[task.task_id] = task
        samples.append(Sample(task.task_id, attempt))
        shown.append(prompt)
    outcomes = evaluate(tasks, samples, st_sandbox)
    kinds = {o.status for o in outcomes}
    assert {Status.FAILED, Status.COMPILE_ERROR} <= kinds and len(outcomes) == 30
    for prompt, outcome in zip(shown, outcomes):
        assert "Feedback:\n" + _as_comment(outcome_feedback(outcome), language) in prompt


def _uncomment(text: str) -> str:
    return "\n".join(line[2:] for line in text.rstrip("\n").splitlines())


def _as_comment(text: str, language: str) -> str:
    return text if language == "st" else "\n".join(f"# {line}".rstrip() for line in text.splitlines())


def _attempt_of(prompt: str, task, language: str) -> str:
    """The wrong attempt inside a repair prompt (the task's own prompt line taken off its front)."""
    if language == "st":
        quoted = prompt.split("(* Previous attempt:\n", 1)[1].split("\nFeedback:\n", 1)[0]
        return quoted.split("\n", 1)[1] + "\n"  # the first line is the task's prompt, defused
    quoted = _uncomment(prompt.split("# Previous attempt:\n", 1)[1].split("# Feedback:\n", 1)[0]) + "\n"
    return quoted[len(task.prompt):]
