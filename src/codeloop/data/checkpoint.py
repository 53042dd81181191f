"""Commands that survive being stopped: each row is on disk as soon as it is made.

``codeloop eval --out OUT`` (and ``codeloop sample``) append every row to ``OUT.partial`` (a line at a
time, so a kill leaves at most the last row cut short) and keep beside it ``OUT.partial.json``: the
settings that decide the rows (for eval: the task set and a digest of its tasks, the timeout, the
memory limit, the isolation asked for). Run again with the same settings, the command reads the rows
back, checks them (eval: each against its sample, ``task_id`` and ``completion``, in order), and makes
only the rows after them; when all are made, ``OUT.partial`` becomes ``OUT``. Anything that differs is
an error that says what, and ``--fresh`` starts over.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from codeloop.data.jsonl import DataError, where
from codeloop.types import Task


def tasks_digest(tasks: Iterable[Task]) -> str:
    """SHA-256 of the tasks (all their fields, each task once, in task_id order): a changed prompt or test is a change."""
    unique = {t.task_id: t for t in tasks}
    text = json.dumps([dataclasses.asdict(unique[t]) for t in sorted(unique)], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


class Checkpoint:
    """``OUT.partial`` and its settings file, for one command's ``OUT`` (see the module docstring). Used as a
    context manager: the lock :meth:`rows` takes is let go on leaving it."""

    def __init__(self, out: Path, settings: dict[str, Any]) -> None:
        self.out = out
        self.partial = out.with_name(out.name + ".partial")
        self.settings_file = out.with_name(out.name + ".partial.json")
        self.settings = settings
        self._held: BinaryIO | None = None
        self._ends: list[int] = []  # where each row read back ends in OUT.partial

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._held is not None:  # the lock goes with it
            self._held.close()
            self._held = None

    @property
    def paths(self) -> tuple[Path, Path]:
        return self.partial, self.settings_file

    def rows(self, fresh: bool = False) -> list[dict[str, Any]]:
        """The rows an earlier run of this command left (none with ``fresh``, or when there is none), after
        checking that it ran with the same settings (a DataError says what differs). A last row cut short
        by a kill is dropped from the file. From here on this run holds ``OUT.partial`` (a lock): a second one
        with the same ``OUT`` is refused, not mixed in."""
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self._held = open(self.partial, "ab+")  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(self._held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"{self.partial}: another run is writing it: wait for it to end, or give this one "
                            "another --out") from None
        self._held.seek(0)
        data = self._held.read()
        complete = data[:data.rfind(b"\n") + 1]
        self._held.truncate(0 if fresh else len(complete))
        self._ends = []
        if fresh or not complete:
            return []
        try:
            written = json.loads(self.settings_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise DataError(f"{self.partial}: rows of an earlier run, without its settings ({self.settings_file}): "
                            "run with --fresh to start over") from None
        for key, value in self.settings.items():
            if written.get(key) != value:
                raise DataError(f"{self.partial}: the earlier run had {key} {written.get(key)!r}, this one has "
                                f"{value!r}: run with the same settings to resume it, or with --fresh to start over")
        rows, end = [], 0
        for number, text in enumerate(complete.split(b"\n")[:-1], start=1):  # not splitlines: U+2028 may be in a row
            end += len(text) + 1
            try:
                row = json.loads(text)
            except ValueError as exc:
                raise DataError(f"{where(self.partial, number)}: malformed JSON ({exc}): run with --fresh to start over") from None
            if not isinstance(row, dict):
                raise DataError(f"{where(self.partial, number)}: not a JSON object: run with --fresh to start over")
            rows.append(row)
            self._ends.append(end)
        return rows

    def keep(self, n: int) -> None:
        """Drop every row of ``OUT.partial`` after the first ``n`` that :meth:`rows` returned (to be made again)."""
        assert self._held is not None
        self._held.truncate(self._ends[n - 1] if n else 0)

    def open(self) -> TextIO:
        """The rows file to append to, after the rows :meth:`rows` read back and :meth:`keep` kept (line-buffered:
        each row is on disk once written); the settings file is written first."""
        self.settings_file.write_text(json.dumps(self.settings, sort_keys=True) + "\n", encoding="utf-8")
        return open(self.partial, "a", encoding="utf-8", buffering=1)

    def discard_if_empty(self) -> bool:
        """Remove ``OUT.partial`` and its settings file if no row is in it (a run that failed or was stopped
        before its first row leaves nothing to resume); True if it did."""
        try:
            if self.partial.stat().st_size:
                return False
        except FileNotFoundError:
            pass
        self.partial.unlink(missing_ok=True)
        self.settings_file.unlink(missing_ok=True)
        return True

    def finish(self) -> None:
        """All rows written: ``OUT.partial`` becomes ``OUT``."""
        os.replace(self.partial, self.out)
        self.settings_file.unlink(missing_ok=True)


def resume_tasks(checkpoint: Checkpoint, task_ids: Sequence[str], n: int, batch: int, fresh: bool = False) -> int:
    """``codeloop sample``: how many of ``task_ids`` an earlier run of the same sampling finished, its rows
    being ``n`` per task in order (``sample_index`` 0 to n-1), made ``batch`` tasks at a time. It resumes
    where a batch starts (the batch's seed is its first task's index), so the rows are those an
    uninterrupted run writes; the rows of a batch left unfinished are dropped from the file."""
    rows = checkpoint.rows(fresh)
    for i, row in enumerate(rows):
        task, index = divmod(i, n)
        for field, value in (("task_id", task_ids[task] if task < len(task_ids) else None), ("sample_index", index)):
            if row.get(field) != value:
                raise DataError(f"{where(checkpoint.partial, i + 1, field)}: {row.get(field)!r} where sample {index} of "
                                f"task {task + 1} belongs: the tasks changed since the earlier run; run with --fresh to start over")
    finished = len(rows) // n
    start = finished if finished == len(task_ids) else finished - finished % batch
    checkpoint.keep(start * n)
    return start
