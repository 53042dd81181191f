"""Rebuild src/codeloop/data/slow_python.jsonl from scripts/slow_programs_source.py.

    .venv/bin/python scripts/build_slow_programs.py

The programs are hand-written references (not generated code), run here to compute the expected
outputs; tests/test_optimise.py re-checks every one of them in the sandbox.
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from slow_programs_source import PROGRAMS  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "src" / "codeloop" / "data" / "slow_python.jsonl"

with open(OUT, "w") as f:
    for pid, description, program, inputs, timing in PROGRAMS:
        ns: dict = {}
        exec(program, ns)
        outputs = [ns["solve"](*args) for args in inputs]
        start = time.perf_counter()
        ns["solve"](*timing)
        seconds = time.perf_counter() - start
        prompt = program.splitlines()[0] + f'\n    """{description}"""\n'
        f.write(json.dumps({"task_id": f"slow-python/{pid}", "prompt": prompt, "entry_point": "solve",
                            "description": description, "slow_program": program, "inputs": inputs,
                            "outputs": outputs, "timing_input": timing}) + "\n")
        print(f"{pid:20s} {seconds * 1000:8.1f} ms on the timing input")
print(f"{len(PROGRAMS)} programs -> {OUT}")
