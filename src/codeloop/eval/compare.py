"""Two models on the same tasks: is the difference in pass@1 more than sampling noise?

Each task's pass rate (its samples that passed / its samples) is taken before and after; their mean is
pass@1 (the unbiased estimate at k=1), and the difference of the means is the mean of the per-task
differences. Pairing by task is what makes the comparison sharp: tasks differ in difficulty far more
than two checkpoints do, and that spread cancels in each task's own difference. The standard error is
sd(differences) / sqrt(tasks), and the p-value is a two-sided paired t-test's (tasks - 1 degrees of
freedom). What it does not see: the spread between training runs. Two checkpoints trained with
different seeds can differ more than this error says; train more than once to measure that.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from codeloop.data.jsonl import DataError, read_jsonl, require
from codeloop.eval.stats import mean_var, t_cdf


@dataclass(frozen=True)
class Comparison:
    """``after`` against ``before`` over the tasks both evaluated."""

    tasks: int
    before: float
    """pass@1 before: the mean over tasks of each task's pass rate."""
    after: float
    difference: float
    """after - before, the mean of the per-task differences."""
    se: float
    """The paired standard error of ``difference``: sd of the per-task differences / sqrt(tasks)."""
    p_value: float
    """Two-sided, of a paired t-test of difference = 0."""
    low: float
    high: float
    """The 95% interval of ``difference`` (Student's t quantile)."""
    better: int
    """Tasks whose pass rate rose."""
    worse: int
    """Tasks whose pass rate fell."""


def read_passes(path: str | Path) -> dict[str, list[bool]]:
    """task_id -> the ``passed`` verdict of each of its samples, from a results JSONL (``codeloop eval
    --out``); a DataError names file, line and field."""
    out: dict[str, list[bool]] = {}
    for line, obj in read_jsonl(path):
        task_id = str(require(obj, "task_id", (str, int), path, line))
        passed = require(obj, "passed", bool, path, line)
        out.setdefault(task_id, []).append(passed)
    if not out:
        raise DataError(f"{path}: no results")
    return out


def pass_at_1(passes: Mapping[str, Sequence[bool]]) -> float:
    """The mean over tasks of each task's pass rate (pass@1's unbiased estimate)."""
    return sum(sum(v) / len(v) for v in passes.values()) / len(passes)


def _t_quantile(q: float, df: float) -> float:
    """The t with P(T <= t) = q (q > 1/2), by bisection on ``t_cdf``."""
    low, high = 0.0, 1e3
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if t_cdf(mid, df) < q else (low, mid)
    return (low + high) / 2


def compare(before: Mapping[str, Sequence[bool]], after: Mapping[str, Sequence[bool]]) -> Comparison:
    """Paired comparison over the same tasks (a ValueError names tasks only one side has)."""
    only = sorted(set(before) ^ set(after))
    if only:
        side = "before" if only[0] in before else "after"
        raise ValueError(f"the two evaluations must cover the same tasks: {len(only)} are in one only "
                         f"(first: {only[0]!r}, only {side})")
    if not before:
        raise ValueError("no tasks to compare")
    tasks = sorted(before)
    rate_before = [sum(before[t]) / len(before[t]) for t in tasks]
    rate_after = [sum(after[t]) / len(after[t]) for t in tasks]
    d = [a - b for a, b in zip(rate_after, rate_before)]
    n = len(d)
    mean, var = mean_var(d) if n > 1 else (d[0], 0.0)
    se = math.sqrt(var / n)
    if se == 0:  # every task moved alike (or none moved): nothing to weigh the mean against
        p, half = (1.0 if mean == 0 else 0.0), 0.0
    else:
        t = mean / se
        p = 2 * (1 - t_cdf(abs(t), n - 1))
        half = _t_quantile(0.975, n - 1) * se
    return Comparison(n, pass_at_1(before), pass_at_1(after), mean, se, p, mean - half, mean + half,
                      sum(x > 0 for x in d), sum(x < 0 for x in d))
