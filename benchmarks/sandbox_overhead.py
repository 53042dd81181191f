"""Where a sandboxed sample's time goes, against the bare fork of the same interpreter, in one run.

    .venv/bin/python benchmarks/sandbox_overhead.py [--samples 4000] [--workers 2] [--jobs humaneval]

By default both sides run a trivial program (``def f(x): return x + 1``) with one test call, so what is
measured is overhead, not the tests' work. ``--jobs humaneval`` runs instead the throughput benchmark's
samples (HumanEval's canonical solutions, cycled up to --samples; 1,640 = x 10), and prints also the
CPU the same programs and tests take run in-process, with no fork at all: the tests' own work.

- codeloop: ``Sandbox(workers=N)`` with all its containment on; CPU per sample of each process kind,
  read from /proc (the evaluator; the workers, which run the trusted judge; the zygotes, which fork
  and reap; the sample processes, charged to the zygotes as reaped children), and page faults per
  sample in the zygotes and the samples (each copy-on-write fault costs microseconds in a VM), and each
  zygote's resident anonymous memory before and after the run (what each fork copies: it must not grow).
- peer ("bare fork"): a fresh interpreter holding the modules codeloop's zygote imports for these programs
  (``zygote.modules_named``) and the distinct programs, compiled, and nothing else, forks through libc, the child
  execs the program (compiled beforehand), runs its test and exits, the parent reaps it: no
  namespaces, limits, pipes, judge or temp dir. Its CPU per sample is the floor of any fork-per-sample design in this
  interpreter.

Prints both and the ratio. The README's throughput section quotes this script.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from codeloop.data import load_tasks
from codeloop.eval.evaluate import job_for
from codeloop.sandbox import Job, Sandbox
from codeloop.sandbox.zygote import modules_named
from codeloop.types import Sample

PROGRAM = "def f(x):\n    return x + 1\n"
JOB = Job(program=PROGRAM, entry_point="f", test="def check(candidate):\n    assert candidate(1) == 2\n")
_TICK = os.sysconf("SC_CLK_TCK")


def _proc(pid: int) -> tuple[float, float, int, int]:
    """(own CPU s, reaped children's CPU s, own minor faults, reaped children's minor faults)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return ((int(fields[11]) + int(fields[12])) / _TICK, (int(fields[13]) + int(fields[14])) / _TICK,
            int(fields[7]), int(fields[8]))


def _anonymous_kib(pid: int) -> int:
    """Resident anonymous memory of ``pid``, KiB: what each fork of it copies (page tables) and each exit tears
    down. From its page tables (smaps_rollup): /proc/PID/status's RssAnon is, on some kernels, an estimate."""
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Anonymous:"):
            return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    return [int(x) for x in open(f"/proc/{pid}/task/{pid}/children").read().split()]


def workload(kind: str, n: int) -> tuple[list[Job], list[str]]:
    """``n`` sandbox jobs and, for the bare fork, the same programs as one source each (tests appended)."""
    if kind == "trivial":
        return [JOB] * n, [PROGRAM + "f(1)\n"] * n
    jobs, sources = [], []
    tasks = list(load_tasks("humaneval").values())
    for i in range(n):
        task = tasks[i % len(tasks)]
        sample = Sample(task.task_id, task.canonical_solution or "")
        jobs.append(job_for(task, sample))
        sources.append(task.prompt + sample.completion + "\n" + task.test + f"\ncheck({task.entry_point})\n")
    return jobs, sources


def measure_sandbox(jobs: list[Job], workers: int) -> dict[str, float]:
    n = len(jobs)
    with Sandbox(workers=workers, timeout_s=3.0) as sandbox:
        level = sandbox.level
        worker_pids = [w.proc.pid for w in sandbox._workers]
        zygote_pids = [_children(p)[0] for p in worker_pids]
        before = [_proc(p) for p in worker_pids + zygote_pids]
        held_before = sum(_anonymous_kib(p) for p in zygote_pids) / len(zygote_pids)
        own0, start = os.times(), time.perf_counter()
        outcomes = list(sandbox.run(jobs))
        wall, own1 = time.perf_counter() - start, os.times()
        after = [_proc(p) for p in worker_pids + zygote_pids]
        held_after = sum(_anonymous_kib(p) for p in zygote_pids) / len(zygote_pids)
    if not all(o.passed for o in outcomes):
        raise SystemExit("a job that must pass did not: the sandbox is broken, nothing to measure")
    d = [[a - b for a, b in zip(x, y)] for x, y in zip(after, before)]
    w, z = d[:workers], d[workers:]
    ms = lambda seconds: 1e3 * seconds / n  # noqa: E731
    return {"level": level, "per_s": n / wall, "wall_cpu_ms": ms(wall * workers),
            "evaluator_ms": ms(own1.user - own0.user + own1.system - own0.system),
            "worker_ms": ms(sum(x[0] for x in w)), "zygote_ms": ms(sum(x[0] for x in z)),
            "sample_ms": ms(sum(x[1] for x in z)), "zygote_faults": sum(x[2] for x in z) / n,
            "sample_faults": sum(x[3] for x in z) / n, "zygote_mb_before": held_before / 1024,
            "zygote_mb_after": held_after / 1024}


def measure_in_process(sources: list[str]) -> float:
    """CPU ms per program to run it (compiled beforehand) with its test in this process: the tests' own work."""
    codes = [compile(source, "<sample>", "exec") for source in sources]
    start = time.process_time()
    for code in codes:
        exec(code, {})
    return 1e3 * (time.process_time() - start) / len(codes)


BARE_FORK = """
import ctypes, gc, importlib, json, os, resource, sys, time
given = json.load(sys.stdin)
compiled = [compile(source, "<sample>", "exec") for source in given["sources"]]  # each distinct program once
codes = [compiled[i] for i in given["order"]]
for name in given["modules"]:
    importlib.import_module(name)
del given
fork = ctypes.PyDLL(None, use_errno=True).fork  # no at-fork hooks, as the zygote forks
gc.collect()
gc.freeze()
before = resource.getrusage(resource.RUSAGE_CHILDREN)
start, own0 = time.perf_counter(), os.times()
for code in codes:
    pid = fork()
    if pid == 0:
        try:
            exec(code, {})
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
wall, own1 = time.perf_counter() - start, os.times()
after = resource.getrusage(resource.RUSAGE_CHILDREN)
n = len(codes)
print(json.dumps({"per_s": n / wall, "parent_ms": 1e3 * (own1.user - own0.user + own1.system - own0.system) / n,
                  "child_ms": 1e3 * (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / n,
                  "child_faults": (after.ru_minflt - before.ru_minflt) / n}))
"""
"""The bare fork's process: a fresh interpreter (``-I``) that holds the distinct programs, compiled, and
the modules they need, and nothing of this script: neither its jobs nor codeloop, whose pages would make
each of its forks dearer (until 2026-11-24 it ran in this process, which held the sandbox's jobs: on
1,640 HumanEval samples 0.13 ms more per sample, ~7%; on 16,400, 5.3 ms against ~2)."""


def measure_bare_fork(sources: list[str]) -> dict[str, float]:
    distinct = sorted(set(sources))
    index = {source: i for i, source in enumerate(distinct)}
    modules = sorted({name for source in distinct for name in modules_named(compile(source, "<sample>", "exec"))})
    given = json.dumps({"sources": distinct, "order": [index[source] for source in sources], "modules": modules})
    done = subprocess.run([sys.executable, "-I", "-c", BARE_FORK], input=given, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jobs", choices=("trivial", "humaneval"), default="trivial",
                        help="a one-call program (overhead only), or HumanEval's canonical solutions")
    args = parser.parse_args()
    if args.samples < 1 or args.workers < 1:
        parser.error("--samples and --workers must be at least 1")
    jobs, sources = workload(args.jobs, args.samples)
    ours = measure_sandbox(jobs, args.workers)
    bare = measure_bare_fork(sources)
    total = ours["evaluator_ms"] + ours["worker_ms"] + ours["zygote_ms"] + ours["sample_ms"]
    floor = bare["parent_ms"] + bare["child_ms"]
    print(f"codeloop (isolation {ours['level']}, {args.workers} workers): {ours['per_s']:.0f} samples/s; CPU per sample "
          f"{total:.2f} ms = evaluator {ours['evaluator_ms']:.2f} + workers (judge) {ours['worker_ms']:.2f} + "
          f"zygotes {ours['zygote_ms']:.2f} + samples {ours['sample_ms']:.2f} (cores x wall: {ours['wall_cpu_ms']:.2f}); "
          f"page faults per sample: zygote {ours['zygote_faults']:.0f}, sample {ours['sample_faults']:.0f}; "
          f"each zygote's resident anonymous memory {ours['zygote_mb_before']:.1f} -> {ours['zygote_mb_after']:.1f} MB")
    print(f"bare fork (1 process): {bare['per_s']:.0f} samples/s; CPU per sample {floor:.2f} ms = parent "
          f"{bare['parent_ms']:.2f} + child {bare['child_ms']:.2f}; page faults per child {bare['child_faults']:.0f}")
    print(f"ratio of CPU per sample, codeloop / bare fork: {total / floor:.2f}x")
    if args.jobs != "trivial":
        print(f"the same programs and tests in-process, no fork: {measure_in_process(sources):.2f} ms of CPU per sample")


if __name__ == "__main__":
    main()
