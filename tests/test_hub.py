"""MBPP, EvalPlus and APPS converters, on small local files in the hub's own formats (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeloop.data import hub
from codeloop.eval import evaluate
from codeloop.types import Sample, Status

HUB = Path(__file__).parent / "data" / "hub"


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def statuses(sandbox, tasks, completions):
    samples = [Sample(tid, c) for tid, c in completions.items()]
    return [o.status for o in evaluate(tasks, samples, sandbox)]


def test_mbpp_reference_solutions_pass(sandbox):
    tasks = hub.load("mbpp", data_files=str(HUB / "mbpp.jsonl"))
    assert statuses(sandbox, tasks, {t.task_id: t.canonical_solution for t in tasks.values()}) == [Status.PASSED] * 2


def test_mbpp_entry_point_is_read_from_the_asserts():
    tasks = hub.load("mbpp", data_files=str(HUB / "mbpp.jsonl"))
    assert [t.entry_point for t in tasks.values()] == ["similar_elements", "is_not_prime"]


def test_mbpp_plus_catches_what_the_base_tests_miss(sandbox):
    tasks = hub.load("mbpp+", data_files=str(HUB / "mbppplus.jsonl"))
    lazy = "def is_not_prime(n):\n    return n % 2 == 0 or n % 5 == 0\n"  # passes 2, 10 and 35, not 7919... or 9
    right = tasks["Mbpp/3"].canonical_solution
    assert statuses(sandbox, tasks, {"Mbpp/3": right}) == [Status.PASSED]
    assert statuses(sandbox, tasks, {"Mbpp/3": lazy.replace("n % 5 == 0", "n == 35")}) == [Status.FAILED]


def test_humaneval_plus_loads_as_humaneval_format(sandbox):
    tasks = hub.load("humaneval+", data_files=str(HUB / "humanevalplus.jsonl"))
    assert statuses(sandbox, tasks, {"HumanEval/53": "    return x + y\n"}) == [Status.PASSED]


def test_apps_call_based_accepts_the_list_wrapped_output(sandbox):
    tasks = hub.load("apps", data_files=str(HUB / "apps.jsonl"))
    assert statuses(sandbox, tasks, {"APPS/10": "    return a + b\n"}) == [Status.PASSED]


def test_apps_stdin_tasks_compare_stdout(sandbox):
    tasks = hub.load("apps", data_files=str(HUB / "apps.jsonl"))
    wrong = "a, b = map(int, input().split())\nprint(a - b)\n"
    right = "a, b = map(int, input().split())\nprint(a + b)\n"
    assert statuses(sandbox, tasks, {"APPS/11": right}) == [Status.PASSED]
    assert statuses(sandbox, tasks, {"APPS/11": wrong}) == [Status.FAILED]
