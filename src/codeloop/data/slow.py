"""The code-optimisation set: 32 correct but slow Python programs written for codeloop.

Each comes with I/O tests (a faster version must still pass them) and a timing input that takes the
slow version tens to hundreds of milliseconds. Source: ``scripts/slow_programs_source.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeloop.data.tasks import task_from_dict
from codeloop.types import Task

PATH = Path(__file__).resolve().parent / "slow_python.jsonl"


@dataclass(frozen=True)
class SlowProgram:
    """A task (prompt, I/O tests), its slow reference program, and the input to time it on."""

    task: Task
    program: str
    timing_input: tuple[Any, ...]


def load(limit: int = 0) -> list[SlowProgram]:
    out = []
    for line_no, line in enumerate(PATH.read_text().splitlines(), start=1):
        row = json.loads(line)
        out.append(SlowProgram(task_from_dict(row, PATH, line_no), row["slow_program"], tuple(row["timing_input"])))
    return out[:limit] if limit else out
