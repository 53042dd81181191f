"""cRLHF: RL on crowd-sourced line-level feedback, aggregated by Bayes (paper crowd-sourced-rlhf-bayesian;
DESIGN.md 1.4).

Before the first iteration: honeypots, programs whose line answers are known, labelled by every
annotator (the paper's first 19 questions). Per iteration: take the next batch of tasks; sample k
programs per task from the current policy; annotators mark each line correct or wrong; the marks are
aggregated per line by eq. 7 with the annotators' reliabilities, estimated as ``reliabilities`` says:

- ``em`` (ours): eq. 7's own maximum-likelihood estimate, each annotator's share of honeypot lines
  labelled right, refined by EM over the iteration's lines; the prior P(line correct) likewise;
- ``online``: the paper's Algorithm 1, eq. 8 after every program (honeypots first), step λ, prior 1/2;
- ``oneshot``: the paper's L1-regularised logistic regression on the honeypots (proximal gradient);
- ``majority``: every annotator trusted alike (the plain vote).

A program's reward is s = lines judged correct / lines (``reward: crowd``; ``score_lines: statements``
counts only the lines that compute, leaving out ST's declarations, ours). The same annotators also
give a verdict on each whole program, aggregated by eq. 7 with the reliabilities their lines earned
(``crowd_score: verdict`` trains on that P(program correct), ``lines+verdict`` on the mean of both;
ours: a line label cannot charge a program for what it left out). For comparison the
same score from the true line labels (``truth``: perfect annotators) or the test verdict (``tests``:
1 passes, 0 not). One REINFORCE update (``codeloop.train.pg``) follows with advantage s minus the
leave-one-out mean of the task's other samples (the paper trains with TRL's PPO; any policy gradient
that takes a reward will do, DESIGN.md 1.4).

No people are at hand in a test or the demo, so a simulated crowd labels (``crowd``: the annotators'
reliabilities; ``per_program`` of them label each program) and the true line labels come from each
program's test verdict and a line diff against the task's reference solution
(``codeloop.feedback.human.reference_line_labels``; ``mark_gaps`` also charges a line the program left
out to the line after it, ours). With people, ``codeloop annotate`` serves the
labelling page and turns its labels into the same scores, and ``run_scores`` (``codeloop loop
crlhf-scores``) trains on such a file: the paper's own experiment, where people label a fixed set of
programs once. A killed run restarts after its last finished iteration.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from codeloop.data import DataError, load_tasks, read_jsonl, write_jsonl
from codeloop.data.jsonl import require, where
from codeloop.eval.plots import plot_metrics
from codeloop.feedback.human import (CORRECT, CROWD_RANGES, CROWD_SCORES, ESTIMATES, SCORE_LINES, VERDICT_PRIORS, Aggregator, Labelled,
                                     SimulatedCrowd, code_lines, counted_lines, crowd, crowd_score, line_share, program_probabilities,
                                     reference_line_labels)
from codeloop.recipes.coderl import leave_one_out
from codeloop.recipes.common import (Clock, Loop, LoopSettings, PolicySampler, Rollout, check_choices, check_ranges,
                                     held_out_metrics, loop_sandbox, plus_metrics, rollout, validation_tasks)
from codeloop.sandbox import Runner
from codeloop.train.pg import behaviour_logprobs, check_clip, policy_gradient

REWARDS = ("crowd", "truth", "tests")
SCORE_BASELINES = ("task", "mean", "none")


@dataclass
class CRLHFConfig(LoopSettings):
    """cRLHF's settings; the shared ones (sampling backend, validation, seed): LoopSettings."""

    model: str = "seed-python"
    """The policy to train (hf backend)."""
    tasks: str = "synthetic-python:train"
    """Training tasks (their reference solutions and tests give the simulated crowd its truth)."""
    n_instructions: int = 2000
    """The first N tasks of ``tasks`` train; the next ``honeypots`` give the honeypot programs."""
    fraction: float = 0.2
    """Each iteration takes the next floor(fraction·N) tasks, in order."""
    iterations: int = 6
    """Rounds of sample -> annotate -> aggregate -> policy gradient."""
    k: int = 4
    """Programs sampled per task."""
    temperature: float = 0.8
    """Sampling temperature (the paper: 0.8)."""
    max_new_tokens: int = 160
    """Longest program."""
    crowd: str = "0.95,0.9,0.85,0.8,0.75,0.7,0.65,0.6,0.5,0.3"
    """The simulated annotators' reliabilities, comma-separated (experts to a spammer at 0.5 and one below it)."""
    per_program: int = 3
    """Annotators drawn at random to label each program (0: every annotator)."""
    honeypots: int = 19
    """Programs with known answers, labelled by every annotator before the first iteration (the paper: 19)."""
    reliabilities: str = "em"
    """How annotator reliabilities are estimated: "em", "online" (eq. 8), "oneshot" (L1 fit) or "majority"."""
    step: float = 0.1
    """λ of eq. 8 (reliabilities online). The paper's 1 is unstable here: see the README."""
    nu: float = 0.7
    """ν: the starting reliability (reliabilities online)."""
    gamma: float = 0.01
    """γ of the L1 fit (reliabilities oneshot)."""
    tau: float = 0.5
    """τ: a line counts as correct when P(correct) exceeds it."""
    reward: str = "crowd"
    """The reward s: "crowd" (the aggregate), "truth" (the true line labels) or "tests" (1 passes, 0 not)."""
    crowd_score: str = "lines"
    """What the crowd's reward is made of: "lines" (s, the paper), "verdict" (P(program correct) from the
    annotators' verdicts on whole programs) or "lines+verdict" (their mean)."""
    verdict_prior: str = "half"
    """The prior P(program correct) behind the verdict score: "half" (1/2, as eq. 7 for lines) or "em"
    (estimated each iteration from the batch's verdicts, ``feedback.human.verdict_prior``; ours)."""
    score_lines: str = "all"
    """Which lines s counts: "all" (the paper) or "statements" (ST: not unit headers/ends or VAR/TYPE blocks)."""
    mark_gaps: bool = False
    """The simulated truth: in a failing program, the line after each place where lines of the reference are
    missing is wrong too (else leaving a line out costs nothing; ours)."""
    lr: float = 1e-5
    """Policy learning rate."""
    kl_weight: float = 0.0
    """β of a KL penalty against the starting model (0: none)."""
    clip: float = 0.0
    """ε of PPO's clipped surrogate against the policy that sampled the iteration's programs (0: plain REINFORCE)."""
    epochs: float = 1.0
    """Policy passes over each iteration's programs."""
    batch_size: int = 16
    """Programs per step."""
    val_temperature: float = 0.8
    """Validation sampling temperature."""
    out_dir: str = "runs/crlhf"
    """Models, honeypots, annotations with their scores, reliabilities, metrics.jsonl, metrics.png."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choices(reliabilities=(self.reliabilities, ESTIMATES), reward=(self.reward, REWARDS),
                      score_lines=(self.score_lines, SCORE_LINES), crowd_score=(self.crowd_score, CROWD_SCORES),
                      verdict_prior=(self.verdict_prior, VERDICT_PRIORS))
        check_ranges(self, per_program=">= 0", honeypots=">= 0", **CROWD_RANGES)
        check_clip(self.clip)
        if self.trainer != "plain":
            raise ValueError(f"trainer {self.trainer!r}: the crlhf loop trains with its own policy-gradient loop; use trainer plain")
        if self.honeypots < 1 and self.reliabilities in ("em", "oneshot"):
            raise ValueError(f"reliabilities {self.reliabilities!r} are estimated from honeypots: honeypots must be at least 1")
        annotator_reliabilities(self.crowd)


def annotator_reliabilities(spec: str) -> dict[str, float]:
    """The ``crowd`` key as annotator -> reliability (a1, a2, ...), or a ValueError naming the key."""
    try:
        values = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"crowd must be comma-separated reliabilities such as 0.9,0.7,0.5, got {spec!r}") from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"crowd must list at least one reliability, each in [0, 1], got {spec!r}")
    return crowd(values)


def true_labels(run_: Rollout, gaps: bool = False) -> list[list[int]]:
    """The simulated truth of every program's lines (in the rollout's order; ``gaps``: see ``mark_gaps``)."""
    out = []
    for task, texts, outcomes in run_.groups():
        for text, outcome in zip(texts, outcomes):
            out.append(reference_line_labels(text, task.canonical_solution or "", outcome.passed, gaps))
    return out


def _honeypots(cfg: CRLHFConfig, tasks: list, sampler: PolicySampler, policy: object, sandbox: Runner,
               people: SimulatedCrowd, out: Path) -> list[Labelled]:
    """Honeypot programs (sampled once from the starting policy for tasks after the training slice), with
    their true line labels and every annotator's labels; saved, and read back on resume."""
    path = out / "honeypots.jsonl"
    if path.exists():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [(r["truth"], r["labels"]) for r in rows]
    pool = tasks[cfg.n_instructions: cfg.n_instructions + cfg.honeypots]
    if len(pool) < cfg.honeypots:
        raise ValueError(f"honeypots: {cfg.honeypots} honeypot tasks are taken after the first n_instructions "
                         f"({cfg.n_instructions}) of {cfg.tasks}, which has only {len(tasks)}")
    if not pool:
        return []
    run_ = rollout(sampler(policy, cfg.model), pool, sandbox, 1, cfg.temperature, cfg.max_new_tokens, cfg.seed)
    rows, out_rows = [], []
    for sample, truth in zip(run_.samples, true_labels(run_, cfg.mark_gaps)):
        if not truth:
            continue
        labels = people.annotate(truth)
        rows.append((truth, labels))
        out_rows.append({"task_id": sample.task_id, "completion": sample.completion, "truth": truth, "labels": labels})
    write_jsonl(path, out_rows)
    return rows


def run(cfg: CRLHFConfig, on_iteration: Callable[[dict], None] | None = None) -> list[dict]:
    all_tasks = list(load_tasks(cfg.tasks).values())
    tasks = all_tasks[: cfg.n_instructions]
    val_tasks, plus = validation_tasks(cfg)  # bad task sources are refused before anything is written
    loop = Loop.open(cfg.out_dir, cfg.iterations, asdict(cfg))
    size = max(1, math.floor(cfg.fraction * len(tasks)))
    reference, policy, tokenizer = loop.policies(cfg.model, refresh_reference=False)
    reference = reference if cfg.kl_weight else None
    sampler = PolicySampler(cfg.backend, tokenizer, cfg.vllm_memory)
    reliability = annotator_reliabilities(cfg.crowd)

    def validate(i: int) -> dict:
        run_ = rollout(sampler(policy, loop.checkpoint(i, cfg.model)), val_tasks, sandbox, cfg.val_n, cfg.val_temperature,
                       cfg.max_new_tokens, cfg.seed)
        return {**held_out_metrics(run_), **plus_metrics(run_, plus, sandbox)}

    with loop_sandbox(cfg.ray, cfg.out_dir, [*tasks, *val_tasks]) as sandbox:
        honeypots = _honeypots(cfg, all_tasks, sampler, policy, sandbox, SimulatedCrowd(reliability, seed=cfg.seed + 7919),
                               loop.out) if cfg.honeypots else []
        aggregator = Aggregator(cfg.reliabilities, honeypots, tau=cfg.tau, step=cfg.step, nu=cfg.nu, gamma=cfg.gamma)
        if loop.start and cfg.reliabilities == "online":  # eq. 8's state goes on from the last finished iteration
            saved = json.loads((loop.out / f"iter_{loop.start}" / "reliabilities.json").read_text())
            aggregator.online.p = dict(saved["reliability"])
        if not loop.metrics:
            loop.record({"iteration": 0, **validate(0)}, on_iteration)
        for i in loop.pending():
            it_dir = loop.iteration_dir(i)
            batch = [tasks[j % len(tasks)] for j in range((i - 1) * size, i * size)]
            clock = Clock()
            run_ = rollout(sampler(policy, loop.checkpoint(i - 1, cfg.model)), batch, sandbox, cfg.k, cfg.temperature,
                           cfg.max_new_tokens, cfg.seed * 1000 + i, clock)
            truth = true_labels(run_, cfg.mark_gaps)
            people = SimulatedCrowd(reliability, seed=cfg.seed * 1000 + i + 7919)
            labels = [people.annotate(t, cfg.per_program) for t in truth]
            votes = [people.judge(o.passed, list(lab)) for lab, o in zip(labels, run_.outcomes)]  # on whole programs
            with clock("aggregate"):
                verdicts = [v.correct for v in aggregator([lab for lab, t in zip(labels, truth) if t])]
                rel = aggregator.state.get("reliability", {})
                program_p, prior = program_probabilities(votes, rel, cfg.verdict_prior)
            verdicts_iter = iter(verdicts)
            judged = [next(verdicts_iter) if t else [] for t in truth]  # a program with no non-blank line: no lines
            counted = [counted_lines(code_lines(text), task.language, cfg.score_lines)
                       for task, texts, _ in run_.groups() for text in texts]
            crowd_lines = [line_share(v, c) for v, c in zip(judged, counted)]
            crowd_s = [crowd_score(x, q, cfg.crowd_score) for x, q in zip(crowd_lines, program_p)]
            true_s = [line_share([x == CORRECT for x in t], c) for t, c in zip(truth, counted)]
            passed = [float(o.passed) for o in run_.outcomes]
            s = {"crowd": crowd_s, "truth": true_s, "tests": passed}[cfg.reward]
            items = [(task.prompt, text) for task, texts, _ in run_.groups() for text in texts]
            sampler.release()  # the engine's GPU memory to the update (vllm backend)
            with clock("train"):
                pstats = policy_gradient(policy, tokenizer, items, [r - b for r, b in zip(s, leave_one_out(s, cfg.k))], lr=cfg.lr,
                                         epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed + i,
                                         reference=reference, kl_weight=cfg.kl_weight, clip=cfg.clip)
            write_jsonl(it_dir / "annotations.jsonl", [
                {"task_id": smp.task_id, "completion": smp.completion, "status": o.status.value, "lines": code_lines(smp.completion),
                 "labels": lab, "verdicts": [CORRECT if x else -CORRECT for x in v], "score": cs, "true_labels": t,
                 "true_score": ts, "verdict_votes": vv, "program_probability": q,
                 **({"counted": c} if cfg.score_lines != "all" else {})}
                for smp, o, lab, v, cs, t, ts, c, vv, q in zip(run_.samples, run_.outcomes, labels, judged, crowd_s, truth, true_s,
                                                                counted, votes, program_p)])
            (it_dir / "reliabilities.json").write_text(json.dumps(aggregator.state, indent=2) + "\n")
            loop.save_model(i, policy, tokenizer)
            with clock("validate"):
                held_out = validate(i)
            lines = [(x, y == CORRECT) for v, t in zip(judged, truth) for x, y in zip(v, t)]
            row = {"iteration": i, "train_pass_rate": sum(passed) / len(passed), "mean_score": sum(s) / len(s),
                   "line_accuracy": sum(x == y for x, y in lines) / max(1, len(lines)),
                   "score_error": sum(abs(a - b) for a, b in zip(crowd_lines, true_s)) / max(1, len(true_s)),
                   "verdict_accuracy": sum((q > cfg.tau) == bool(x) for q, x in zip(program_p, passed)) / len(passed),
                   "verdict_prior": prior,
                   "reliability_error": _reliability_error(aggregator.state.get("reliability", {}), reliability),
                   "loss": pstats.final_loss, "mean_token_weight": pstats.mean_weight, "kl": pstats.kl,
                   "clipped": pstats.clipped}
            loop.finish(i, {**row, **held_out, **clock.row}, on_iteration)
    plot_metrics(loop.metrics, "iteration", ["pass_at_1", "pass_at_1_plus", "compile_rate", "line_accuracy"],
                 loop.out / "metrics.png", title=f"cRLHF (reward {cfg.reward}, reliabilities {cfg.reliabilities}) from {cfg.model}")
    return loop.metrics


def _reliability_error(estimate: Mapping[str, float], true: Mapping[str, float]) -> float:
    """Mean |estimated p - true p| over the annotators (how well the crowd was read)."""
    return sum(abs(estimate.get(a, 0.5) - p) for a, p in true.items()) / max(1, len(true))


# --- training on collected scores ----------------------------------------------------------------


@dataclass
class ScoresConfig(LoopSettings):
    """Policy gradient on a fixed file of scored programs (``codeloop annotate scores``); the shared
    settings (validation, seed): LoopSettings."""

    scores: str = ""
    """JSONL of `codeloop annotate scores`: task_id, completion and score in [0, 1] per line (other keys are ignored)."""
    model: str = "seed-python"
    """The policy to train: the model that wrote the scored programs (the clip's ratios are taken against it)."""
    tasks: str = "synthetic-python:train"
    """The task set the programs answer: their prompts, as the model saw them."""
    iterations: int = 4
    """Passes over the scored programs, one epoch each, with validation after each."""
    baseline: str = "task"
    """Subtracted from s: "task" (the mean of the task's other programs; the mean of all where a task has one), "mean" (of all) or "none"."""
    clip: float = 0.2
    """ε of the clipped surrogate against the model that wrote the programs (PPO's; 0: plain REINFORCE)."""
    lr: float = 1e-5
    """Policy learning rate."""
    kl_weight: float = 0.0
    """β of a KL penalty against the starting model (0: none)."""
    batch_size: int = 16
    """Programs per step."""
    max_new_tokens: int = 160
    """Longest validation program."""
    val_temperature: float = 0.8
    """Validation sampling temperature."""
    out_dir: str = "runs/crlhf-scores"
    """Models, the training rows with their advantages (train.jsonl), metrics.jsonl, metrics.png."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choices(baseline=(self.baseline, SCORE_BASELINES))
        if self.trainer != "plain":
            raise ValueError(f"trainer {self.trainer!r}: crlhf-scores trains with its own policy-gradient loop; use trainer plain")
        if not self.scores:
            raise ValueError("scores: give the JSONL that `codeloop annotate scores --out` wrote (--set scores=PATH)")
        check_clip(self.clip)


def read_scores(path: str | Path, tasks: Mapping[str, object]) -> list[tuple[str, str, float]]:
    """(task_id, completion, score) per sample: a line with ``copies`` n (the store's count of a program
    sampled n times) gives n; a DataError names file, line and field."""
    rows = []
    for line, obj in read_jsonl(path):
        task_id = str(require(obj, "task_id", (str, int), path, line))
        completion = require(obj, "completion", str, path, line)
        score = require(obj, "score", (int, float), path, line)
        copies = require(obj, "copies", int, path, line, optional=True)
        if task_id not in tasks:
            raise DataError(f"{where(path, line, 'task_id')}: unknown task {task_id!r} (is tasks the set the programs were sampled for?)")
        if not 0.0 <= score <= 1.0:
            raise DataError(f"{where(path, line, 'score')}: a score is a share of lines, in [0, 1], got {score}")
        if copies is not None and copies < 1:
            raise DataError(f"{where(path, line, 'copies')}: a count of samples, at least 1, got {copies}")
        rows += [(task_id, completion, float(score))] * (copies or 1)
    if not rows:
        raise DataError(f"{path}: no scored programs")
    return rows


def advantages(task_ids: Sequence[str], s: Sequence[float], baseline: str) -> list[float]:
    """s minus the baseline (``ScoresConfig.baseline``)."""
    mean = sum(s) / len(s) if s else 0.0
    if baseline == "none":
        return list(s)
    if baseline == "mean":
        return [v - mean for v in s]
    total: dict[str, float] = {}
    count: dict[str, int] = {}
    for t, v in zip(task_ids, s):
        total[t], count[t] = total.get(t, 0.0) + v, count.get(t, 0) + 1
    return [v - ((total[t] - v) / (count[t] - 1) if count[t] > 1 else mean) for t, v in zip(task_ids, s)]


def run_scores(cfg: ScoresConfig, on_iteration: Callable[[dict], None] | None = None) -> list[dict]:
    """Train ``model`` on the scored programs: per iteration one clipped policy-gradient epoch with
    advantage s - b, then validation on the held-out tasks (iteration 0: the model as it came)."""
    tasks = load_tasks(cfg.tasks)
    rows = read_scores(cfg.scores, tasks)  # bad input is refused before anything is written
    val_tasks, plus = validation_tasks(cfg)
    digest = hashlib.sha256(Path(cfg.scores).read_bytes()).hexdigest()
    loop = Loop.open(cfg.out_dir, cfg.iterations, {**asdict(cfg), "scores_sha256": digest})
    start, policy, tokenizer = loop.policies(cfg.model, refresh_reference=False)  # start: the model that wrote them
    sampler = PolicySampler(cfg.backend, tokenizer, cfg.vllm_memory)
    adv = advantages([t for t, _, _ in rows], [v for _, _, v in rows], cfg.baseline)
    items = [(tasks[t].prompt, c) for t, c, _ in rows]
    old = behaviour_logprobs(start, tokenizer, items, cfg.batch_size) if cfg.clip else None  # once: start never changes
    write_jsonl(loop.out / "train.jsonl", [{"task_id": t, "completion": c, "score": v, "advantage": a}
                                          for (t, c, v), a in zip(rows, adv)])

    with loop_sandbox(cfg.ray, cfg.out_dir, tasks.values(), hide=(cfg.scores,)) as sandbox:
        def validate(i: int) -> dict:
            run_ = rollout(sampler(policy, loop.checkpoint(i, cfg.model)), val_tasks, sandbox, cfg.val_n, cfg.val_temperature,
                           cfg.max_new_tokens, cfg.seed)
            return {**held_out_metrics(run_), **plus_metrics(run_, plus, sandbox)}

        if not loop.metrics:
            loop.record({"iteration": 0, "samples": len(rows), "programs": len(set(rows)), "mean_score": sum(v for *_, v in rows) / len(rows),
                         **validate(0)}, on_iteration)
        for i in loop.pending():
            loop.iteration_dir(i)
            clock = Clock()
            sampler.release()  # the engine's GPU memory to the update (vllm backend)
            with clock("train"):
                stats = policy_gradient(policy, tokenizer, items, adv, lr=cfg.lr, epochs=1.0, batch_size=cfg.batch_size,
                                        seed=cfg.seed + i, reference=start if cfg.kl_weight else None,
                                        kl_weight=cfg.kl_weight, clip=cfg.clip, old_logprobs=old)
            loop.save_model(i, policy, tokenizer)
            with clock("validate"):
                held_out = validate(i)
            loop.finish(i, {"iteration": i, "loss": stats.final_loss, "clipped": stats.clipped, "kl": stats.kl,
                            **held_out, **clock.row}, on_iteration)
    plot_metrics(loop.metrics, "iteration", ["pass_at_1", "pass_at_1_plus", "compile_rate"], loop.out / "metrics.png",
                 title=f"cRLHF on {Path(cfg.scores).name} from {cfg.model}")
    return loop.metrics
