"""RL with unit-test rewards and a critic, after CodeRL (paper: rl-critic-code-generation; DESIGN.md 1.3).

Per iteration: take the next batch of tasks; sample k programs per task from the current policy; run
them against the tasks' tests in the sandbox; each program's return r(W) is the graded reward (+1
passes, -0.3 fails a test, -0.6 runtime error, -1 compile error), plus, where weighted in, its AST and
data-flow match against the task's reference solution. The critic (a copy of the starting model with
a four-class head) is trained on these programs' outcomes, then gives every program token its value
q̂(w_t): the probability of the program's actual outcome at that token. One REINFORCE update follows
(``codeloop.train.pg``) with a baseline b, the leave-one-out mean return of the task's other samples
or the return of the greedy program (CodeRL's), and the critic entering as

- ``critic: coderl``: token weights (r(W) - b) · q̂(w_t) (CodeRL's gradient),
- ``critic: additive``: the paper's return r(W) + λ Σ_t q̂(w_t), less the same quantity's baseline,
- ``critic: none``: plain REINFORCE, (r(W) - b) on every token.

Validation on held-out tasks after every iteration (iteration 0: the starting model), plus the critic
as a ranker: pass@1 of the one sample per task the critic rates likeliest to pass. A killed run
restarts after its last finished iteration.

At inference the critic ranks programs without running them (:func:`critic_scores`, ``codeloop rank``):
CodeRL's use of it to pick among samples.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from codeloop.data import load_tasks, write_jsonl
from codeloop.eval.compare import Comparison, compare
from codeloop.eval.plots import plot_metrics
from codeloop.feedback.match import ast_match, dataflow_match
from codeloop.feedback.tests import graded
from codeloop.models.hf import locate
from codeloop.recipes.common import (Clock, Loop, LoopSettings, PolicySampler, Rollout, check_choices, check_ranges,
                                     held_out_metrics, loop_sandbox, plus_metrics, refuse_python_only, rollout,
                                     validation_tasks)
from codeloop.sandbox import Runner
from codeloop.train.critic import CLASSES, OUTCOME_CLASS, PASSED, Critic, class_probabilities, token_rewards, train_critic
from codeloop.train.pg import check_clip, policy_gradient
from codeloop.types import Sample, Status, Task

BASELINES = ("mean", "greedy", "none")
CRITIC_USES = ("coderl", "additive", "none")


@dataclass
class CodeRLConfig(LoopSettings):
    """CodeRL's settings; the shared ones (sampling backend, validation, seed): LoopSettings."""

    model: str = "seed-python"
    """The policy to train (hf backend); the critic starts as a copy of it."""
    tasks: str = "synthetic-python:train"
    """Training tasks (their tests give the rewards; their reference solutions the AST and data-flow matches)."""
    n_instructions: int = 2000
    """The first N tasks of ``tasks``."""
    fraction: float = 0.2
    """Each iteration takes the next floor(fraction·N) tasks, in order."""
    iterations: int = 6
    """Rounds of sample -> test -> critic -> policy gradient."""
    k: int = 4
    """Programs sampled per task."""
    temperature: float = 0.8
    """Sampling temperature of the programs."""
    max_new_tokens: int = 160
    """Longest program."""
    baseline: str = "mean"
    """b in r(W) - b: "mean" (the other k-1 samples' mean return), "greedy" (the greedy program's: CodeRL) or "none"."""
    critic: str = "coderl"
    """How the critic's q̂(w_t) enters: "coderl" ((r - b)·q̂ per token), "additive" (r + λΣq̂, the paper) or "none"."""
    critic_weight: float = 1.0
    """λ of the additive form."""
    critic_lr: float = 1e-4
    """Critic learning rate."""
    critic_epochs: float = 2.0
    """Critic passes over each iteration's programs (and the replayed ones)."""
    critic_replay: int = 0
    """The critic trains also on the programs of this many earlier iterations, read back from their
    ``samples.jsonl`` (0: on the iteration's own programs only, as CodeRL's critic sees one fixed set)."""
    ast_weight: float = 0.0
    """Weight of the AST match against the reference solution in r(W) (0: left out)."""
    dfg_weight: float = 0.0
    """Weight of the data-flow match against the reference solution in r(W) (0: left out)."""
    lr: float = 1e-5
    """Policy learning rate."""
    kl_weight: float = 0.0
    """β of a KL penalty against the starting model (per-token k3 estimate; 0: none, as in CodeRL)."""
    clip: float = 0.0
    """ε of PPO's clipped surrogate against the policy that sampled the iteration's programs (0: plain REINFORCE)."""
    length_normalise: bool = False
    """Divide each program's Σ_t w_t log p(w_t) by its length (GRPO's mean) instead of the paper's plain sum."""
    epochs: float = 1.0
    """Policy passes over each iteration's programs."""
    batch_size: int = 16
    """Programs per step (policy and critic)."""
    val_temperature: float = 0.8
    """Validation sampling temperature (as the other loops, so they compare)."""
    out_dir: str = "runs/coderl"
    """Models, critic, samples with their rewards, metrics.jsonl, metrics.png."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choices(baseline=(self.baseline, BASELINES), critic=(self.critic, CRITIC_USES))
        check_ranges(self, critic_weight=">= 0", critic_lr="> 0", critic_epochs="> 0", critic_replay=">= 0",
                     ast_weight=">= 0", dfg_weight=">= 0")
        check_clip(self.clip)
        if self.trainer != "plain":
            raise ValueError(f"trainer {self.trainer!r}: the coderl loop trains with its own policy-gradient loop "
                             "(per-token weights, which no TRL trainer takes); use trainer plain")


def returns(run_: Rollout, ast_weight: float, dfg_weight: float) -> list[float]:
    """r(W) per sample: the graded test reward plus the weighted matches against the reference solution."""
    out = []
    for task, texts, outcomes in run_.groups():
        reference = task.prompt + (task.canonical_solution or "")
        for text, outcome in zip(texts, outcomes):
            r = graded(outcome).score
            if task.canonical_solution and ast_weight:
                r += ast_weight * ast_match(task.prompt + text, reference)
            if task.canonical_solution and dfg_weight:
                r += dfg_weight * dataflow_match(task.prompt + text, reference)
            out.append(r)
    return out


def leave_one_out(values: list[float], k: int) -> list[float]:
    """b_i = mean of the other samples of the same task (groups of k in order; 0 when k is 1)."""
    out = []
    for g in range(0, len(values), k):
        group = values[g:g + k]
        out += [(sum(group) - v) / (len(group) - 1) if len(group) > 1 else 0.0 for v in group]
    return out


def reinforce_weights(r: list[float], q: list[list[float]], k: int, baseline: str, critic: str, critic_weight: float = 1.0,
                      greedy: list[float] | None = None) -> list[Any]:
    """Per sample (k per task, in order): one weight for all its tokens, or (critic "coderl") one per token.

    Return R = r (critic "coderl", "none") or r + λ Σ_t q̂_t ("additive"); advantage A = R - b with b the
    leave-one-out mean of R over the task's samples ("mean"), ``greedy[i]`` (the return of sample i's
    task's greedy program, "greedy") or 0 ("none"); weights A, or A · q̂_t per token for "coderl"."""
    total = [ri + critic_weight * sum(qi) for ri, qi in zip(r, q)] if critic == "additive" else list(r)
    b = {"mean": lambda: leave_one_out(total, k), "greedy": lambda: list(greedy or []),
         "none": lambda: [0.0] * len(total)}[baseline]()
    if len(b) != len(total):
        raise ValueError(f"baseline {baseline!r}: {len(b)} values for {len(total)} samples")
    advantage = [t - bi for t, bi in zip(total, b)]
    if critic == "coderl":
        return [[a * qt for qt in qi] for a, qi in zip(advantage, q)]
    return advantage


def run(cfg: CodeRLConfig, on_iteration: Callable[[dict], None] | None = None) -> list[dict]:
    task_map = load_tasks(cfg.tasks)
    tasks = list(task_map.values())[: cfg.n_instructions]
    refuse_python_only(cfg.tasks, tasks, {f"{name} {weight}": "set it to 0 (the match parses Python)"
                                          for name, weight in (("ast_weight", cfg.ast_weight), ("dfg_weight", cfg.dfg_weight)) if weight})
    val_tasks, plus = validation_tasks(cfg)  # bad task sources are refused before anything is written
    loop = Loop.open(cfg.out_dir, cfg.iterations, asdict(cfg))
    size = max(1, math.floor(cfg.fraction * len(tasks)))
    start_model, policy, tokenizer = loop.policies(cfg.model, refresh_reference=False)
    critic = Critic.load(loop.out / f"iter_{loop.start}" / "critic").to(str(policy.device)) if loop.start \
        else Critic.from_model(start_model, seed=cfg.seed)
    reference = start_model if cfg.kl_weight else None
    del start_model
    sampler = PolicySampler(cfg.backend, tokenizer, cfg.vllm_memory)

    def validate(i: int, with_critic: bool) -> dict:
        run_ = rollout(sampler(policy, loop.checkpoint(i, cfg.model)), val_tasks, sandbox, cfg.val_n, cfg.val_temperature,
                       cfg.max_new_tokens, cfg.seed)
        ranked = critic_on_held_out(critic, tokenizer, run_) if with_critic else {}
        return {**held_out_metrics(run_), **plus_metrics(run_, plus, sandbox), **ranked}

    with loop_sandbox(cfg.ray, cfg.out_dir, [*tasks, *val_tasks]) as sandbox:
        if not loop.metrics:
            loop.record({"iteration": 0, **validate(0, with_critic=False)}, on_iteration)
        for i in loop.pending():
            it_dir = loop.iteration_dir(i)
            batch = [tasks[j % len(tasks)] for j in range((i - 1) * size, i * size)]
            clock = Clock()
            generator = sampler(policy, loop.checkpoint(i - 1, cfg.model))
            run_ = rollout(generator, batch, sandbox, cfg.k, cfg.temperature, cfg.max_new_tokens, cfg.seed * 1000 + i, clock)
            r = returns(run_, cfg.ast_weight, cfg.dfg_weight)
            items = [(s_task.prompt, text) for s_task, texts, _ in run_.groups() for text in texts]
            known = [j for j, o in enumerate(run_.outcomes) if o.status in OUTCOME_CLASS]  # infrastructure errors: no class, no update
            labels = [OUTCOME_CLASS.get(o.status, 1) for o in run_.outcomes]
            replayed = replay(loop.out, i, cfg.critic_replay, task_map)
            with clock("critic"):
                cstats = train_critic(critic, tokenizer, [items[j] for j in known] + [x for x, _ in replayed],
                                      [labels[j] for j in known] + [u for _, u in replayed],
                                      lr=cfg.critic_lr, epochs=cfg.critic_epochs, batch_size=cfg.batch_size, seed=cfg.seed + i)
                q = token_rewards(critic, tokenizer, items, labels)
            greedy = _greedy_returns(cfg, generator, batch, sandbox, critic, tokenizer, clock) if cfg.baseline == "greedy" else []
            weights = reinforce_weights(r, q, cfg.k, cfg.baseline, cfg.critic, cfg.critic_weight,
                                        [greedy[j // cfg.k] for j in range(len(items))] if greedy else None)
            sampler.release()  # the engine's GPU memory to the update (vllm backend)
            with clock("train"):
                pstats = policy_gradient(policy, tokenizer, [items[j] for j in known], [weights[j] for j in known], lr=cfg.lr,
                                         epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed + i,
                                         reference=reference, kl_weight=cfg.kl_weight, length_normalise=cfg.length_normalise,
                                         clip=cfg.clip)
            write_jsonl(it_dir / "samples.jsonl", [
                {"task_id": s.task_id, "completion": s.completion, "status": o.status.value, "return": ret}
                for s, o, ret in zip(run_.samples, run_.outcomes, r)])
            loop.save_model(i, policy, tokenizer)
            critic.save(it_dir / "critic", tokenizer)
            with clock("validate"):
                held_out = validate(i, with_critic=True)
            row = {"iteration": i, "train_pass_rate": sum(o.passed for o in run_.outcomes) / len(run_.outcomes),
                   "mean_return": sum(r) / len(r), "critic_loss": cstats.final_loss, "critic_train_accuracy": cstats.accuracy,
                   "critic_examples": cstats.examples, "loss": pstats.final_loss, "mean_token_weight": pstats.mean_weight,
                   "kl": pstats.kl, "clipped": pstats.clipped}
            loop.finish(i, {**row, **held_out, **clock.row}, on_iteration)
    plot_metrics(loop.metrics, "iteration", ["pass_at_1", "ranked_pass_at_1", "pass_at_1_plus", "compile_rate"],
                 loop.out / "metrics.png", title=f"CodeRL (critic {cfg.critic}, baseline {cfg.baseline}) from {cfg.model}")
    return loop.metrics


def replay(out: Path, i: int, iterations: int, tasks: Mapping[str, Task]) -> list[tuple[tuple[str, str], int]]:
    """((prompt, program), outcome class) for every program of iterations i-``iterations`` .. i-1 that has
    a class, read from their ``samples.jsonl`` (so a resumed run replays exactly what it would have)."""
    found = []
    for j in range(max(1, i - iterations), i):
        for line in (out / f"iter_{j}" / "samples.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            status = Status(row["status"])
            if status in OUTCOME_CLASS:
                found.append(((tasks[row["task_id"]].prompt, row["completion"]), OUTCOME_CLASS[status]))
    return found


def _greedy_returns(cfg: CodeRLConfig, generator: Any, batch: list, sandbox: Runner, critic: Critic, tokenizer: Any,
                    clock: Clock) -> list[float]:
    """CodeRL's baseline: the return of each task's greedy program (with its critic sum, for the additive form)."""
    with clock("greedy"):
        run_ = rollout(generator, batch, sandbox, 1, 0.0, cfg.max_new_tokens, cfg.seed)
    r = returns(run_, cfg.ast_weight, cfg.dfg_weight)
    if cfg.critic != "additive":
        return r
    items = [(t.prompt, texts[0]) for t, texts, _ in run_.groups()]
    labels = [OUTCOME_CLASS.get(o.status, 1) for o in run_.outcomes]
    return [ri + cfg.critic_weight * sum(qi) for ri, qi in zip(r, token_rewards(critic, tokenizer, items, labels))]


def critic_on_held_out(critic: Critic, tokenizer: Any, run_: Rollout) -> dict[str, float]:
    """The critic on held-out samples it never trained on.

    ``critic_accuracy``: its most likely class is the sample's outcome class (``majority_accuracy``, always
    naming the commonest class, is the bar to beat). ``ranked_pass_at_1``: per task, the sample it gives
    the highest P(PassedTest); the fraction of tasks where that one passes (pass@1 is the same for a pick
    at random; ``pass_at_n``, the fraction of tasks with any passing sample, is a perfect ranker's)."""
    items = [(task.prompt, text) for task, texts, _ in run_.groups() for text in texts]
    probs = class_probabilities(critic, tokenizer, items)
    p, predicted = probs[:, PASSED].tolist(), probs.argmax(-1).tolist()
    known = [(c, OUTCOME_CLASS[o.status]) for c, o in zip(predicted, run_.outcomes) if o.status in OUTCOME_CLASS]
    hits = sum(run_.outcomes[i].passed for i in best_per_task(run_.samples, p, 1))
    commonest = max(Counter(u for _, u in known).values(), default=0)
    return {"critic_accuracy": sum(c == u for c, u in known) / max(1, len(known)),
            "majority_accuracy": commonest / max(1, len(known)), "ranked_pass_at_1": hits / len(run_.tasks),
            "pass_at_n": sum(any(o.passed for o in outcomes) for _, _, outcomes in run_.groups()) / len(run_.tasks)}


# ---- the critic as a ranker, at inference ----------------------------------------------------------

def critic_tokenizer(critic_dir: Path, name: str | None = None) -> tuple[Any, str]:
    """The tokenizer a critic reads programs with, and where it came from: ``name`` when given; else the
    critic's folder (saved there since the loop saves it); else the starting model in the run's
    ``config.json`` (RUN/iter_N/critic → RUN/config.json), whose copy the critic is."""
    from transformers import AutoTokenizer

    if name is None and (critic_dir / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(critic_dir), str(critic_dir)
    if name is None:
        run_config = critic_dir.resolve().parent.parent / "config.json"
        try:
            name = json.loads(run_config.read_text())["model"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ValueError(f"{critic_dir} holds no tokenizer and {run_config} names no starting model: give the "
                             "model the run started from (--tokenizer seed-python)") from None
    return AutoTokenizer.from_pretrained(locate(str(name))), str(name)


def critic_scores(critic: Critic, tokenizer: Any, tasks: Mapping[str, Task], samples: Sequence[Sample],
                  batch_size: int = 64, on_batch: Callable[[int], None] | None = None) -> list[list[float]]:
    """The critic's class probabilities (``CLASSES`` order) for each sample, from its task's prompt and
    its completion alone: nothing runs."""
    out: list[list[float]] = []
    for b in range(0, len(samples), batch_size):
        chunk = samples[b:b + batch_size]
        probs = class_probabilities(critic, tokenizer, [(tasks[s.task_id].prompt, s.completion) for s in chunk], batch_size)
        out += probs.tolist()
        if on_batch is not None:
            on_batch(len(chunk))
    return out


def best_per_task(samples: Sequence[Sample], p_passed: Sequence[float], keep: int) -> list[int]:
    """Indices of the ``keep`` samples of each task with the highest P(passed) (ties: the earlier one),
    in the samples' order."""
    by_task: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_task.setdefault(s.task_id, []).append(i)
    kept = {i for rows in by_task.values() for i in sorted(rows, key=lambda i: (-p_passed[i], i))[:keep]}
    return sorted(kept)


@dataclass(frozen=True)
class Ranking:
    """How a critic's picks fare on samples with verdicts (see :func:`ranking_report`)."""

    comparison: Comparison
    """The critic's pick per task (``after``) against a random pick (``before``: pass@1), paired over tasks."""
    perfect: float
    """A perfect ranker's pass rate: the share of tasks where any sample passes."""
    compiling: float | None
    """A random pick among the task's samples that compile (all of them where none does): what a free
    compiler check alone would give. None where the rows carry no ``status``."""


def ranking_report(samples: Sequence[Sample], p_passed: Sequence[float]) -> Ranking | None:
    """Where every sample carries ``passed`` (results rows of ``codeloop eval``): the critic's pick per
    task against a random pick, paired over tasks as ``codeloop compare`` pairs two evaluations, and
    against a perfect ranker and a pick among the programs that compile. None without verdicts."""
    if not samples or any(type(s.extra.get("passed")) is not bool for s in samples):
        return None
    every: dict[str, list[Sample]] = {}
    for s in samples:
        every.setdefault(s.task_id, []).append(s)
    passes = {t: [s.extra["passed"] for s in v] for t, v in every.items()}
    picked = {samples[i].task_id: [samples[i].extra["passed"]] for i in best_per_task(samples, p_passed, 1)}
    compiling = None
    if all("status" in s.extra for s in samples):
        rates = []
        for v in every.values():
            pool = [s for s in v if s.extra["status"] != "compile_error"] or v
            rates.append(sum(s.extra["passed"] for s in pool) / len(pool))
        compiling = sum(rates) / len(rates)
    return Ranking(compare(passes, picked), sum(any(v) for v in passes.values()) / len(passes), compiling)


def ranked_row(sample: Sample, probs: Sequence[float]) -> dict[str, Any]:
    """The sample's own fields, then the critic's ``critic_p_passed`` and its likeliest ``critic_class``."""
    best = max(range(len(CLASSES)), key=lambda c: probs[c])
    return {"task_id": sample.task_id, "completion": sample.completion, **sample.extra,
            "critic_p_passed": round(probs[PASSED], 6), "critic_class": CLASSES[best]}
