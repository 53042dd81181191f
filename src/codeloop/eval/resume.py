"""An evaluation that survives being stopped: each result row is on disk as soon as its sample is judged.

``codeloop eval --out OUT`` appends every row to ``OUT.partial`` (a line at a time, so a kill leaves at
most the last row cut short) and keeps beside it ``OUT.partial.json``: what decides the verdicts (the
task set and a digest of its tasks, the timeout, the memory limit, the isolation asked for). Run again
on the same samples with the same settings, it reads the rows back, checks each against its sample
(``task_id`` and ``completion``, in order), and judges only the samples after them; when all are
judged, ``OUT.partial`` becomes ``OUT``. Anything else that differs is an error that says what, and
``--fresh`` starts over.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from codeloop.data import DataError
from codeloop.data.jsonl import where
from codeloop.eval.evaluate import outcome_from_row
from codeloop.types import Outcome, Sample, Task


def tasks_digest(tasks: Mapping[str, Task], samples: Iterable[Sample]) -> str:
    """SHA-256 of the tasks the samples are judged against (all their fields): a changed test is a change."""
    used = sorted({s.task_id for s in samples})
    text = json.dumps([dataclasses.asdict(tasks[t]) for t in used], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


class Checkpoint:
    """``OUT.partial`` and its settings file, for one evaluation's ``OUT`` (see the module docstring)."""

    def __init__(self, out: Path, settings: dict[str, Any]) -> None:
        self.out = out
        self.partial = out.with_name(out.name + ".partial")
        self.settings_file = out.with_name(out.name + ".partial.json")
        self.settings = settings
        self._held: BinaryIO | None = None

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._held is not None:  # the lock goes with it
            self._held.close()
            self._held = None

    @property
    def paths(self) -> tuple[Path, Path]:
        return self.partial, self.settings_file

    def load(self, samples: Sequence[Sample], fresh: bool = False) -> list[Outcome]:
        """The outcomes an earlier run of this evaluation left (none with ``fresh``, or when there is none);
        a DataError says what does not match. A last row cut short is dropped from the file. From here on this
        evaluation holds ``OUT.partial`` (a lock): a second one with the same ``OUT`` is refused, not mixed in."""
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self._held = open(self.partial, "ab+")  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(self._held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"{self.partial}: another evaluation is writing it: wait for it to end, or give "
                            "this one another --out") from None
        self._held.seek(0)
        data = self._held.read()
        complete = data[:data.rfind(b"\n") + 1]  # a row cut short by a kill is judged again
        if fresh or not complete:
            self._held.truncate(0)
            return []
        try:
            written = json.loads(self.settings_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise DataError(f"{self.partial}: rows of an earlier evaluation, without its settings ({self.settings_file}): "
                            "run with --fresh to start over") from None
        for key, value in self.settings.items():
            if written.get(key) != value:
                raise DataError(f"{self.partial}: the earlier evaluation ran with {key} {written.get(key)!r}, this one with "
                                f"{value!r}: run with the same settings to resume it, or with --fresh to start over")
        outcomes = []
        for number, text in enumerate(complete.split(b"\n")[:-1], start=1):  # not splitlines: U+2028 may be in a row
            try:
                row = json.loads(text)
            except ValueError as exc:
                raise DataError(f"{where(self.partial, number)}: malformed JSON ({exc}): run with --fresh to start over") from None
            if number > len(samples):
                raise DataError(f"{self.partial}: more rows than the {len(samples)} samples: the samples changed since "
                                "the earlier evaluation; run with --fresh to start over")
            sample = samples[number - 1]
            for field, value in (("task_id", sample.task_id), ("completion", sample.completion)):
                if not isinstance(row, dict) or row.get(field) != value:
                    raise DataError(f"{where(self.partial, number, field)}: not sample {number}'s: the samples changed "
                                    "since the earlier evaluation; run with --fresh to start over")
            outcomes.append(outcome_from_row(row, self.partial, number))
        self._held.truncate(len(complete))
        return outcomes

    def open(self) -> TextIO:
        """The rows file to append to, after the rows :meth:`load` kept (line-buffered: each row is on disk
        once written); the settings file is written first."""
        self.settings_file.write_text(json.dumps(self.settings, sort_keys=True) + "\n", encoding="utf-8")
        return open(self.partial, "a", encoding="utf-8", buffering=1)

    def finish(self) -> None:
        """All rows written: ``OUT.partial`` becomes ``OUT``."""
        os.replace(self.partial, self.out)
        self.settings_file.unlink(missing_ok=True)
