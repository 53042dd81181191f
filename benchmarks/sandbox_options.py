"""One of the sandbox's on/off options, on against off, in one run: what it costs or gains.

    .venv/bin/python benchmarks/sandbox_options.py --option pin|cgroups [--rounds 8] [--repeat 10] [--workers 2]

- ``cgroups``: each worker's zygote and samples in a cgroup bounding their memory and tasks together
  (where the machine allows one: the line printed says what was made), against per-process rlimits only.
- ``pin``: each worker, with its zygote and samples, on a CPU of its own, against workers the scheduler
  places freely.

Samples: HumanEval's canonical solutions x --repeat (1,640), as in ``sandbox_throughput.py``. Each round
runs ``Sandbox(OPTION=True)`` and the peer, ``Sandbox(OPTION=False)``, everything else at its default,
in alternating order, worker start-up included. Prints samples/s for both per round, their medians, and
the ratio on/off per round with its geometric mean.
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
    parser.add_argument("--option", choices=("pin", "cgroups"), required=True, help="the Sandbox keyword to turn on and off")
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
            with Sandbox(workers=args.workers, timeout_s=3.0, **{args.option: on}) as sandbox:  # type: ignore[arg-type]
                setting = f"cgroup {sandbox.cgroup}" if args.option == "cgroups" else f"pinned {sandbox.pin}"
                outcomes = evaluate(tasks, samples, sandbox)
            rate = len(samples) / (time.perf_counter() - start)
            if not all(o.passed for o in outcomes):
                raise SystemExit(f"round {r}: a canonical solution did not pass ({setting})")
            rates[on].append(rate)
            print(f"round {r}  {args.option}={on} ({setting}): {rate:.0f} samples/s", flush=True)
    ratios = [a / b for a, b in zip(rates[True], rates[False])]
    print(f"median {args.option}=True {statistics.median(rates[True]):.0f} samples/s, "
          f"{args.option}=False {statistics.median(rates[False]):.0f} samples/s")
    print(f"ratio on/off per round: {', '.join(f'{x:.3f}' for x in ratios)}; "
          f"geometric mean {statistics.geometric_mean(ratios):.3f}")


if __name__ == "__main__":
    main()
