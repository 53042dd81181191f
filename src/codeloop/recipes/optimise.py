"""Self-Refine for code optimisation: make correct but slow programs faster, attempt by attempt.

An attempt counts as optimised when it passes the program's tests and is at least 5% faster than the
slow version by a one-sided paired t-test at p < 0.05 over the log ratios of repeated timing rounds.
Timings are wall time measured by the trusted sandbox worker: the program's load (its module body)
plus one call, in a fresh process each time (a second call could be answered from a cache). Each
round times old and new back to back on one pinned CPU (alternating which goes first), so both share
the machine's speed of that moment: on a shared VM it switches between regimes 1.5x apart for seconds
at a time, which fooled the unpaired design this replaced (two processes at once on two CPUs, Welch's
test: 4 of 96 comparisons of a program with itself called faster, by up to 1.47x;
``benchmarks/optimise_null.py``). A program stops once optimised. Reports, per attempt: % optimised
and mean speed-up (over optimised programs).
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from codeloop.data import slow, write_jsonl
from codeloop.data.prompts import STOP, optimise_prompt, outcome_feedback
from codeloop.eval import job_for
from codeloop.eval.plots import plot_metrics
from codeloop.eval.stats import SpeedTest, paired_faster_test
from codeloop.models import load_code_writer
from codeloop.recipes.common import check_backends, check_ranges, usage_reported
from codeloop.sandbox import Job, Sandbox
from codeloop.types import Outcome, Sample, SamplingParams


@dataclass
class OptimiseConfig:
    model: str = "seed-python"
    """Model asked for faster programs."""
    backend: str = "hf"
    """hf, vllm, openai or openai-chat (see :func:`codeloop.models.load_code_writer`)."""
    limit: int = 0
    """First N programs (0 = all 32)."""
    attempts: int = 4
    """y0 plus attempts-1 refinements."""
    rounds: int = 8
    """Timing rounds per comparison (each round: one fresh process per program, back to back, one CPU)."""
    min_gain: float = 0.05
    """Required speed-up margin (0.05: at least 5% faster)."""
    alpha: float = 0.05
    """Significance level of the one-sided test."""
    temperature: float = 0.8
    """Sampling temperature."""
    max_new_tokens: int = 256
    """Longest body."""
    seed: int = 0
    """Sampling seed (attempt t uses seed + t)."""
    timeout_s: float = 10.0
    """Sandbox limit per process (tests or timing)."""
    out_dir: str = "runs/optimise"
    """Where traces.jsonl, metrics.jsonl and metrics.png go."""

    def __post_init__(self) -> None:
        check_ranges(self, limit=">= 0", attempts=">= 1", rounds=">= 2", min_gain="[0, 1)", alpha="(0, 1)",
                     temperature=">= 0", max_new_tokens=">= 1", timeout_s="> 0")
        check_backends(self, "backend")


def timing_job(program: str, timing_input: tuple) -> Job:
    """One call in a fresh process. Only a first call is free of what earlier calls left behind: timing
    later ones would reward a program that caches its answers (measured: a memoising wrapper around a
    slow program timed "300-2,400x faster" by the minimum of three calls)."""
    return Job(program=program, entry_point="solve", inputs=(list(timing_input),), timing=True)


def timed_seconds(outcome: Outcome) -> float:
    """The program's load (module body: a table precomputed there counts) plus its first call."""
    return outcome.load_seconds + outcome.call_seconds[0]


def timing_sandbox(timeout_s: float, hide: tuple[str, ...] = ()) -> Sandbox:
    """One worker pinned to the last CPU this process may use: every timed process runs there, one at a time."""
    return Sandbox(workers=1, timeout_s=timeout_s, cpus={max(os.sched_getaffinity(0))}, hide=hide)


def time_against(sandbox: Sandbox, old: str, new: str, timing_input: tuple, cfg: OptimiseConfig) -> SpeedTest | str:
    """Paired timing of two programs (give it :func:`timing_sandbox`); a string says why timing failed."""
    old_times: list[float] = []
    new_times: list[float] = []
    for r in range(cfg.rounds):
        order = [(old_times, old), (new_times, new)] if r % 2 == 0 else [(new_times, new), (old_times, old)]
        for sink, program in order:  # one after the other: the two of a round share the machine's speed
            outcome = sandbox.run_one(timing_job(program, timing_input))
            if not outcome.passed:
                return outcome_feedback(outcome)
            sink.append(timed_seconds(outcome))
    return paired_faster_test(old_times, new_times, ratio=1.0 - cfg.min_gain)


def run(cfg: OptimiseConfig) -> list[dict]:
    programs = slow.load(cfg.limit)
    generator = load_code_writer(cfg.backend, cfg.model)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    traces: dict[str, list[dict]] = {p.task.task_id: [] for p in programs}
    best: dict[str, float] = {}  # task_id -> speed-up of its optimised attempt
    metrics: list[dict] = []

    hide = (cfg.out_dir,)  # earlier attempts' programs and feedback
    with usage_reported(generator), Sandbox(timeout_s=cfg.timeout_s, hide=hide) as sandbox, \
            timing_sandbox(cfg.timeout_s, hide) as timer:
        for attempt in range(cfg.attempts):
            todo = [p for p in programs if p.task.task_id not in best]
            if not todo:
                break
            prompts = [optimise_prompt(p.task.prompt, p.program,
                                       [(t["completion"], t["feedback"]) for t in traces[p.task.task_id][-1:]])
                       for p in todo]
            params = SamplingParams(temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, stop=STOP,
                                    seed=cfg.seed + attempt)
            completions = [row[0].text for row in generator.generate(prompts, params)]
            correctness = list(sandbox.run(job_for(p.task, Sample(p.task.task_id, c)) for p, c in zip(todo, completions)))
            for p, completion, outcome in zip(todo, completions, correctness):
                step = {"attempt": attempt, "completion": completion, "status": outcome.status.value}
                if not outcome.passed:
                    step["feedback"] = outcome_feedback(outcome)
                else:
                    timed = time_against(timer, p.program, p.task.prompt + completion, p.timing_input, cfg)
                    if isinstance(timed, str):
                        step["feedback"] = timed
                    else:
                        step.update(speedup=timed.speedup, p_value=timed.p_value)
                        if timed.significant(cfg.alpha) and timed.speedup > 1:
                            best[p.task.task_id] = timed.speedup
                        else:
                            step["feedback"] = (f"correct but not significantly faster: speed-up "
                                                f"{timed.speedup:.2f}x, p = {timed.p_value:.3f}")
                traces[p.task.task_id].append(step)
            speedups = list(best.values())
            metrics.append({"attempt": attempt, "optimised_pct": 100 * len(best) / len(programs),
                            "optimised": len(best), "programs": len(programs), "attempted": len(todo),
                            "correct_attempted": sum(o.passed for o in correctness),
                            "mean_speedup_optimised": sum(speedups) / len(speedups) if speedups else None,
                            "median_speedup_optimised": statistics.median(speedups) if speedups else None})
            write_jsonl(out / "metrics.jsonl", metrics)
            write_jsonl(out / "traces.jsonl", ({"task_id": k, "attempts": v} for k, v in traces.items()))
    plot_metrics(metrics, "attempt", ["optimised_pct"], out / "metrics.png", title=f"Code optimisation: {cfg.model}")
    return metrics
