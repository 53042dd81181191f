"""Paired comparison of two evaluations (codeloop.eval.compare, `codeloop compare`)."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from codeloop.cli import app
from codeloop.data import DataError
from codeloop.eval.compare import compare, read_passes

BEFORE = {"a": [True, False], "b": [False, False], "c": [True, True], "d": [False, False]}
AFTER = {"a": [True, True], "b": [True, False], "c": [True, False], "d": [False, False]}


def test_a_paired_comparison_with_worked_numbers():
    c = compare(BEFORE, AFTER)
    # per-task differences 0.5, 0.5, -0.5, 0: mean 0.125, sd sqrt(0.6875 / 3)
    se = math.sqrt(0.6875 / 3) / 2
    assert (c.tasks, c.before, c.after, c.better, c.worse) == (4, 0.375, 0.5, 2, 1)
    assert c.difference == pytest.approx(0.125) and c.se == pytest.approx(se)
    t = 0.125 / se  # Student's t with 3 degrees of freedom has a closed-form CDF
    cdf = 0.5 + (t / (math.sqrt(3) * (1 + t * t / 3)) + math.atan(t / math.sqrt(3))) / math.pi
    assert c.p_value == pytest.approx(2 * (1 - cdf), abs=1e-9)
    assert (c.low, c.high) == pytest.approx((0.125 - 3.182446 * se, 0.125 + 3.182446 * se), abs=1e-5)  # t(0.975, 3) = 3.182446


def test_the_same_move_on_every_task_is_certain_and_no_move_is_not():
    up = compare({"a": [False], "b": [False]}, {"a": [True], "b": [True]})
    assert (up.difference, up.se, up.p_value, up.low, up.high) == (1.0, 0.0, 0.0, 1.0, 1.0)
    assert compare(BEFORE, BEFORE).p_value == 1.0


def test_different_task_sets_are_refused():
    with pytest.raises(ValueError, match="same tasks: 1 are in one only \\(first: 'e', only after\\)"):
        compare(BEFORE, {**AFTER, "e": [True]})
    with pytest.raises(ValueError, match="no tasks"):
        compare({}, {})


def write(path, passes):
    path.write_text("".join(json.dumps({"task_id": t, "completion": "", "passed": p}) + "\n" for t, ps in passes.items() for p in ps))
    return path


def test_results_files_are_read_and_bad_lines_named(tmp_path):
    assert read_passes(write(tmp_path / "r.jsonl", BEFORE)) == BEFORE
    (tmp_path / "bad.jsonl").write_text('{"task_id": "a", "passed": true}\n{"task_id": "a", "passed": "yes"}\n')
    with pytest.raises(DataError, match="bad.jsonl:2: field 'passed'"):
        read_passes(tmp_path / "bad.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="empty.jsonl: no results"):
        read_passes(tmp_path / "empty.jsonl")


def test_cli_prints_one_row_per_model_and_names_a_mismatch(tmp_path):
    runner = CliRunner()
    before, after = write(tmp_path / "before.jsonl", BEFORE), write(tmp_path / "after.jsonl", AFTER)
    result = runner.invoke(app, ["compare", str(before), str(after), str(before)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith("4 tasks, pass@1 0.3750") and "+0.1250 ± 0.2394" in lines[2] and "2 / 1" in lines[2]
    assert "+0.0000 ± 0.0000" in lines[3] and lines[3].endswith("1.0000  0 / 0")
    other = write(tmp_path / "other.jsonl", {"a": [True]})
    result = runner.invoke(app, ["compare", str(before), str(other)])
    assert result.exit_code == 2 and "other.jsonl: the two evaluations must cover the same tasks" in result.output
