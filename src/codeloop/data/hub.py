"""MBPP, EvalPlus (HumanEval+, MBPP+) and APPS through Hugging Face ``datasets``, as codeloop Tasks.

For users with network access: ``load("mbpp+")`` fetches ``evalplus/mbppplus``. The converters are
pure functions of one record, and ``load(name, data_files=...)`` reads a local JSON/JSONL/Parquet copy
in the hub's format, which is how the tests exercise them offline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from codeloop.data.jsonl import DataError
from codeloop.data.tasks import check_from_body, task_from_dict
from codeloop.types import Task

_CALL = re.compile(r"assert\s+(?:not\s+)?\(?\s*(?:set\(|math\.isclose\(|abs\()?\s*([A-Za-z_]\w*)\s*\(")


def _entry_point_from_asserts(asserts: list[str], code: str = "") -> str:
    for line in asserts:
        match = _CALL.search(line)
        if match and match.group(1) not in ("set", "sorted", "abs", "round", "math", "len", "list", "tuple"):
            return match.group(1)
    match = re.search(r"^def\s+([A-Za-z_]\w*)", code, re.MULTILINE)
    if match:
        return match.group(1)
    raise DataError(f"cannot tell the function under test from: {asserts[:1]}")


def from_mbpp(r: dict[str, Any]) -> Task:
    """google-research-datasets/mbpp: text, code, test_list, test_setup_code, challenge_test_list."""
    tests = list(r["test_list"])
    entry = _entry_point_from_asserts(tests, r.get("code", ""))
    prompt = f'"""\n{r["text"].strip()}\n{tests[0].strip()}\n"""\n'
    body = (r.get("test_setup_code") or "") + "\n" + "\n".join(tests)
    return task_from_dict({"task_id": f"MBPP/{r['task_id']}", "prompt": prompt, "entry_point": entry,
                           "test": check_from_body(body), "canonical_solution": r.get("code"),
                           "description": r["text"]})


def from_mbpp_plus(r: dict[str, Any]) -> Task:
    """evalplus/mbppplus: prompt, code, test_imports, test_list, test (module-level, calls by name)."""
    tests = list(r["test_list"])
    entry = _entry_point_from_asserts(tests, r.get("code", ""))
    prompt = f'"""\n{r["prompt"].strip()}\n{tests[0].strip()}\n"""\n'
    body = "\n".join(r.get("test_imports") or []) + "\n" + r["test"]
    return task_from_dict({"task_id": f"Mbpp/{r['task_id']}", "prompt": prompt, "entry_point": entry,
                           "test": check_from_body(body), "canonical_solution": r.get("code"),
                           "description": r["prompt"]})


def from_humaneval_plus(r: dict[str, Any]) -> Task:
    """evalplus/humanevalplus: already HumanEval format (its test defines ``check``)."""
    return task_from_dict({k: r[k] for k in ("task_id", "prompt", "canonical_solution", "entry_point", "test")})


def _text(value: Any) -> str:
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def from_apps(r: dict[str, Any]) -> Task:
    """codeparrot/apps: question, input_output (JSON: inputs, outputs, optional fn_name), starter_code."""
    io = json.loads(r["input_output"]) if isinstance(r["input_output"], str) else r["input_output"]
    if not io or not io.get("inputs"):
        raise DataError(f"APPS problem {r.get('problem_id')}: no tests in input_output")
    starter = r.get("starter_code") or ""
    prompt = f'"""\n{r["question"].strip()}\n"""\n{starter}'
    task_id = f"APPS/{r['problem_id']}"
    fn_name = io.get("fn_name")
    if fn_name:  # call-based: APPS accepts the output itself or the output wrapped in a list
        test = (f"INPUTS = {json.dumps(io['inputs'])!r}\nOUTPUTS = {json.dumps(io['outputs'])!r}\n"
                "def check(candidate):\n"
                "    import json\n"
                "    for args, out in zip(json.loads(INPUTS), json.loads(OUTPUTS)):\n"
                "        got = candidate(*args)\n"
                "        if isinstance(got, tuple):\n"
                "            got = list(got)\n"
                "        assert got == out or (isinstance(out, list) and len(out) == 1 and got == out[0])\n")
        return task_from_dict({"task_id": task_id, "prompt": prompt, "entry_point": fn_name, "test": test,
                               "description": r["question"]})
    return task_from_dict({"task_id": task_id, "prompt": prompt, "description": r["question"],
                           "inputs": [_text(x) for x in io["inputs"]],
                           "outputs": [_text(x) for x in io["outputs"]]})


SOURCES: dict[str, tuple[str, str, Callable[[dict[str, Any]], Task]]] = {
    "mbpp": ("google-research-datasets/mbpp", "test", from_mbpp),
    "mbpp+": ("evalplus/mbppplus", "test", from_mbpp_plus),
    "humaneval+": ("evalplus/humanevalplus", "test", from_humaneval_plus),
    "apps": ("codeparrot/apps", "test", from_apps),
}


def load(name: str, data_files: str | None = None, split: str | None = None) -> dict[str, Task]:
    """Load a hub task set by name, or the same format from local ``data_files``."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"task set {name!r} needs the optional 'datasets' package: pip install 'codeloop[hf]'") from None
    hub_name, default_split, convert = SOURCES[name]
    split = split or default_split
    if data_files:
        kind = "parquet" if data_files.endswith(".parquet") else "json"
        rows = datasets.load_dataset(kind, data_files=data_files, split="train")
    else:
        rows = datasets.load_dataset(hub_name, split=split)
    tasks: dict[str, Task] = {}
    for i, record in enumerate(rows):
        try:
            task = convert(record)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{data_files or hub_name}: record {i + 1}: {type(exc).__name__}: {exc}") from None
        tasks[task.task_id] = task
    return tasks
