"""False-positive rate of the optimisation loop's "significantly faster" verdict: each slow program
timed against itself.

    .venv/bin/python benchmarks/optimise_null.py [--repeats 3] [--rounds 8] [--alpha 0.05] [--unpaired]

`codeloop optimise` calls an attempt optimised when it passes the tests and a one-sided paired t-test
over timing rounds says it is at least 5% faster (p < alpha). Here the "attempt" is the slow
program itself, so every such verdict is a false positive; with a perfect timer the rate is at most
alpha (it is lower, since the null hypothesis sits at 5% faster, not at equal speed). Timing noise on
a shared VM (frequency changes, the other worker's job, order effects) can push it higher. Prints, per
repeat, the programs called faster and the rate over all comparisons, with the distribution of the
measured speed-ups (which should centre on 1.00x).

``--unpaired`` measures the design the recipe used before, for comparison: each round's two processes at
once on two workers (unpinned), Welch's test on the two samples of timings.
"""

from __future__ import annotations

import argparse
import statistics
import time

from codeloop.data import slow
from codeloop.eval.stats import SpeedTest, faster_test
from codeloop.recipes.optimise import OptimiseConfig, timed_seconds, timing_job, time_against, timing_sandbox
from codeloop.sandbox import Sandbox


def time_unpaired(sandbox: Sandbox, old: str, new: str, timing_input: tuple, cfg: OptimiseConfig) -> SpeedTest | str:
    """The earlier design: per round, old and new at once on two workers (order alternating); Welch's test."""
    old_times: list[float] = []
    new_times: list[float] = []
    for r in range(cfg.rounds):
        order = [(old_times, old), (new_times, new)] if r % 2 == 0 else [(new_times, new), (old_times, old)]
        for (sink, _), outcome in zip(order, sandbox.run(timing_job(p, timing_input) for _, p in order)):
            if not outcome.passed:
                return f"{outcome.status.value}: {outcome.reason}"
            sink.append(timed_seconds(outcome))
    return faster_test(old_times, new_times, ratio=1.0 - cfg.min_gain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="comparisons of each program with itself")
    parser.add_argument("--rounds", type=int, default=OptimiseConfig.rounds, help="timing rounds per comparison")
    parser.add_argument("--alpha", type=float, default=OptimiseConfig.alpha, help="significance level")
    parser.add_argument("--limit", type=int, default=0, help="first N programs (0 = all 32)")
    parser.add_argument("--unpaired", action="store_true", help="the earlier design (2 workers at once, Welch)")
    args = parser.parse_args()
    cfg = OptimiseConfig(rounds=args.rounds, alpha=args.alpha)
    programs = slow.load(args.limit)
    speedups: list[float] = []
    false: list[str] = []
    start = time.perf_counter()
    compare = time_unpaired if args.unpaired else time_against
    with (Sandbox(workers=2, timeout_s=cfg.timeout_s) if args.unpaired else timing_sandbox(cfg.timeout_s)) as sandbox:
        for r in range(1, args.repeats + 1):
            for p in programs:
                timed = compare(sandbox, p.program, p.program, p.timing_input, cfg)
                if isinstance(timed, str):
                    raise SystemExit(f"{p.task.task_id}: timing failed: {timed}")
                speedups.append(timed.speedup)
                if timed.significant(cfg.alpha) and timed.speedup > 1:
                    false.append(p.task.task_id)
                    print(f"repeat {r}: FALSE POSITIVE {p.task.task_id}: speed-up {timed.speedup:.3f}x, "
                          f"p = {timed.p_value:.4f}", flush=True)
            print(f"repeat {r}: {len(speedups)} comparisons so far, {len(false)} called faster "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    q = statistics.quantiles(speedups, n=20)
    print(f"\n{'unpaired, Welch' if args.unpaired else 'paired, one pinned CPU'}: "
          f"self-comparisons: {len(speedups)} (rounds {cfg.rounds}, alpha {cfg.alpha}, "
          f"min gain {cfg.min_gain:.0%})")
    print(f"false positives: {len(false)}/{len(speedups)} = {len(false) / len(speedups):.1%}")
    print(f"measured speed-up of a program over itself: median {statistics.median(speedups):.3f}x, "
          f"5th-95th percentile {q[0]:.3f}x-{q[-1]:.3f}x, max {max(speedups):.3f}x")


if __name__ == "__main__":
    main()
