"""Crowd-sourced line-level human feedback aggregated by Bayes (cRLHF; paper crowd-sourced-rlhf-bayesian;
DESIGN.md 1.4).

Annotators mark each line of a program correct (+1) or wrong (-1). An annotator i has a reliability
p_i = P(says +1 | line correct) = P(says -1 | line wrong). With the prior 1/2, the paper's eq. 7 gives

    P(line correct | ε_1..ε_n) = σ(Σ_i ε_i · logit(p_i)),

and the line counts as correct when that exceeds τ (0.5). A program's score is s = correct lines / lines:
the reward the cRLHF loop trains on (``codeloop.recipes.crlhf``). Every line is labelled, but the score
may count only the lines that compute (``counted_lines``: ST's declarations left out; ours, the paper
counts every line).

Reliabilities, two ways:

- **online** (the paper's eq. 8, ``Reliabilities.update``): p_i starts at ν; after each program, for
  every line the annotator labelled, p_i* = σ(logit(p_i) + λ·μ·logit(p̄)), μ = +1 when the annotator
  agreed with the system's answer and -1 otherwise, p̄ the system's certainty in that answer (its
  posterior, or 1 on a honeypot, whose answer is known). logit(1) is infinite, so a certainty is capped
  at ``max_certainty`` and a reliability kept within [1 - max_certainty, max_certainty]; both are ours.
- **one-shot** (the paper's section II-C, ``fit_reliabilities``): L1-regularised logistic regression
  over lines with known answers, min_w (1/N) Σ_j log(1 + exp(-y_j Σ_i ε_ij w_i)) + γ‖w‖₁, solved by
  proximal gradient (ISTA: a gradient step, then soft-thresholding), w_i = logit(p_i). The paper writes
  the loss for one line; summed over lines it is the usual regression whose prediction is eq. 7. The
  L1 term zeroes the weight of annotators who carry no signal (p = 1/2: they stop counting).

A line label cannot say "the program does not do what was asked" (a program that leaves a step out
has no wrong line to mark), so annotators may also give a verdict on the whole program (+1/-1),
aggregated by the same eq. 7 with the reliabilities their line labels earned, prior 1/2
(``program_probability``, ``crowd_score``; ours).

Lines are the program's non-blank lines (``code_lines``); a label list has one entry per such line.
``SimulatedCrowd`` and ``reference_line_labels`` stand in for people where none are at hand (tests,
the demo): annotators with set reliabilities flip a line's true label with probability 1 - p_i, and
the true labels come from the program's test verdict and a line diff against the reference solution.
"""

from __future__ import annotations

import difflib
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

CORRECT, WRONG = 1, -1
ESTIMATES = ("em", "online", "oneshot", "majority")  # how an Aggregator estimates reliabilities
SCORE_LINES = ("all", "statements")  # which lines a program's score counts (counted_lines)
CROWD_SCORES = ("lines", "verdict", "lines+verdict")  # what a crowd's program score is made of (crowd_score)
CROWD_RANGES = {"tau": "[0, 1]", "step": "> 0", "nu": "[0.01, 0.99]", "gamma": ">= 0"}
"""The ranges of :class:`Aggregator`'s settings (``codeloop.recipes.common.check_ranges`` notation); ν as
:class:`Reliabilities` bounds it with its default ``max_certainty``."""
Labelled = tuple[list[int], dict[str, list[int]]]  # a program's known line answers, annotator -> labels


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def code_lines(program: str) -> list[str]:
    """The lines annotators label: the program's non-blank lines, in order."""
    return [line for line in program.splitlines() if line.strip()]


def counted_lines(lines: Sequence[str], language: str, which: str = "all") -> list[bool]:
    """Which of a program's lines (``code_lines``) its score counts: ``all``, or ``statements``, the lines
    that compute. In ST those are the lines outside unit headers and ends and VAR... / TYPE blocks
    (``codeloop.languages.st.declaration_lines``): there a wrong program's declarations mostly match the
    reference, and counting them pushes every score towards 1. Python declares nothing apart, so all."""
    if which not in SCORE_LINES:
        raise ValueError(f"score_lines: expected one of {', '.join(SCORE_LINES)}, got {which!r}")
    if which == "statements" and language == "st":
        from codeloop.languages.st import declaration_lines  # here: importing the ST checker costs ~60 ms

        return [not d for d in declaration_lines(list(lines))]
    return [True] * len(lines)


def line_share(correct: Sequence[bool], counted: Sequence[bool] | None = None) -> float:
    """s = correct lines / lines, over the ``counted`` lines only when given (0 when no line counts)."""
    kept = [c for c, k in zip(correct, counted) if k] if counted is not None else list(correct)
    return sum(kept) / len(kept) if kept else 0.0


def crowd_score(lines: float, verdict: float | None, which: str = "lines") -> float:
    """A program's score from the crowd: ``lines``, the share of its lines judged correct (the paper's s);
    ``verdict``, P(the program does what the task asks) from the annotators' verdicts on the whole program
    (``program_probability``; ours); ``lines+verdict``, their mean."""
    if which not in CROWD_SCORES:
        raise ValueError(f"crowd_score: expected one of {', '.join(CROWD_SCORES)}, got {which!r}")
    if which == "lines":
        return lines
    if verdict is None:
        raise ValueError(f"crowd_score {which!r} needs verdicts on the whole program, and this program has none")
    return verdict if which == "verdict" else (lines + verdict) / 2


def check_labels(labels: Sequence[int], n_lines: int, where: str = "labels") -> list[int]:
    """A label list as ints, or a ValueError naming ``where``: one label per line, each +1 or -1."""
    if len(labels) != n_lines:
        raise ValueError(f"{where}: {len(labels)} labels for {n_lines} non-blank lines")
    bad = [x for x in labels if x not in (CORRECT, WRONG) or isinstance(x, bool)]
    if bad:
        raise ValueError(f"{where}: a label is 1 (correct) or -1 (wrong), got {bad[0]!r}")
    return [int(x) for x in labels]


def check_verdict(verdict: object, where: str = "verdict") -> int | None:
    """An annotator's verdict on a whole program: 1 (does what the task asks), -1 (does not) or None (not given)."""
    if verdict is None:
        return None
    if type(verdict) is not int or verdict not in (CORRECT, WRONG):
        raise ValueError(f"{where}: 1 (the program does what the task asks), -1 (it does not) or null, got {verdict!r}")
    return verdict


def posterior(votes: Mapping[str, int], reliability: Mapping[str, float] | Reliabilities, prior: float = 0.5) -> float:
    """Eq. 7: P(line correct) from annotators' votes (+1/-1) and their reliabilities (prior 1/2 by default)."""
    return sigmoid(logit(prior) + sum(eps * logit(reliability[a]) for a, eps in votes.items()))


def program_probability(votes: Mapping[str, int], reliability: Mapping[str, float], prior: float = 0.5) -> float:
    """P(a program does what its task asks) from annotators' verdicts on the whole of it (+1/-1): eq. 7
    with the reliabilities their line labels earned and ``prior`` (1/2 by default; ``verdict_prior``
    estimates it); an annotator the estimate has not seen counts at 1/2, i.e. not at all."""
    return posterior(votes, {a: reliability.get(a, 0.5) for a in votes}, prior)


VERDICT_PRIORS = ("half", "em")  # the prior P(program correct) behind program_probability (verdict_prior)


def verdict_prior(votes: Sequence[Mapping[str, int]], reliability: Mapping[str, float], iterations: int = 100,
                  tol: float = 1e-9, bound: float = 0.01) -> float:
    """The share of programs that do what their tasks ask, estimated from the verdicts alone by EM with
    the annotators' reliabilities held fixed (ours): π ← mean of P(correct | votes, π) until it settles.
    A batch where most programs fail gets a prior near its failure rate instead of 1/2, so two yes-votes
    against one no count for less. Kept within [bound, 1 - bound]; 1/2 when there are no votes."""
    if not any(votes):
        return 0.5
    prior = 0.5
    for _ in range(iterations):
        new = sum(program_probability(v, reliability, prior) for v in votes) / len(votes)
        new = min(max(new, bound), 1.0 - bound)
        if abs(new - prior) < tol:
            return new
        prior = new
    return prior


def program_probabilities(votes: Sequence[Mapping[str, int]], reliability: Mapping[str, float],
                          prior: str = "half") -> tuple[list[float], float]:
    """``program_probability`` of each program's verdicts, under the prior ``prior`` names ("half": 1/2;
    "em": ``verdict_prior`` over these same verdicts), and that prior."""
    if prior not in VERDICT_PRIORS:
        raise ValueError(f"verdict_prior: expected one of {', '.join(VERDICT_PRIORS)}, got {prior!r}")
    p0 = verdict_prior(votes, reliability) if prior == "em" else 0.5
    return [program_probability(v, reliability, p0) for v in votes], p0


@dataclass
class Reliabilities:
    """Per-annotator reliability p_i, updated online by eq. 8."""

    nu: float = 0.7
    """ν: every annotator's starting reliability."""
    step: float = 1.0
    """λ of eq. 8 (the paper: 1)."""
    max_certainty: float = 0.99
    """Caps p̄ (logit(1) is infinite) and bounds every p_i to [1 - cap, cap]."""
    learn_prior: bool = True
    """Estimate the prior P(line correct) from the honeypots' answers, (correct + 1) / (lines + 2); false:
    the paper's 1/2."""
    p: dict[str, float] = field(default_factory=dict)
    gold_lines: int = 0
    gold_correct: int = 0

    def __post_init__(self) -> None:
        if not 0.5 <= self.max_certainty < 1.0:
            raise ValueError(f"max_certainty must be in [0.5, 1), got {self.max_certainty}")
        if not 1.0 - self.max_certainty <= self.nu <= self.max_certainty:
            raise ValueError(f"nu must be within [1 - max_certainty, max_certainty], got {self.nu}")

    def __getitem__(self, annotator: str) -> float:
        return self.p.get(annotator, self.nu)

    @property
    def prior(self) -> float:
        return (self.gold_correct + 1) / (self.gold_lines + 2) if self.learn_prior else 0.5

    def update(self, annotator: str, agreed: bool, certainty: float) -> float:
        """Eq. 8 for one line: p* = σ(logit(p) + λ·μ·logit(p̄)), μ = ±1; returns the new p."""
        cap = self.max_certainty
        pbar = min(max(certainty, 0.5), cap)
        new = sigmoid(logit(self[annotator]) + self.step * (1 if agreed else -1) * logit(pbar))
        self.p[annotator] = min(max(new, 1.0 - cap), cap)
        return self.p[annotator]


@dataclass(frozen=True)
class LineVerdicts:
    """One program's aggregate: per line P(correct) and the verdict at τ, and s = correct / lines."""

    probabilities: list[float]
    correct: list[bool]

    @property
    def score(self) -> float:
        return line_share(self.correct)


def aggregate(labels: Mapping[str, Sequence[int]], reliability: Mapping[str, float] | Reliabilities,
              tau: float = 0.5, prior: float | None = None) -> LineVerdicts:
    """Eq. 7 on every line of one program: ``labels`` maps annotator -> one ±1 per line; the prior is
    ``prior``, else a ``Reliabilities``' own, else 1/2."""
    n = {len(v) for v in labels.values()}
    if len(n) > 1:
        raise ValueError(f"annotators gave different numbers of line labels: {sorted(n)}")
    lines = n.pop() if n else 0
    if prior is None:
        prior = reliability.prior if isinstance(reliability, Reliabilities) else 0.5
    probs = [posterior({a: v[j] for a, v in labels.items()}, reliability, prior) for j in range(lines)]
    return LineVerdicts(probs, [p > tau for p in probs])


def score_program(labels: Mapping[str, Sequence[int]], rel: Reliabilities, tau: float = 0.5,
                  gold: Sequence[int] | None = None, update: bool = True) -> LineVerdicts:
    """Algorithm 1 for one program: aggregate with the current reliabilities, then (``update``) move every
    annotator's reliability by eq. 8 once per line, against the known answer on a honeypot (``gold``,
    certainty 1) or else the system's own answer with its posterior certainty."""
    verdicts = aggregate(labels, rel, tau)
    if gold is not None:
        gold = check_labels(gold, len(verdicts.probabilities), "honeypot answers")
        rel.gold_lines += len(gold)
        rel.gold_correct += gold.count(CORRECT)
    if update:
        for j, p in enumerate(verdicts.probabilities):
            answer = gold[j] if gold is not None else (CORRECT if verdicts.correct[j] else WRONG)
            certainty = 1.0 if gold is not None else (p if answer == CORRECT else 1.0 - p)
            for a, v in labels.items():
                rel.update(a, v[j] == answer, certainty)
    return verdicts


@dataclass(frozen=True)
class Fit:
    """``fit_reliabilities``'s answer: p_i per annotator, the objective it reached and the steps taken."""

    reliability: dict[str, float]
    weights: dict[str, float]
    prior: float
    objective: float
    steps: int


def fit_reliabilities(rows: Sequence[tuple[Mapping[str, int], int]], gamma: float = 0.01, steps: int = 2000,
                      tol: float = 1e-9, learn_prior: bool = True) -> Fit:
    """The one-shot estimate: L1-regularised logistic regression by proximal gradient (ISTA).

    ``rows``: (votes of the annotators who labelled the line, its known answer ±1). Features are
    x_ji = y_j·ε_ji (0 where i did not label line j), and with ``learn_prior`` a last one, y_j, whose
    weight b is logit(prior) (unpenalised; eq. 4's logit(p_0), which the paper fixes at 0). Minimises
    (1/N) Σ_j log(1 + exp(-x_j·w)) + γ Σ_i |w_i| with step 1/L, L = ‖X‖₂²/(4N) the gradient's Lipschitz
    constant; p_i = σ(w_i)."""
    if not rows:
        raise ValueError("fit_reliabilities needs at least one line with a known answer")
    names = sorted({a for votes, _ in rows for a in votes})
    index = {a: i for i, a in enumerate(names)}
    x = np.zeros((len(rows), len(names) + 1))
    for j, (votes, y) in enumerate(rows):
        if y not in (CORRECT, WRONG):
            raise ValueError(f"line {j}: a known answer is 1 or -1, got {y!r}")
        for a, eps in votes.items():
            x[j, index[a]] = y * eps
        x[j, -1] = y if learn_prior else 0.0
    penalty = np.full(x.shape[1], gamma)
    penalty[-1] = 0.0
    n = len(rows)
    lipschitz = max(float(np.linalg.norm(x, 2)) ** 2 / (4 * n), 1e-12)
    eta = 1.0 / lipschitz

    def objective(w: np.ndarray) -> float:
        return float(np.mean(np.logaddexp(0.0, -x @ w)) + (penalty * np.abs(w)).sum())

    w = np.zeros(x.shape[1])
    value, done = objective(w), 0
    for done in range(1, steps + 1):
        grad = -(x.T @ (1.0 / (1.0 + np.exp(np.clip(x @ w, -500, 500))))) / n  # ∇ of the mean log-loss
        z = w - eta * grad
        w = np.sign(z) * np.maximum(np.abs(z) - eta * penalty, 0.0)  # prox of ηγ‖·‖₁: soft-thresholding
        new = objective(w)
        if value - new < tol * max(1.0, abs(value)):
            value = new
            break
        value = new
    weights = {a: float(w[index[a]]) for a in names}
    return Fit({a: sigmoid(v) for a, v in weights.items()}, weights, sigmoid(float(w[-1])), value, done)


@dataclass(frozen=True)
class Estimate:
    """Reliabilities and a prior P(line correct), with the evidence behind them."""

    reliability: dict[str, float]
    prior: float
    rounds: int


def em_reliabilities(gold: Sequence[tuple[Mapping[str, int], int]], lines: Sequence[Mapping[str, int]] = (),
                     rounds: int = 50, tol: float = 1e-6) -> Estimate:
    """Eq. 7's own maximum-likelihood estimate (ours, not the paper's): under its model an annotator's
    reliability is the chance of agreeing with the truth, so on honeypot lines (``gold``: votes, answer)
    p_i = (agreements + 1) / (labels + 2) and the prior likewise from the answers. With unanswered
    ``lines`` it goes on by expectation-maximisation (one-coin Dawid-Skene kept anchored to the honeypots):
    each round takes every line's posterior P under the current estimate, counts a vote +1 as P of an
    agreement and a vote -1 as 1 - P, and re-estimates, until no p moves by ``tol``."""
    names = sorted({a for votes, _ in gold for a in votes} | {a for votes in lines for a in votes})
    agree0 = dict.fromkeys(names, 1.0)
    seen0 = dict.fromkeys(names, 2.0)
    correct0, total0 = 1.0, 2.0
    for votes, y in gold:
        if y not in (CORRECT, WRONG):
            raise ValueError(f"a known answer is 1 or -1, got {y!r}")
        correct0 += y == CORRECT
        total0 += 1
        for a, eps in votes.items():
            agree0[a] += eps == y
            seen0[a] += 1
    p = {a: agree0[a] / seen0[a] for a in names}
    prior = correct0 / total0
    done = 0
    for done in range(1, rounds + 1 if lines else 1):
        agree, seen, correct = dict(agree0), dict(seen0), correct0
        for votes in lines:
            q = posterior(votes, p, prior)
            correct += q
            for a, eps in votes.items():
                agree[a] += q if eps == CORRECT else 1.0 - q
                seen[a] += 1
        new = {a: agree[a] / seen[a] for a in names}
        prior = correct / (total0 + len(lines))
        moved = max((abs(new[a] - p[a]) for a in names), default=0.0)
        p = new
        if moved < tol:
            break
    return Estimate(p, prior, done if lines else 0)


class Aggregator:
    """Line verdicts for batches of programs, with reliabilities estimated as ``method`` says, from
    honeypots (known answers, every annotator's labels) given first:

    - ``em``: ``em_reliabilities`` on the honeypots and the batch's lines, prior estimated too (ours);
    - ``online``: eq. 8 from ν through the honeypots, then after every program (step λ, prior 1/2: the paper);
    - ``oneshot``: ``fit_reliabilities`` on the honeypots (γ; prior 1/2: the paper);
    - ``majority``: every annotator trusted alike, prior 1/2 (the plain vote).

    An annotator no estimate has seen counts at 1/2, i.e. not at all. ``state`` holds the last batch's
    reliabilities and prior."""

    def __init__(self, method: str, honeypots: Sequence[Labelled] = (), tau: float = 0.5, step: float = 0.1,
                 nu: float = 0.7, gamma: float = 0.01) -> None:
        if method not in ESTIMATES:
            raise ValueError(f"reliabilities must be one of {', '.join(ESTIMATES)}, got {method!r}")
        self.method, self.tau, self.gamma = method, tau, gamma
        self.gold = [({a: v[j] for a, v in labels.items()}, t) for truth, labels in honeypots for j, t in enumerate(truth)]
        self.online = Reliabilities(nu=nu, step=step, learn_prior=False)
        for truth, labels in honeypots:
            score_program(labels, self.online, gold=truth)
        self.state: dict = {}

    def __call__(self, programs: Sequence[Mapping[str, Sequence[int]]]) -> list[LineVerdicts]:
        if self.method == "online":
            verdicts = [score_program(labels, self.online, self.tau) for labels in programs]
            self.state = {"reliability": dict(self.online.p), "prior": 0.5}
            return verdicts
        p: Mapping[str, float]
        if self.method == "majority":
            p, prior = {a: 0.75 for labels in programs for a in labels}, 0.5
        elif self.method == "oneshot":
            fit = fit_reliabilities(self.gold, gamma=self.gamma, learn_prior=False)
            p, prior = fit.reliability, fit.prior
        else:
            lines = [{a: v[j] for a, v in labels.items()} for labels in programs for j in range(_lines(labels))]
            est = em_reliabilities(self.gold, lines)
            p, prior = est.reliability, est.prior
        p = {**{a: 0.5 for labels in programs for a in labels}, **p}
        self.state = {"reliability": p, "prior": prior}
        return [aggregate(labels, p, self.tau, prior) for labels in programs]


def _lines(labels: Mapping[str, Sequence[int]]) -> int:
    return len(next(iter(labels.values()))) if labels else 0


def reference_line_labels(program: str, reference: str, passed: bool, gaps: bool = False) -> list[int]:
    """A stand-in for the truth a careful expert would mark: every line of a program that passes its
    tests is correct; in one that does not, the lines a diff matches to the reference solution (compared
    without surrounding whitespace) are correct and the others wrong. A line label cannot say "something
    is missing here", so with ``gaps`` the line after each place where the reference has lines the
    program lacks is marked wrong too (the last line, for a gap at the end): without it, leaving a line
    out costs a wrong program nothing, and raises its share of correct lines."""
    lines = code_lines(program)
    if passed:
        return [CORRECT] * len(lines)
    ref = [line.strip() for line in code_lines(reference)]
    matcher = difflib.SequenceMatcher(a=[line.strip() for line in lines], b=ref, autojunk=False)
    labels = [WRONG] * len(lines)
    for block in matcher.get_matching_blocks():
        for j in range(block.a, block.a + block.size):
            labels[j] = CORRECT
    if gaps and lines:
        for tag, i1, _, _, _ in matcher.get_opcodes():
            if tag == "insert":  # reference lines with nothing in the program before program line i1
                labels[min(i1, len(lines) - 1)] = WRONG
    return labels


@dataclass
class SimulatedCrowd:
    """Annotators with set reliabilities: each labels a line with its true label with probability p_i,
    the opposite otherwise, independently (the model eq. 7 assumes)."""

    reliability: dict[str, float]
    seed: int = 0

    def __post_init__(self) -> None:
        for a, p in self.reliability.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"annotator {a!r}: a reliability is a probability in [0, 1], got {p}")
        self._rng = random.Random(self.seed)
        self._verdict_rng = random.Random(f"{self.seed}:verdict")

    def annotate(self, truth: Sequence[int], per_program: int = 0) -> dict[str, list[int]]:
        """Labels for one program's lines: from every annotator, or from ``per_program`` drawn at random."""
        names = list(self.reliability)
        if 0 < per_program < len(names):
            names = self._rng.sample(names, per_program)
        return {a: [t if self._rng.random() < self.reliability[a] else -t for t in truth] for a in names}

    def judge(self, passed: bool, annotators: Sequence[str]) -> dict[str, int]:
        """Each named annotator's verdict on a whole program: right (+1 when it passes its tests) with
        probability p_i. Drawn from a stream of its own, so the line labels stay what they were."""
        truth = CORRECT if passed else WRONG
        return {a: truth if self._verdict_rng.random() < self.reliability[a] else -truth for a in annotators}


def crowd(spec: Sequence[float] | Mapping[str, float]) -> dict[str, float]:
    """Annotator reliabilities from a list (named a1, a2, ...) or a mapping."""
    if isinstance(spec, Mapping):
        return {str(a): float(p) for a, p in spec.items()}
    return {f"a{i + 1}": float(p) for i, p in enumerate(spec)}
