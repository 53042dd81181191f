"""What the training loops share: loading a policy, sampling held-out tasks and scoring them, and the
iteration bookkeeping (per-iteration folders, metrics.jsonl, resume after a kill).

Resume contract: ``out/iter_N/done`` is written last, after the model, the data and the metrics row of
iteration N; a restarted run continues after the highest finished N and redoes a half-written one.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeloop.data import load_tasks, write_jsonl
from codeloop.data.prompts import stop_for
from codeloop.eval import evaluate, preload_for, summarize
from codeloop.feedback.compiler import compiles
from codeloop.models import BACKENDS, VLLM_MEMORY, GeneratorError, usage_line
from codeloop.models.base import Generator
from codeloop.models.hf import HFGenerator, locate, weights_digest
from codeloop.sandbox import Runner, cpu_budget, open_sandbox
from codeloop.types import Completion, Outcome, Sample, SamplingParams, Status, Task


TRAINERS = ("plain", "trl")  # the loops here, or TRL's trainers
SAMPLERS = ("hf", "vllm")  # in-process sampling, or vLLM from saved checkpoints


def check_choices(**settings: tuple[str, Sequence[str]]) -> None:
    """``check_choices(objective=(value, allowed), ...)``: a ValueError naming the key and its choices."""
    for name, (value, allowed) in settings.items():
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


@contextmanager
def usage_reported(*generators: Generator | None) -> Iterator[None]:
    """When the block ends, however it ends (an API error, Ctrl-C), say on stderr what each API generator
    used (:func:`codeloop.models.usage_line`): its requests and tokens were paid for either way."""
    try:
        yield
    finally:
        for line in filter(None, map(usage_line, generators)):
            print(line, file=sys.stderr)


def check_backends(config: object, *keys: str) -> None:
    """A ValueError for the first of ``config``'s generator backends (``keys``) that is not one of
    :data:`codeloop.models.BACKENDS`, or, where a model is named for an openai backend, for a malformed
    ``CODELOOP_OPENAI_CONCURRENCY``, ``CODELOOP_OPENAI_PRICES`` or ``CODELOOP_OPENAI_EXTRA``: before anything runs."""
    check_choices(**{key: (getattr(config, key), BACKENDS) for key in keys})
    models = {"backend": "model", "judge_backend": "judge_model", "test_generator_backend": "test_generator"}
    if any(str(getattr(config, key)).startswith("openai") and getattr(config, models.get(key, ""), True) for key in keys):
        from codeloop.models.openai import env_concurrency, env_extra, env_prices

        try:
            env_concurrency(), env_prices(), env_extra()
        except GeneratorError as exc:
            raise ValueError(str(exc)) from None


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here (an optional extra: vllm, trl), without importing it."""
    return importlib.util.find_spec(module) is not None


def check_ranges(config: object, **ranges: str) -> None:
    """``check_ranges(cfg, k=">= 1", fraction="(0, 1]")``: a ValueError naming the first of ``config``'s keys
    whose value lies outside its range: "> x", ">= x", or an interval whose ends are open "(" or closed "[".
    A key the config lacks, or holds as None ("as another key says"), is left alone."""
    for name, rule in ranges.items():
        value = getattr(config, name, None)
        if value is not None and not _within(value, rule):
            raise ValueError(f"{name} must be {rule if rule[0] == '>' else 'in ' + rule}, got {value}")


def _within(value: float, rule: str) -> bool:
    if rule.startswith(">="):
        return value >= float(rule[2:])
    if rule.startswith(">"):
        return value > float(rule[1:])
    low, high = (float(end) for end in rule[1:-1].split(","))
    return (value > low if rule[0] == "(" else value >= low) and (value < high if rule[-1] == ")" else value <= high)


LOOP_RANGES = {"val_limit": ">= 1", "val_n": ">= 1", "n_instructions": ">= 1", "n_intents": ">= 1", "fraction": "(0, 1]",
               "iterations": ">= 0", "k": ">= 1", "temperature": ">= 0", "val_temperature": ">= 0",
               "max_new_tokens": ">= 1", "lr": "> 0", "epochs": "> 0", "batch_size": ">= 1", "nll_weight": ">= 0",
               "kl_weight": ">= 0", "vllm_memory": "(0, 1)"}
"""The ranges of the keys the loops' configs share by name (each loop has some of them); checked before any
work starts, so that a typo (``k: 0``, ``lr: -1e-4``) is refused at its line of the YAML file, not met as a
crash, or as a run that trains on nothing, after minutes of sampling."""


def refuse_python_only(source: str, tasks: Sequence[Task], active: Mapping[str, str]) -> None:
    """Refuse, before anything is written, the Python-only parts a config turned on (``active``: the
    setting as the user wrote it -> what to do instead) when ``source`` holds tasks in another language:
    they would silently judge every program wrong or score them all alike."""
    other = sorted({t.language for t in tasks} - {"python"})
    if other and active:
        setting, instead = next(iter(active.items()))
        raise ValueError(f"{setting} works on Python only, and {source!r} holds {', '.join(other)} tasks: {instead}")


@dataclass
class LoopSettings:
    """What every training loop's config shares: how it samples, trains and validates. A loop's config
    subclasses it (its own fields follow these), and a subclass's ``__post_init__`` calls this one."""

    backend: str = "hf"
    """Sampling from the policy: "hf" (in process) or "vllm" (GPUs; loads each iteration's saved checkpoint)."""
    vllm_memory: float = VLLM_MEMORY
    """The share of the GPU's memory each vLLM engine of the run may take (vLLM's gpu_memory_utilization):
    the policy's with backend "vllm", and a judge's or test generator's on backend "vllm", which run
    beside it. Leave room for the policy and reference the loop trains (in process, they stay on the GPU)."""
    trainer: str = "plain"
    """"plain" (the small-model loop here) or "trl" (TRL's trainers: devices, bf16; needs codeloop[trl])."""
    lora_r: int = 0
    """LoRA rank through PEFT with trainer "trl" (0: full fine-tuning). The adapter is merged after every
    update, and each update's reference is the adapter's base: the policy it started from, as with
    refresh_reference true, whatever that key says."""
    bf16: bool = True
    """With trainer "trl" on a CUDA device that supports it: bf16 mixed precision (fp32 weights and
    optimiser). Ignored on the CPU and by the plain trainer, which train in fp32."""
    launch: str = ""
    """With trainer "trl": train each update in the processes this launcher command starts, e.g.
    "torchrun --standalone --nproc_per_node 8" or "accelerate launch --config_file fsdp.yaml" (FSDP,
    DeepSpeed: the launcher's config says), its program looked for beside codeloop's Python first.
    batch_size stays the batch of one optimiser step, split over the processes (see
    ``codeloop.train.launch``). Empty: train in the loop's own process. Where training runs does not
    change the update, so a run may resume with another value."""
    val_tasks: str = "synthetic-python:test"
    """Held-out tasks for validation."""
    val_limit: int = 100
    """Validation tasks."""
    val_n: int = 4
    """Samples per validation task."""
    val_plus_tasks: str = ""
    """Stricter tests for the same held-out tasks (same task ids and prompts; e.g. synthetic-python+:test):
    the validation samples are also run against them, reported as ``pass_at_1_plus``. Empty: not measured."""
    seed: int = 0
    """Seeds sampling (per iteration) and training."""
    ray: str = ""
    """Run the sandbox on a Ray cluster at this address (as ``codeloop eval --ray``: "auto", "ray://HOST:10001",
    or "local" to start Ray here; needs codeloop[ray] here, and Ray on the nodes). Empty: on this machine.
    Where the programs run does not change their verdicts, so a run may resume with another value."""

    def __post_init__(self) -> None:
        check_choices(trainer=(self.trainer, TRAINERS), backend=(self.backend, SAMPLERS))
        check_backends(self, *(key for key in ("judge_backend", "test_generator_backend") if hasattr(self, key)))
        engines = vllm_engines(self)
        for key, value, extra in ((engines[0] if engines else "backend", "vllm", "'codeloop[vllm]' (GPU)"),
                                  ("trainer", "trl", "'codeloop[trl]'")):
            if getattr(self, key) == value and not installed(value):
                raise ValueError(f"{key} {value} needs the optional extra: pip install {extra}")
        check_ranges(self, **LOOP_RANGES)
        check_vllm_memory(self)
        tasks, fraction = getattr(self, "n_instructions", getattr(self, "n_intents", None)), getattr(self, "fraction", 1.0)
        if tasks is not None and math.floor(fraction * tasks) < 1:
            raise ValueError(f"fraction {fraction} of {tasks} tasks is no task an iteration: raise fraction, or the number of tasks")
        if self.launch:
            if self.trainer != "trl":
                raise ValueError(f"launch {self.launch!r} needs trainer trl (the launched processes run TRL's trainers; "
                                 "the plain trainer trains in the loop's own process)")
            from codeloop.train.launch import launcher

            launcher(self.launch)
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be 0 (full fine-tuning) or a LoRA rank, got {self.lora_r}")
        if self.lora_r and self.trainer != "trl":
            raise ValueError(f"lora_r {self.lora_r} needs trainer trl (LoRA adapters train through TRL and PEFT; "
                             f"the plain trainer fine-tunes every weight)")


VLLM_AT_MOST = 0.95
"""The most of a GPU's memory a run's vLLM engines may take together (vLLM's own default for one is 0.92)."""


def vllm_engines(cfg: object) -> list[str]:
    """The keys of ``cfg`` whose models run as vLLM engines side by side: ``backend`` (the policy's, or
    the model's), and the backend of a configured judge or test generator (a refine run's judge only
    where its ``feedback`` asks for one)."""
    judged = "judge" in getattr(cfg, "feedback", "judge")
    keys = ["backend", *(backend for model, backend in (("judge_model", "judge_backend"),
                                                       ("test_generator", "test_generator_backend"))
                         if getattr(cfg, model, "") and (judged or model != "judge_model"))]
    return [key for key in keys if getattr(cfg, key, "") == "vllm"]


def check_vllm_memory(cfg: object) -> None:
    """Refuse a ``vllm_memory`` that the run's vLLM engines, each taking it, cannot all have at once."""
    engines, share = vllm_engines(cfg), getattr(cfg, "vllm_memory")
    if len(engines) * share > VLLM_AT_MOST:
        raise ValueError(f"vllm_memory {share} for each of the {len(engines)} vLLM engines this run keeps at once "
                         f"({', '.join(f'{k} vllm' for k in engines)}) is more of the GPU than there is: set "
                         f"vllm_memory to {math.floor(VLLM_AT_MOST / len(engines) * 100) / 100} or less")


RUN_FORMAT = 2
"""Saved in every loop's config.json; bumped whenever finished iterations would no longer mean the
same thing to this code. 2: prompts encoded by ``codeloop.models.encoding`` (before it, the seed was sampled
without the BOS it was trained on)."""


ADDED_SETTINGS = {"bf16": True, "clip": 0.0, "score_lines": "all", "mark_gaps": False, "crowd_score": "lines",
                  "verdict_prior": "half", "critic_replay": 0, "judge_temperature": 0.0, "judge_max_new_tokens": 64,
                  "test_generator_temperature": 0.7, "test_generator_max_new_tokens": 2048}
"""Settings added since run format 2, and the value a run written before them resumes under (where
the loop has the setting). bf16: before it the trl trainer trained in fp32 everywhere, so such a run
resumed on a GPU continues in bf16 mixed precision (fp32 weights either way); on the CPU, and with the
plain trainer, nothing changes. clip (coderl, crlhf): 0 is the plain REINFORCE they ran before it.
score_lines, mark_gaps, crowd_score and verdict_prior (crlhf): every line counted, omissions free, the
crowd's reward its line share, and a verdict's prior 1/2, as before them. critic_replay (coderl): the
critic trained on each iteration's programs only, as before it. judge_temperature and judge_max_new_tokens
(online DPO), test_generator_temperature and test_generator_max_new_tokens (PLUM): what the judge and the
test generator were asked at before they could be set."""


def use_bf16(settings: LoopSettings) -> bool:
    """Whether the trl trainer trains in bf16 mixed precision: asked for, and a CUDA device supports it."""
    import torch

    return settings.bf16 and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _same_settings(out: Path, saved: dict, config: dict) -> None:
    """Refuse to continue a run under other settings than its finished iterations had (more iterations
    is fine, and so are another ``ray``, ``launch`` and ``vllm_memory``, which say where the work runs):
    the per-iteration data and metrics would silently mix two experiments. That includes the starting
    model's files (``model_sha256``, where the model is a local directory or a built-in seed): the same
    name over retrained weights is another experiment."""
    saved = {**{k: v for k, v in ADDED_SETTINGS.items() if k in config}, **saved}
    if saved.get("run_format") != config.get("run_format"):
        raise ValueError(f"{out / 'config.json'}: the finished iterations there were made by another codeloop "
                         f"(run format {saved.get('run_format', 1)}, this one writes {config.get('run_format')}; "
                         f"format 2 encodes prompts as the model was trained on them); delete {out} to start over, "
                         "or choose another out_dir")
    if "model_sha256" in saved and saved["model_sha256"] != config.get("model_sha256"):
        raise ValueError(f"{out / 'config.json'}: the model {config.get('model')!r} is not the one the finished "
                         f"iterations there started from (its weights, config or tokenizer changed: sha256 "
                         f"{saved['model_sha256']} then, {config.get('model_sha256')} now); delete {out} to start over, "
                         "or choose another out_dir")
    unrecorded = {"iterations", "out_dir", "ray", "launch", "vllm_memory"} | ({"model_sha256"} - set(saved))  # (and before the digest)
    changed = [f"{key}: {saved.get(key)!r} -> {config.get(key)!r}" for key in sorted(set(saved) | set(config))
               if key not in unrecorded and saved.get(key) != json.loads(json.dumps(config.get(key)))]
    if changed:
        raise ValueError(f"{out / 'config.json'}: the finished iterations there were run with other settings "
                         f"({'; '.join(changed)}); resume with the same settings (only iterations, out_dir, ray, launch and vllm_memory may differ), "
                         f"choose another out_dir, or delete {out} to start over")


@contextmanager
def loop_sandbox(ray: str, out_dir: str, tasks: Iterable[Task], hide: Sequence[str] = (),
                 **options: Any) -> Iterator[Runner]:
    """A loop's sandbox, on this machine or over Ray (``ray``): ``out_dir`` (earlier iterations' passing
    programs) and ``hide`` out of the samples' sight, the language runtime of ``tasks`` preloaded. Its
    first line on stdout says what holds the samples (isolation, cgroup)."""
    with open_sandbox(ray, hide=(out_dir, *hide), preload=preload_for(tasks), **options) as sandbox:
        print(sandbox.containment)
        yield sandbox


def load_model(name: str) -> tuple[Any, Any]:
    """A causal LM and its tokenizer by name (``seed-python``), local path or hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = locate(name)
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


@dataclass
class Rollout:
    """Completions for a list of tasks (one row per task) and the sandbox's verdict on each."""

    tasks: list[Task]
    rows: list[list[Completion]]
    samples: list[Sample]
    outcomes: list[Outcome]

    def groups(self) -> list[tuple[Task, list[str], list[Outcome]]]:
        """Per task: the completion texts and their outcomes."""
        out, at = [], 0
        for task, row in zip(self.tasks, self.rows):
            out.append((task, [c.text for c in row], self.outcomes[at:at + len(row)]))
            at += len(row)
        return out


class Clock:
    """Wall seconds per phase of an iteration, for its metrics row: ``with clock("train"): ...`` adds
    to ``clock.row["train_s"]``. Where an iteration's time goes is the first thing to know when it is slow."""

    def __init__(self) -> None:
        self.row: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            key = f"{phase}_s"
            self.row[key] = round(self.row.get(key, 0.0) + time.perf_counter() - start, 2)


def rollout(generator: Generator, tasks: Sequence[Task], sandbox: Runner, n: int, temperature: float,
            max_new_tokens: int, seed: int, clock: Clock | None = None) -> Rollout:
    """``n`` completions per task from ``generator``, run against the tasks' tests (timed as the
    phases ``sample`` and ``sandbox`` on ``clock``)."""
    clock = clock or Clock()
    params = SamplingParams(n=n, temperature=temperature, max_new_tokens=max_new_tokens,
                            stop=stop_for(t.language for t in tasks), seed=seed)
    with clock("sample"):
        rows = generator.generate([t.prompt for t in tasks], params)
    samples = [Sample(t.task_id, c.text) for t, row in zip(tasks, rows) for c in row]
    with clock("sandbox"):
        outcomes = evaluate({t.task_id: t for t in tasks}, samples, sandbox)
    return Rollout(list(tasks), rows, samples, outcomes)


def held_out_metrics(run: Rollout) -> dict[str, float]:
    """pass@1, the compiler expert's rate P(κ=1), and the sandbox's compile-error rate."""
    kappa = [compiles(t.prompt + c.text, t.language).score for t, row in zip(run.tasks, run.rows) for c in row]
    report = summarize(run.samples, run.outcomes, ks=(1,))
    return {"pass_at_1": report.pass_at_k[1],
            "compile_rate": sum(kappa) / len(kappa),
            "compile_error_rate": sum(o.status is Status.COMPILE_ERROR for o in run.outcomes) / len(run.outcomes)}


def validation_tasks(cfg: LoopSettings) -> tuple[list[Task], dict[str, Task]]:
    """The first ``val_limit`` tasks of ``val_tasks`` and, where ``val_plus_tasks`` is set, their stricter
    versions by task id (refused unless every validation task is there with the same prompt)."""
    tasks = list(load_tasks(cfg.val_tasks).values())[: cfg.val_limit]
    if not cfg.val_plus_tasks:
        return tasks, {}
    source = load_tasks(cfg.val_plus_tasks)
    for task in tasks:
        if task.task_id not in source or source[task.task_id].prompt != task.prompt:
            why = "lacks" if task.task_id not in source else "has another prompt for"
            raise ValueError(f"val_plus_tasks {cfg.val_plus_tasks!r} {why} {task.task_id} of val_tasks {cfg.val_tasks!r}: "
                             "it must hold stricter tests for the same tasks (same ids and prompts)")
    return tasks, {t.task_id: source[t.task_id] for t in tasks}


def plus_metrics(run: Rollout, plus: Mapping[str, Task], sandbox: Runner) -> dict[str, float]:
    """pass@1 of the same samples against the stricter tests (nothing when there are none)."""
    if not plus:
        return {}
    outcomes = evaluate(plus, run.samples, sandbox)
    return {"pass_at_1_plus": summarize(run.samples, outcomes, ks=(1,)).pass_at_k[1]}


class PolicySampler:
    """Samples from the current policy: in process (``hf``), or (``vllm``, GPUs) through a vLLM engine
    loaded from the policy's last saved checkpoint, reloaded only when the checkpoint changes."""

    def __init__(self, backend: str, tokenizer: Any, vllm_memory: float = VLLM_MEMORY) -> None:
        check_choices(backend=(backend, SAMPLERS))
        self.backend, self.tokenizer, self.vllm_memory = backend, tokenizer, vllm_memory
        self._path = ""
        self._engine: Generator | None = None

    def __call__(self, policy: Any, checkpoint: str) -> Generator:
        if self.backend == "hf":
            return HFGenerator(model=policy, tokenizer=self.tokenizer)
        if checkpoint != self._path:
            self.release()  # free the previous engine's GPU memory before loading the next
            from codeloop.models import load_generator

            self._engine = load_generator("vllm", checkpoint, gpu_memory_utilization=self.vllm_memory)
            self._path = checkpoint
        assert self._engine is not None
        return self._engine

    def release(self) -> None:
        """Drop the vLLM engine (its GPU memory with it) before an update: the policy it serves is about
        to change, so the next call would load a new one anyway, and the update gets the memory. In
        process (``hf``) there is nothing to drop."""
        if self._engine is not None:
            self._engine, self._path = None, ""
            import gc

            gc.collect()


@dataclass
class Loop:
    """Iteration bookkeeping of one run directory."""

    out: Path
    iterations: int
    metrics: list[dict] = field(default_factory=list)

    @classmethod
    def open(cls, out_dir: str, iterations: int, config: dict) -> Loop:
        import torch

        torch.set_num_threads(cpu_budget())  # not os.cpu_count(): a CPU quota or affinity may allow fewer
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # one line per iteration, not per saved shard
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        loop = cls(out, iterations)
        start = loop.start
        config = {**config, "run_format": RUN_FORMAT}
        if "model" in config:  # the same name must mean the same weights when a run resumes
            config["model_sha256"] = weights_digest(config["model"])
        if start and (out / "config.json").exists():  # resuming: finished work must not mix settings
            _same_settings(out, json.loads((out / "config.json").read_text()), config)
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        path = out / "metrics.jsonl"
        if start and path.exists():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            loop.metrics = [m for m in rows if m["iteration"] <= start]
        return loop

    @property
    def start(self) -> int:
        """The last finished iteration (0: none)."""
        done = [i for i in range(1, self.iterations + 1) if (self.out / f"iter_{i}" / "done").exists()]
        return max(done, default=0)

    def policies(self, model: str, refresh_reference: bool, lora: bool = False) -> tuple[Any, Any, Any]:
        """(reference, policy, tokenizer): the policy resumes from the last finished iteration and sits on
        the first CUDA device where there is one, else the CPU. The reference sits beside it (the plain
        trainers run the two side by side); with ``lora`` it is None: the adapter's base is the reference,
        and where ``refresh_reference`` is off the run says so."""
        import torch

        if lora and not refresh_reference:
            print("reference: with lora_r, each update's reference is the policy it starts from (the LoRA adapter's "
                  "base), as with refresh_reference=true")
        reference, tokenizer = load_model(model)
        start = self.start
        if start:
            policy = load_model(str(self.out / f"iter_{start}" / "model"))[0]
        else:
            policy = reference if lora else copy.deepcopy(reference)
        if lora:
            reference = None
        elif start and refresh_reference:
            reference = copy.deepcopy(policy)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return (reference if reference is None else reference.to(device)), policy.to(device), tokenizer

    def pending(self) -> range:
        return range(self.start + 1, self.iterations + 1)

    def iteration_dir(self, i: int) -> Path:
        """A clean folder for iteration i (what a killed run left of it is redone)."""
        path = self.out / f"iter_{i}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def record(self, row: dict, on_iteration: Callable[[dict], None] | None) -> None:
        self.metrics.append(row)
        write_jsonl(self.out / "metrics.jsonl", self.metrics)
        if on_iteration:
            on_iteration(row)

    def checkpoint(self, i: int, model: str) -> str:
        """Where the policy of iteration i is saved (iteration 0: the baseline ``model``)."""
        return str(self.out / f"iter_{i}" / "model") if i else model

    def save_model(self, i: int, policy: Any, tokenizer: Any) -> None:
        policy.save_pretrained(self.out / f"iter_{i}" / "model")
        tokenizer.save_pretrained(self.out / f"iter_{i}" / "model")

    def finish(self, i: int, row: dict, on_iteration: Callable[[dict], None] | None) -> None:
        """Record iteration i's metrics row (its model is saved), then mark it done."""
        self.record(row, on_iteration)
        (self.out / f"iter_{i}" / "done").write_text("")
