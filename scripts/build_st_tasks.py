"""Rebuild src/codeloop/data/st_plc.jsonl (the ``st-plc`` task set) from scripts/st_tasks_source.py.

    .venv/bin/python scripts/build_st_tasks.py

The expected outputs come from each task's Python reference, not from the ST interpreter;
tests/test_st_tasks.py runs every ST reference solution against them in the sandbox.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from st_tasks_source import TASKS  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "src" / "codeloop" / "data" / "st_plc.jsonl"

with open(OUT, "w") as f:
    for task in TASKS:
        reference = task.get("cycles") or task["ref"]
        outputs = [reference(*args) for args in task["inputs"]]
        f.write(json.dumps({
            "task_id": f"st-plc/{task['id']}", "language": "st", "prompt": f"(* {task['intent']} *)\n",
            "description": task["intent"], "entry_point": task["entry"], "canonical_solution": task["st"] + "\n",
            "inputs": task["inputs"], "outputs": outputs}) + "\n")
print(f"wrote {len(TASKS)} tasks to {OUT}")
