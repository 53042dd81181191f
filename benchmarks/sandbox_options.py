"""One of the sandbox's on/off options, on against off, in one run: what it costs or gains.

    .venv/bin/python benchmarks/sandbox_options.py --option pin|cgroups|sched-batch [--rounds 8] [--repeat 10] [--workers 2]

- ``cgroups``: each worker's zygote and samples in a cgroup bounding their memory and tasks together
  (where the machine allows one: the line printed says what was made), against per-process rlimits only.
- ``pin``: each worker, with its zygote and samples, on a CPU of its own, against workers the scheduler
  places freely.
- ``sched-batch`` (an experiment, not a Sandbox option): each worker and its zygote (and so its samples)
  moved to the SCHED_BATCH policy once started, whose woken processes never preempt the one running:
  a sample then answers the calls sent ahead back to back instead of handing the CPU to its worker at
  each answer (the workers' voluntary context switches, printed per round, fall). Against the default policy.

Samples: HumanEval's canonical solutions x --repeat (1,640), as in ``sandbox_throughput.py``. Each round
runs ``Sandbox(OPTION=True)`` and the peer, ``Sandbox(OPTION=False)``, everything else at its default,
in alternating order, worker start-up included. Prints samples/s for both per round, their medians, and
the ratio on/off per round with its geometric mean.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from codeloop.data import load_tasks
from codeloop.eval import evaluate
from codeloop.sandbox import Sandbox
from codeloop.types import Sample


def _sched_batch(sandbox: Sandbox) -> str:
    """Start ``sandbox``'s workers and move each, with its zygote, to SCHED_BATCH (samples inherit it)."""
    sandbox.level  # noqa: B018 - starts the workers
    for worker in sandbox._workers:
        pid = worker.proc.pid
        for target in [pid, *map(int, open(f"/proc/{pid}/task/{pid}/children").read().split())]:
            os.sched_setscheduler(target, os.SCHED_BATCH, os.sched_param(0))
    return "workers, zygotes and samples SCHED_BATCH"


def _switches(sandbox: Sandbox) -> int:
    """The voluntary context switches of ``sandbox``'s (started) workers so far: each time one waited."""
    sandbox.level  # noqa: B018 - starts the workers
    total = 0
    for worker in sandbox._workers:
        for line in open(f"/proc/{worker.proc.pid}/status"):
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--option", choices=("pin", "cgroups", "sched-batch"), required=True, help="what to turn on and off: a Sandbox keyword (pin, cgroups) or the sched-batch experiment")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds")
    parser.add_argument("--repeat", type=int, default=10, help="copies of each canonical solution")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    tasks = load_tasks("humaneval")
    samples = [Sample(t.task_id, t.canonical_solution or "") for t in tasks.values() for _ in range(args.repeat)]
    rates: dict[bool, list[float]] = {True: [], False: []}
    for r in range(args.rounds):
        for on in ((True, False) if r % 2 == 0 else (False, True)):
            start = time.perf_counter()
            keywords = {} if args.option == "sched-batch" else {args.option: on}
            with Sandbox(workers=args.workers, timeout_s=3.0, **keywords) as sandbox:  # type: ignore[arg-type]
                if args.option == "sched-batch":
                    setting = _sched_batch(sandbox) if on else "the default policy"
                else:
                    setting = f"cgroup {sandbox.cgroup}" if args.option == "cgroups" else f"pinned {sandbox.pin}"
                switches = -_switches(sandbox)
                outcomes = evaluate(tasks, samples, sandbox)
                switches += _switches(sandbox)
            rate = len(samples) / (time.perf_counter() - start)
            if not all(o.passed for o in outcomes):
                raise SystemExit(f"round {r}: a canonical solution did not pass ({setting})")
            rates[on].append(rate)
            print(f"round {r}  {args.option}={on} ({setting}): {rate:.0f} samples/s; the workers' voluntary "
                  f"context switches per sample {switches / len(samples):.1f}", flush=True)
    ratios = [a / b for a, b in zip(rates[True], rates[False])]
    print(f"median {args.option}=True {statistics.median(rates[True]):.0f} samples/s, "
          f"{args.option}=False {statistics.median(rates[False]):.0f} samples/s")
    print(f"ratio on/off per round: {', '.join(f'{x:.3f}' for x in ratios)}; "
          f"geometric mean {statistics.geometric_mean(ratios):.3f}")


if __name__ == "__main__":
    main()
