"""What the workers' cgroups cost: the sandbox with them against the same sandbox without, in one run.

    .venv/bin/python benchmarks/sandbox_cgroup_cost.py [--rounds 8] [--repeat 10] [--workers 2]

Samples: HumanEval's canonical solutions x --repeat (1,640), as in ``sandbox_throughput.py``. Each round
runs ``Sandbox(cgroups=True)`` (each worker's zygote and samples in a cgroup bounding their memory and
tasks together, where the machine allows one: the line printed says what was made) and the peer,
``Sandbox(cgroups=False)`` (per-process rlimits only), in alternating order, worker start-up included.
Prints samples/s for both per round, their medians, and the ratio per round with its geometric mean.
"""

from __future__ import annotations

import argparse
import statistics
import time

from codeloop.data import load_tasks
from codeloop.eval import evaluate
from codeloop.sandbox import Sandbox
from codeloop.types import Sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds")
    parser.add_argument("--repeat", type=int, default=10, help="copies of each canonical solution")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    tasks = load_tasks("humaneval")
    samples = [Sample(t.task_id, t.canonical_solution or "") for t in tasks.values() for _ in range(args.repeat)]
    rates: dict[bool, list[float]] = {True: [], False: []}
    for r in range(args.rounds):
        for with_cgroups in ((True, False) if r % 2 == 0 else (False, True)):
            start = time.perf_counter()
            with Sandbox(workers=args.workers, timeout_s=3.0, cgroups=with_cgroups) as sandbox:
                made = sandbox.cgroup
                outcomes = evaluate(tasks, samples, sandbox)
            rate = len(samples) / (time.perf_counter() - start)
            if not all(o.passed for o in outcomes):
                raise SystemExit(f"round {r}: a canonical solution did not pass ({made})")
            rates[with_cgroups].append(rate)
            print(f"round {r}  {'with' if with_cgroups else 'without'} cgroups ({made}): {rate:.0f} samples/s", flush=True)
    ratios = [a / b for a, b in zip(rates[True], rates[False])]
    print(f"median with cgroups {statistics.median(rates[True]):.0f} samples/s, "
          f"without {statistics.median(rates[False]):.0f} samples/s")
    print(f"ratio with/without per round: {', '.join(f'{x:.3f}' for x in ratios)}; "
          f"geometric mean {statistics.geometric_mean(ratios):.3f}")


if __name__ == "__main__":
    main()
