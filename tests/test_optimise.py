"""The code-optimisation set and loop, with a scripted OpenAI-compatible 'model'."""

from __future__ import annotations

import pytest
from fake_openai import FakeOpenAI

from codeloop.data import slow
from codeloop.eval import evaluate
from codeloop.recipes.optimise import OptimiseConfig, run
from codeloop.types import Sample, Status

FAST = {  # faster bodies for the first three programs
    "sum_to_n": "    return n * (n + 1) // 2\n",
    "fib": "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "count_primes": ("    if n < 3:\n        return 0\n    sieve = [True] * n\n    sieve[0] = sieve[1] = False\n"
                     "    for i in range(2, int(n ** 0.5) + 1):\n        if sieve[i]:\n"
                     "            sieve[i * i::i] = [False] * len(sieve[i * i::i])\n    return sum(sieve)\n"),
}


def test_there_are_at_least_30_programs_each_with_tests_and_a_timing_input():
    programs = slow.load()
    assert len(programs) >= 30 and all(p.task.inputs and p.timing_input for p in programs)


def test_every_slow_reference_passes_its_own_tests(sandbox):
    programs = slow.load()
    samples = [Sample(p.task.task_id, p.program.split(":\n", 1)[1]) for p in programs]
    outcomes = evaluate({p.task.task_id: p.task for p in programs}, samples, sandbox)
    assert [p.task.task_id for p, o in zip(programs, outcomes) if o.status is not Status.PASSED] == []


def _model(feedback_first: set[str]):
    """Answers the slow body again, except: fast bodies at once, or only after feedback for some. Asked
    on the chat route, it answers with the whole function in a fence, as chat models do."""
    def reply(body):
        prompt = body["prompt"] if "prompt" in body else body["messages"][-1]["content"]
        program = next(p for p in slow.load(3) if prompt.endswith(p.task.prompt))
        name = program.task.task_id.split("/")[1]
        if name in feedback_first and "# Feedback:" not in prompt:
            text = program.program.split(":\n", 1)[1]  # correct, not faster
        else:
            text = FAST[name]
        return text if "prompt" in body else f"Faster:\n```python\n{program.task.prompt}{text}```"
    return reply


@pytest.mark.parametrize("backend", ["openai", "openai-chat"])
def test_metrics_per_attempt_count_programs_optimised(tmp_path, monkeypatch, backend):
    with FakeOpenAI(reply=_model(feedback_first={"fib"})) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        # alpha 1e-3 over 8 rounds: at 0.05 and 4 rounds the unchanged "fib" was called faster in ~1 run of 8
        # (timing noise, under the earlier unpaired timing); the real speed-ups here are ~100x and stay far
        # below this p.
        metrics = run(OptimiseConfig(backend=backend, model="m", limit=3, attempts=3, rounds=8, alpha=1e-3,
                                     out_dir=str(tmp_path)))
    assert [m["optimised"] for m in metrics] == [2, 3]
    assert metrics[-1]["mean_speedup_optimised"] > 1.05
    assert (tmp_path / "metrics.png").exists()


def test_a_wrong_fast_program_is_not_optimised(tmp_path, monkeypatch):
    with FakeOpenAI(reply=lambda body: "    return 0\n") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        metrics = run(OptimiseConfig(backend="openai", model="m", limit=2, attempts=2, rounds=3,
                                     out_dir=str(tmp_path)))
    assert [m["optimised"] for m in metrics] == [0, 0]


@pytest.mark.parametrize("rounds", [4])
def test_the_same_program_is_not_called_faster(sandbox, rounds):
    from codeloop.recipes.optimise import time_against

    program = slow.load(1)[0]
    result = time_against(sandbox, program.program, program.program, program.timing_input,
                          OptimiseConfig(rounds=rounds))
    assert not result.significant()


MEMOISED = """
_slow = solve
_answers = {}


def solve(*args):
    key = repr(args)
    if key not in _answers:
        _answers[key] = _slow(*args)
    return _answers[key]
"""

PRECOMPUTED = """
_table = {}


def _fill():
    for n in (0, 1, 10, 1000, 3_000_000):  # every input it will see, the timed one included
        _table[n] = _slow(n)


_slow = solve
_fill()


def solve(n):
    return _table[n] if n in _table else _slow(n)
"""


@pytest.mark.parametrize("trick", [MEMOISED, PRECOMPUTED], ids=["cache across calls", "table built at load"])
def test_caching_answers_is_not_called_faster(trick):
    # By the minimum of three calls per process, the memoising wrapper of a slow program was timed
    # ~2,400x faster; only the load plus a first call is timed now, so a table of answers built at
    # load (here for the very inputs it will get) costs what the first call saved.
    from codeloop.recipes.optimise import time_against, timing_sandbox

    # 8 rounds and alpha 1e-3: at 4 rounds and 0.05 timing noise alone failed it (a fresh-clone run:
    # 1.25x, p 0.028, df 3); the holes this guards against measured p < 1e-9.
    program = next(p for p in slow.load() if p.task.task_id == "slow-python/sum_to_n")
    with timing_sandbox(10.0) as timer:
        result = time_against(timer, program.program, program.program + trick, program.timing_input,
                              OptimiseConfig(rounds=8))
    assert not isinstance(result, str) and not result.significant(alpha=1e-3), result
