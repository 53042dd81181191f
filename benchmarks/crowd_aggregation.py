"""Line-label aggregation: cRLHF's Bayesian rules against crowd-kit's aggregators, on one simulated crowd.

    .venv/bin/pip install -e '.[crowd]'   # crowd-kit, the peer
    .venv/bin/python benchmarks/crowd_aggregation.py [--programs 300] [--per-program 3] [--seeds 5]

A simulated crowd (``codeloop.feedback.human.SimulatedCrowd``; the default mixes experts, novices, a
spammer at 0.5 and one annotator who is wrong more often than right) labels the lines of programs
whose true line labels are drawn at random (``--p-correct`` of lines correct; 3-10 lines a program).
The first ``--honeypots`` programs (the paper: 19) have known answers; every annotator labels them.
After that each program is labelled by ``--per-program`` annotators drawn at random (0: all of them).
Every method then names each non-honeypot line correct or wrong; the script prints, averaged over
``--seeds`` crowds, the share of lines named right and the error in program scores s = correct/lines,
and the peer's ratio. Methods:

- ``majority``: the plain vote (ties: wrong, as eq. 7 with equal reliabilities does at τ 0.5);
- ``bayes, true p``: eq. 7 with the annotators' real reliabilities (and the paper's prior 1/2, or the
  true share of correct lines): what perfect estimates would give;
- ``bayes, online λ``: Algorithm 1, eq. 8 updates after every program (honeypots first), λ as named;
- ``bayes, one-shot``: eq. 7 with reliabilities fitted once on the honeypots (L1 logistic, ISTA);
- ``bayes, honeypot agreement rates``: eq. 7's own estimate, p_i = each annotator's (smoothed) share of
  honeypot lines labelled right, and the prior likewise (ours);
- ``bayes, EM anchored on honeypots``: that, refined by EM over every line (ours);
- "prior 1/2" is the paper's; "prior fitted" estimates P(line correct) from the honeypots' answers;
- crowd-kit's ``MajorityVote``, ``DawidSkene``, ``OneCoinDawidSkene`` and ``GLAD`` (unsupervised: they see
  every label, honeypots' included, but no answers).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from codeloop.feedback.human import (CORRECT, WRONG, Reliabilities, SimulatedCrowd, aggregate, crowd, em_reliabilities,
                                     fit_reliabilities, score_program)

DEFAULT_CROWD = "0.95,0.9,0.85,0.8,0.75,0.7,0.65,0.6,0.5,0.3"

Program = tuple[list[int], dict[str, list[int]]]  # true labels, annotator -> labels
Method = Callable[[list[Program], list[Program]], list[list[bool]]]


def simulate(reliability: dict[str, float], programs: int, honeypots: int, per_program: int, p_correct: float,
             seed: int) -> tuple[list[Program], list[Program]]:
    rng = random.Random(seed)
    people = SimulatedCrowd(reliability, seed=seed + 1000)  # its own random stream, independent of the truth's
    gold: list[Program] = []
    rest: list[Program] = []
    for j in range(honeypots + programs):
        truth = [CORRECT if rng.random() < p_correct else WRONG for _ in range(rng.randint(3, 10))]
        labels = people.annotate(truth, 0 if j < honeypots else per_program)
        (gold if j < honeypots else rest).append((truth, labels))
    return gold, rest


def bayes_fixed(p: dict[str, float], prior: float) -> Method:
    return lambda gold, rest: [aggregate(labels, p, prior=prior).correct for _, labels in rest]


def bayes_online(step: float, learn_prior: bool) -> Method:
    def run(gold: list[Program], rest: list[Program]) -> list[list[bool]]:
        rel = Reliabilities(nu=0.7, step=step, learn_prior=learn_prior)
        for truth, labels in gold:
            score_program(labels, rel, gold=truth)
        return [score_program(labels, rel).correct for _, labels in rest]
    return run


def one_shot(learn_prior: bool) -> Method:
    def run(gold: list[Program], rest: list[Program]) -> list[list[bool]]:
        rows = [({a: v[j] for a, v in labels.items()}, t) for truth, labels in gold for j, t in enumerate(truth)]
        fit = fit_reliabilities(rows, gamma=0.01, learn_prior=learn_prior)
        p = {a: fit.reliability.get(a, 0.5) for _, labels in rest for a in labels}
        return [aggregate(labels, p, prior=fit.prior).correct for _, labels in rest]
    return run


def em(rounds: int) -> Method:
    def run(gold: list[Program], rest: list[Program]) -> list[list[bool]]:
        rows = [({a: v[j] for a, v in labels.items()}, t) for truth, labels in gold for j, t in enumerate(truth)]
        lines = [{a: v[j] for a, v in labels.items()} for truth, labels in rest for j in range(len(truth))]
        est = em_reliabilities(rows, lines, rounds=rounds)
        return [aggregate(labels, est.reliability, prior=est.prior).correct for _, labels in rest]
    return run


def majority(gold: list[Program], rest: list[Program]) -> list[list[bool]]:
    return [[sum(v[j] for v in labels.values()) > 0 for j in range(len(truth))] for truth, labels in rest]


def crowd_kit(name: str) -> Method:
    def run(gold: list[Program], rest: list[Program]) -> list[list[bool]]:
        import pandas as pd  # type: ignore[import-untyped]
        from crowdkit import aggregation

        rows = [(f"{k}:{j}", a, v[j]) for k, (truth, labels) in enumerate(gold + rest) for a, v in labels.items()
                for j in range(len(truth))]
        df = pd.DataFrame(rows, columns=["task", "worker", "label"])
        method = {"MajorityVote": lambda: aggregation.MajorityVote(), "DawidSkene": lambda: aggregation.DawidSkene(n_iter=100),
                  "OneCoinDawidSkene": lambda: aggregation.OneCoinDawidSkene(n_iter=100),
                  "GLAD": lambda: aggregation.GLAD(n_iter=100, silent=True)}[name]()
        answer = method.fit_predict(df)
        return [[answer[f"{k}:{j}"] == CORRECT for j in range(len(truth))]
                for k, (truth, _) in enumerate(rest, start=len(gold))]
    return run


def scores(rest: list[Program], verdicts: list[list[bool]]) -> tuple[float, float]:
    """(share of lines named right, mean |s - true s| over programs)."""
    right = sum((v == (t == CORRECT)) for (truth, _), vs in zip(rest, verdicts) for t, v in zip(truth, vs))
    lines = sum(len(truth) for truth, _ in rest)
    s_err = statistics.fmean(abs(sum(vs) / len(vs) - sum(t == CORRECT for t in truth) / len(truth))
                             for (truth, _), vs in zip(rest, verdicts))
    return right / lines, s_err


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crowd", default=DEFAULT_CROWD, help="annotators' reliabilities, comma-separated")
    parser.add_argument("--programs", type=int, default=300)
    parser.add_argument("--honeypots", type=int, default=19)
    parser.add_argument("--per-program", type=int, default=3, help="annotators per (non-honeypot) program; 0: all")
    parser.add_argument("--p-correct", type=float, default=0.8, help="share of true lines that are correct")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    reliability = crowd([float(x) for x in args.crowd.split(",")])
    methods: dict[str, Method] = {
        "majority": majority,
        "bayes, true p, prior 1/2": bayes_fixed(reliability, 0.5),
        "bayes, true p, true prior": bayes_fixed(reliability, args.p_correct),
        "bayes, online λ=1, prior 1/2 (paper)": bayes_online(1.0, False),
        "bayes, online λ=0.1, prior 1/2": bayes_online(0.1, False),
        "bayes, online λ=0.1, prior fitted": bayes_online(0.1, True),
        "bayes, one-shot, prior 1/2 (paper)": one_shot(False),
        "bayes, one-shot, prior fitted": one_shot(True),
        "bayes, honeypot agreement rates": em(0),
        "bayes, EM anchored on honeypots": em(50),
    }
    try:
        import crowdkit  # noqa: F401
        methods.update({f"crowd-kit {n}": crowd_kit(n) for n in ("MajorityVote", "DawidSkene", "OneCoinDawidSkene", "GLAD")})
    except ImportError:
        print("crowd-kit is not installed (pip install -e '.[crowd]'): its rows are left out, and no ratio is printed")
    print(f"crowd {args.crowd}; {args.honeypots} honeypots + {args.programs} programs, {args.per_program or 'all'} "
          f"annotators each, {args.p_correct:.0%} of lines correct; mean over {args.seeds} seeds")
    results: dict[str, list[tuple[float, float, float]]] = {m: [] for m in methods}
    for seed in range(args.seeds):
        gold, rest = simulate(reliability, args.programs, args.honeypots, args.per_program, args.p_correct, seed)
        for name, method in methods.items():
            start = time.perf_counter()
            verdicts = method(gold, rest)
            results[name].append((*scores(rest, verdicts), time.perf_counter() - start))
    print(f"{'method':38s} {'lines right':>11s} {'|s error|':>10s} {'seconds':>8s}")
    for name, rows in results.items():
        acc, err, secs = (statistics.fmean(r[i] for r in rows) for i in range(3))
        print(f"{name:38s} {acc:11.3f} {err:10.3f} {secs:8.3f}")
    if "crowd-kit DawidSkene" in results:
        ours = max(statistics.fmean(r[0] for r in results[m]) for m in results if m.startswith("bayes,") and "true" not in m)
        peer = max(statistics.fmean(r[0] for r in results[m]) for m in results if m.startswith("crowd-kit"))
        print(f"lines named wrongly, best crowd-kit / best cRLHF estimate: {(1 - peer) / (1 - ours):.2f}x")
        took = {m: statistics.fmean(r[2] for r in results[m]) for m in ("bayes, EM anchored on honeypots", "crowd-kit OneCoinDawidSkene")}
        print(f"time, crowd-kit OneCoinDawidSkene / EM anchored on honeypots: "
              f"{took['crowd-kit OneCoinDawidSkene'] / took['bayes, EM anchored on honeypots']:.1f}x")


if __name__ == "__main__":
    main()
