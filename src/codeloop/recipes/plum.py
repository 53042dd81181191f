"""PLUM: preference learning with (generated) test cases (paper: plum-preference-learning-test-cases).

Per iteration (the paper runs one; more iterations re-sample from the improved policy): take the next
batch of instructions; give each tests, either the generator's self-consistent suites
(``codeloop.feedback.testgen``) or, without a generator, the task's own tests; sample K solutions at
T=1; a static check and execution drop code that does not run; solutions passing every test are
chosen, those failing at least one rejected; instructions with no chosen solution are dropped; train
with KTO (unpaired; the paper's best), DPO on pairs balanced per instruction, or (``objective: sft``)
fine-tuning on the chosen solutions only, the rejection-sampling baseline. ``negatives: unrunnable`` is
the paper's ablation (rejected = only code that does not run). Validation on held-out tasks after every
iteration; iteration 0 is the baseline. A killed run restarts after its last finished iteration.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from codeloop.data import load_tasks, write_jsonl
from codeloop.data.preferences import NEGATIVES, KTO_SCHEMA, balanced_pairs, kto_rows, plum_split, save_pairs, save_rows
from codeloop.eval.plots import plot_metrics
from codeloop.feedback.compiler import compiles, mypy_check
from codeloop.feedback.testgen import TestGenerator
from codeloop.models import engine_settings, load_generator
from codeloop.recipes.common import (Clock, Loop, LoopSettings, PolicySampler, check_choices, check_ranges,
                                     held_out_metrics, loop_sandbox, plus_metrics, refuse_python_only, rollout,
                                     use_bf16, validation_tasks)
from codeloop.sandbox import Runner
from codeloop.train.dpo import dpo
from codeloop.train.kto import kto
from codeloop.train.sft import sft
from codeloop.types import Task

OBJECTIVES = ("kto", "dpo", "sft")
STATIC_CHECKS = ("compile", "mypy")


@dataclass
class PLUMConfig(LoopSettings):
    """PLUM's settings; the shared ones (sampling backend, trainer, validation, seed): LoopSettings."""

    model: str = "seed-python"
    """The policy to train (hf backend); also the frozen reference of KTO and DPO."""
    tasks: str = "synthetic-python:train"
    """Where the instructions come from (the tasks' reference solutions are never used)."""
    n_instructions: int = 2000
    """The first N tasks of ``tasks``."""
    fraction: float = 0.2
    """Each iteration takes the next floor(fraction·N) instructions, in order."""
    iterations: int = 1
    """Rounds of sample -> test -> train (the paper: 1)."""
    k: int = 20
    """Solutions sampled per instruction (the paper: 20)."""
    temperature: float = 1.0
    """Sampling temperature for the solutions (the paper: 1.0)."""
    max_new_tokens: int = 160
    """Longest solution."""
    test_generator: str = ""
    """Model that writes tests ([Analysis]/[Solution]/[Start Code]/[Test Code]); empty: the tasks' own tests."""
    test_generator_backend: str = "openai"
    """Backend of the test generator: hf, vllm, openai (a server's /completions) or openai-chat (its
    /chat/completions: OpenAI's current models)."""
    test_generator_temperature: float = 0.7
    """Temperature the test generator is asked at; a reasoning model (OpenAI's o-series, GPT-5) takes only 1."""
    test_generator_max_new_tokens: int = 2048
    """Longest answer of the test generator (a reasoning model's limit counts its reasoning too)."""
    test_answers: int = 3
    """Answers asked of the test generator per instruction (the paper: 3, 6 for Evol-Instruct)."""
    static_check: str = "compile"
    """"compile" (the task language's compiler: Python's, or codeloop's ST checker) or "mypy" (the
    paper's static check, Python only; needs mypy installed)."""
    objective: str = "kto"
    """"kto", "dpo" (pairs balanced per instruction) or "sft" (chosen only: rejection sampling)."""
    negatives: str = "failing"
    """"failing" (ran, failed a test: the paper) or "unrunnable" (the ablation)."""
    beta: float = 0.1
    """KTO/DPO β."""
    lr: float = 5e-5
    """Learning rate of each update."""
    epochs: float = 2.0
    """Passes over each iteration's data."""
    batch_size: int = 16
    """Examples (KTO, SFT) or pairs (DPO) per step."""
    nll_weight: float = 0.0
    """NLL term on the chosen solutions for KTO and DPO (0: the paper's plain objectives)."""
    desirable_weight: float = 1.0
    """KTO λ_D."""
    undesirable_weight: float = 1.0
    """KTO λ_U."""
    refresh_reference: bool = False
    """Replace the reference by the current policy after every iteration."""
    val_temperature: float = 0.8
    """Validation sampling temperature (0.8: the same as the online-DPO loop, so the two compare)."""
    out_dir: str = "runs/plum"
    """Models, data, metrics.jsonl, metrics.png."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choices(objective=(self.objective, OBJECTIVES), negatives=(self.negatives, NEGATIVES),
                      static_check=(self.static_check, STATIC_CHECKS))
        check_ranges(self, test_answers=">= 1", test_generator_temperature=">= 0", test_generator_max_new_tokens=">= 1", beta="> 0", desirable_weight=">= 0", undesirable_weight=">= 0")
        if self.launch and self.objective == "sft":
            raise ValueError(f"launch {self.launch!r}: objective sft trains with the plain SFT loop in the loop's own "
                             "process; launch applies to objectives kto and dpo")


def _tests_for(batch: list[Task], generator: Callable[[], TestGenerator] | None, sandbox: Runner,
               it_dir: Path) -> tuple[list[Task], dict]:
    """The batch with generated, self-consistent tests (kept in the iteration folder), or as it is
    (``generator``: None, no test generator; else gives the run's one, loaded at its first call)."""
    if generator is None:
        return batch, {}
    tasks, stats = generator().tasks_with_tests(batch, sandbox)
    write_jsonl(it_dir / "generated_tests.jsonl", [{"task_id": t.task_id, "entry_point": t.entry_point, "test": t.test}
                                                  for t in tasks])
    return tasks, {f"testgen_{k}": v for k, v in asdict(stats).items()}


def _static_ok(programs: list[tuple[str, str]], check: str) -> list[bool]:
    """Each (program, language)'s static check: mypy, or the language's own compiler."""
    verdicts = mypy_check([p for p, _ in programs]) if check == "mypy" else [compiles(p, lang) for p, lang in programs]
    return [bool(f.score) for f in verdicts]


def run(cfg: PLUMConfig, on_iteration: Callable[[dict], None] | None = None) -> list[dict]:
    instructions = list(load_tasks(cfg.tasks).values())[: cfg.n_instructions]
    refuse_python_only(cfg.tasks, instructions, {
        **({"static_check mypy": "use static_check compile (the task language's own compiler)"} if cfg.static_check == "mypy" else {}),
        **({"test_generator": "leave it empty (the tasks' own tests judge)"} if cfg.test_generator else {})})
    val_tasks, plus = validation_tasks(cfg)  # bad task sources are refused before anything is written
    loop = Loop.open(cfg.out_dir, cfg.iterations, asdict(cfg))
    size = max(1, math.floor(cfg.fraction * len(instructions)))
    if not cfg.test_generator:
        print("judge: no test generator (and no LLM judge) configured, so each task's own tests judge the solutions")
    reference, policy, tokenizer = loop.policies(cfg.model, cfg.refresh_reference, lora=bool(cfg.lora_r))
    sampler = PolicySampler(cfg.backend, tokenizer, cfg.vllm_memory)

    @functools.cache
    def test_generator() -> TestGenerator:  # one for the run (a vLLM engine loads once), at the first iteration that asks
        model = load_generator(cfg.test_generator_backend, cfg.test_generator,
                               **engine_settings(cfg.test_generator_backend, cfg.vllm_memory))
        return TestGenerator(model, n=cfg.test_answers, temperature=cfg.test_generator_temperature,
                             max_new_tokens=cfg.test_generator_max_new_tokens, seed=cfg.seed)

    def validate(i: int) -> dict:
        run_ = rollout(sampler(policy, loop.checkpoint(i, cfg.model)), val_tasks, sandbox, cfg.val_n, cfg.val_temperature,
                       cfg.max_new_tokens, cfg.seed)
        return {**held_out_metrics(run_), **plus_metrics(run_, plus, sandbox)}

    with loop_sandbox(cfg.ray, cfg.out_dir, [*instructions, *val_tasks]) as sandbox:
        if not loop.metrics:
            loop.record({"iteration": 0, **validate(0)}, on_iteration)
        for i in loop.pending():
            it_dir = loop.iteration_dir(i)
            batch = [instructions[j % len(instructions)] for j in range((i - 1) * size, i * size)]
            clock = Clock()
            with clock("tests"):
                tasks, testgen = _tests_for(batch, test_generator if cfg.test_generator else None, sandbox, it_dir)
            run_ = rollout(sampler(policy, loop.checkpoint(i - 1, cfg.model)), tasks, sandbox, cfg.k, cfg.temperature,
                           cfg.max_new_tokens, cfg.seed * 1000 + i, clock)
            static = _static_ok([(t.prompt + c.text, t.language) for t, row in zip(run_.tasks, run_.rows) for c in row],
                                cfg.static_check)
            kto_data, pairs, chosen_only, kept, n_chosen, n_rejected, at = [], [], [], 0, 0, 0, 0
            for j, (task, texts, outcomes) in enumerate(run_.groups()):
                chosen, rejected = plum_split(texts, [o.status for o in outcomes], static[at:at + len(texts)], cfg.negatives)
                at += len(texts)
                if not chosen:  # the paper drops instructions without a correct solution
                    continue
                kept, n_chosen, n_rejected = kept + 1, n_chosen + len(chosen), n_rejected + len(rejected)
                kto_data += kto_rows(task.prompt, chosen + rejected, [True] * len(chosen) + [False] * len(rejected))
                pairs += balanced_pairs(task.prompt, chosen, rejected, seed=cfg.seed * 1000 + i * 7919 + j)
                chosen_only += [(task.prompt, c) for c in chosen]
            passed = [o.passed for o in run_.outcomes]  # none where no instruction kept a generated test suite
            row = {"iteration": i, "train_pass_rate": sum(passed) / len(passed) if passed else None,
                   "instructions_kept": kept, "chosen": n_chosen, "rejected": n_rejected, **testgen}
            sampler.release()  # the engine's GPU memory to the update (vllm backend)
            with clock("train"):
                policy, stats = _train(cfg, i, policy, reference, tokenizer, kto_data, pairs, chosen_only, it_dir)
            if cfg.refresh_reference and not cfg.lora_r:
                reference = copy.deepcopy(policy)
            loop.save_model(i, policy, tokenizer)
            with clock("validate"):
                held_out = validate(i)
            loop.finish(i, {**row, **stats, **held_out, **clock.row}, on_iteration)
    plot_metrics(loop.metrics, "iteration", ["pass_at_1", "pass_at_1_plus", "compile_rate"], loop.out / "metrics.png",
                 title=f"PLUM-{cfg.objective.upper()}{' + NLL' if cfg.nll_weight and cfg.objective != 'sft' else ''} from {cfg.model}")
    return loop.metrics


def _train(cfg: PLUMConfig, i: int, policy, reference, tokenizer, kto_data: list[dict], pairs: list,  # type: ignore[no-untyped-def]
           chosen_only: list[tuple[str, str]], it_dir: Path):
    """One update with the configured objective; saves the data it trained on; returns the policy and
    the update's statistics."""
    seed = cfg.seed + i
    lora = None
    if cfg.trainer == "trl":
        from codeloop.train.launch import launched_as
        from codeloop.train.trl_backend import LoRA, trl_dpo, trl_kto

        lora = LoRA(r=cfg.lora_r) if cfg.lora_r else None
    if cfg.objective == "kto":
        save_rows(kto_data, it_dir / "kto", KTO_SCHEMA)
        if not kto_data:
            return policy, {"examples": 0}
        if cfg.trainer == "trl":
            policy, t = trl_kto(policy, reference, tokenizer, kto_data, beta=cfg.beta, lr=cfg.lr,
                                epochs=cfg.epochs, batch_size=cfg.batch_size, desirable_weight=cfg.desirable_weight,
                                undesirable_weight=cfg.undesirable_weight, nll_weight=cfg.nll_weight, seed=seed, lora=lora,
                                bf16=use_bf16(cfg), launch=cfg.launch)
            return policy, {"examples": len(kto_data), "loss": t["final_loss"], **launched_as(t)}
        stats = kto(policy, reference, tokenizer, kto_data, beta=cfg.beta, lr=cfg.lr, epochs=cfg.epochs,
                    batch_size=cfg.batch_size, desirable_weight=cfg.desirable_weight,
                    undesirable_weight=cfg.undesirable_weight, nll_weight=cfg.nll_weight, seed=seed, progress=False)
        return policy, {"examples": stats.desirable + stats.undesirable, "loss": stats.final_loss, "kl": stats.kl}
    if cfg.objective == "dpo":
        save_pairs(pairs, it_dir / "pairs")
        if not pairs:
            return policy, {"examples": 0}
        if cfg.trainer == "trl":
            policy, t = trl_dpo(policy, reference, tokenizer, pairs, beta=cfg.beta, lr=cfg.lr,
                                epochs=cfg.epochs, batch_size=cfg.batch_size, nll_weight=cfg.nll_weight, seed=seed, lora=lora,
                                bf16=use_bf16(cfg), launch=cfg.launch)
            return policy, {"examples": len(pairs), "loss": t["final_loss"], **launched_as(t)}
        dstats = dpo(policy, reference, tokenizer, pairs, beta=cfg.beta, lr=cfg.lr, epochs=cfg.epochs,
                     batch_size=cfg.batch_size, nll_weight=cfg.nll_weight, seed=seed, progress=False)
        return policy, {"examples": dstats.pairs, "loss": dstats.final_loss, "reward_accuracy": dstats.reward_accuracy}
    write_jsonl(it_dir / "sft.jsonl", [{"prompt": p, "completion": c} for p, c in chosen_only])
    if not chosen_only:
        return policy, {"examples": 0}
    sstats = sft(policy, tokenizer, chosen_only, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                 warmup_steps=1, seed=seed, progress=False)
    return policy, {"examples": len(chosen_only), "loss": sstats.final_loss}
