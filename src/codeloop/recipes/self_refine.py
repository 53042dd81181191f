"""Self-Refine: generate y0, get feedback, refine, up to N attempts; a task stops once it passes.

Feedback sources, alone or combined: ``execution`` (the sandbox's verdict: compile error, exception,
or the failing input / expected / actual output; with ``reveal_tests=False`` only counts), ``self``
(the model critiques its own attempt) and ``judge`` (another generator critiques it). The refinement
prompt is ``codeloop.data.prompts.repair_prompt``, the format seed-python was trained on (comments in
the task's language: ``#`` lines for Python, one ``(* ... *)`` block for Structured Text). Writes
per-task traces and per-attempt metrics (``metrics.jsonl``: attempt, pass_rate, ...) and a plot.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from codeloop.data import load_tasks, write_jsonl
from codeloop.data.prompts import CRITIQUE, history_prompt, outcome_feedback, repair_block, stop_for
from codeloop.eval import evaluate
from codeloop.eval.plots import plot_metrics
from codeloop.models import VLLM_MEMORY, Generator, engine_settings, load_code_writer, load_generator
from codeloop.models.chat import ChatCoder
from codeloop.recipes.common import check_backends, check_ranges, check_vllm_memory, loop_sandbox, usage_reported
from codeloop.types import Outcome, Sample, SamplingParams, Status, Task

SOURCES = ("execution", "self", "judge", "none")  # none: retry from the plain prompt (the control)
JUDGE_PROMPT = ("A program was written for this task.\n\nTask:\n{prompt}\nProgram body:\n{attempt}\n"
                "What running it showed: {execution}\n\nIn one or two sentences, say what is wrong and how to fix it.")
SELF_CRITIQUE_ASK = "In one sentence, say what is wrong with the previous attempt."
"""What a chat model is asked for its critique, after the repair block (a completion model continues a
critique comment instead: ``prompts.CRITIQUE``)."""


@dataclass
class RefineConfig:
    model: str = "seed-python"
    """Model that writes and refines (a built-in name, a path, or a backend's model name)."""
    backend: str = "hf"
    """hf, vllm, openai or openai-chat (see :func:`codeloop.models.load_code_writer`)."""
    tasks: str = "synthetic-python:test"
    """Task set."""
    limit: int = 100
    """First N tasks (0 = all)."""
    attempts: int = 4
    """y0 plus attempts-1 refinements."""
    feedback: str = "execution"
    """Comma-separated sources: execution, self, judge; or none (plain retries: the control)."""
    history: str = "latest"
    """Show the model only the latest attempt, or "all" earlier attempts with their feedback."""
    reveal_tests: bool = True
    """Execution feedback may quote failing tests (False: counts and error kinds only)."""
    temperature: float = 0.8
    """Sampling temperature for every attempt."""
    max_new_tokens: int = 192
    """Longest completion (a Python body; a whole ST function needs about 320 with seed-st)."""
    seed: int = 0
    """Sampling seed (attempt t uses seed + t)."""
    judge_model: str = ""
    """Model for the judge source."""
    judge_backend: str = "openai"
    """Backend of the judge model: hf, vllm, openai or openai-chat."""
    judge_temperature: float = 0.0
    """Temperature the judge is asked at (0: its most likely review); a reasoning model (OpenAI's o-series,
    GPT-5) takes only 1."""
    judge_max_new_tokens: int = 128
    """Longest review (a reasoning model's limit counts its reasoning too)."""
    vllm_memory: float = VLLM_MEMORY
    """The share of the GPU's memory each vLLM engine may take (vLLM's gpu_memory_utilization): the
    model's with backend "vllm", and the judge's on backend "vllm", beside it."""
    timeout_s: float = 3.0
    """Sandbox time limit per attempt."""
    ray: str = ""
    """Run the sandbox on a Ray cluster at this address (as ``codeloop eval --ray``); empty: on this machine."""
    out_dir: str = "runs/refine"
    """Where traces.jsonl, metrics.jsonl and metrics.png go."""

    def __post_init__(self) -> None:
        check_ranges(self, limit=">= 0", attempts=">= 1", temperature=">= 0", max_new_tokens=">= 1", timeout_s="> 0",
                     judge_temperature=">= 0", judge_max_new_tokens=">= 1",
                     vllm_memory="(0, 1)")
        check_backends(self, "backend", "judge_backend")
        check_vllm_memory(self)


def _refine_prompt(task: Task, trace: list[dict], history: str) -> str:
    if trace[-1]["feedback"] is None:  # the "none" control: a fresh try at the plain task
        return task.prompt
    steps = trace if history == "all" else trace[-1:]
    return history_prompt(task.prompt, [(step["completion"], step["feedback"]) for step in steps], task.language)


def _self_critiques(generator: Generator, failed: list[tuple[Task, str]], executions: list[str], seed: int) -> list[str]:
    """The model's own critique of each failed (task, completion), one generate call per language
    (its critique lead and stop)."""
    critiques = [""] * len(failed)
    by_language: dict[str, list[int]] = {}
    for i, (task, _) in enumerate(failed):
        by_language.setdefault(task.language, []).append(i)
    for language, picked in by_language.items():
        lead, stop = CRITIQUE.get(language, CRITIQUE["python"])
        if isinstance(generator, ChatCoder):  # a chat model is asked in words, and answers the same way
            lead, stop, generator = "\n" + SELF_CRITIQUE_ASK, (), generator.chat
        prompts = [repair_block(failed[i][0].prompt, failed[i][1], executions[i], language) + lead for i in picked]
        rows = generator.generate(prompts, SamplingParams(temperature=0, max_new_tokens=48, stop=stop, seed=seed))
        for i, row in zip(picked, rows, strict=True):
            critiques[i] = row[0].text.strip()
    return critiques


def _feedback(sources: list[str], failed: list[tuple[Task, str, Outcome]], cfg: RefineConfig, generator: Generator,
              judge: Generator | None, attempt: int) -> list[str]:
    """Each failed (task, completion, outcome)'s feedback from ``sources``; the model's critiques and the
    judge's reviews each come from one batch of requests for the whole attempt."""
    executions = [outcome_feedback(outcome, cfg.reveal_tests) for _, _, outcome in failed]
    parts: list[list[str]] = [[] for _ in failed]
    if "execution" in sources:
        for part, execution in zip(parts, executions):
            part.append(execution)
    if "self" in sources:
        critiques = _self_critiques(generator, [(t, c) for t, c, _ in failed], executions, cfg.seed + attempt)
        for part, critique in zip(parts, critiques):
            part.append("critique: " + critique)
    if "judge" in sources and judge is not None:
        asks = [JUDGE_PROMPT.format(prompt=t.prompt, attempt=c, execution=e) for (t, c, _), e in zip(failed, executions)]
        params = SamplingParams(temperature=cfg.judge_temperature, max_new_tokens=cfg.judge_max_new_tokens)
        for part, row in zip(parts, judge.generate(asks, params), strict=True):
            part.append("reviewer: " + row[0].text.strip())
    return ["\n".join(part) for part in parts]


def run(cfg: RefineConfig) -> list[dict]:
    sources = [s.strip() for s in cfg.feedback.split(",") if s.strip()]
    unknown = set(sources) - set(SOURCES)
    if unknown or not sources or ("none" in sources and len(sources) > 1):
        raise ValueError(f"feedback sources must be among {', '.join(SOURCES)}; got {cfg.feedback!r}")
    if cfg.history not in ("latest", "all"):
        raise ValueError(f"history must be 'latest' or 'all', got {cfg.history!r}")
    tasks = list(load_tasks(cfg.tasks).values())
    tasks = tasks[: cfg.limit] if cfg.limit else tasks
    task_map = {t.task_id: t for t in tasks}
    generator = load_code_writer(cfg.backend, cfg.model, **engine_settings(cfg.backend, cfg.vllm_memory))
    judge = load_generator(cfg.judge_backend, cfg.judge_model, **engine_settings(cfg.judge_backend, cfg.vllm_memory)) \
        if "judge" in sources else None
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    traces: dict[str, list[dict]] = {t.task_id: [] for t in tasks}
    solved: set[str] = set()
    metrics: list[dict] = []

    with usage_reported(generator, judge), loop_sandbox(cfg.ray, cfg.out_dir, tasks, timeout_s=cfg.timeout_s) as sandbox:
        for attempt in range(cfg.attempts):
            todo = [t for t in tasks if t.task_id not in solved]
            if not todo:
                break
            prompts = [t.prompt if attempt == 0 else _refine_prompt(t, traces[t.task_id], cfg.history) for t in todo]
            params = SamplingParams(temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                                    stop=stop_for(t.language for t in todo), seed=cfg.seed + attempt)
            completions = [row[0] for row in generator.generate(prompts, params)]
            samples = [Sample(t.task_id, c.text) for t, c in zip(todo, completions)]
            outcomes = evaluate(task_map, samples, sandbox)
            failed = [(t, s.completion, o) for t, s, o in zip(todo, samples, outcomes) if not o.passed]
            given = iter(_feedback(sources, failed, cfg, generator, judge, attempt) if failed and sources != ["none"]
                         else [None] * len(failed))
            for task, sample, outcome in zip(todo, samples, outcomes):
                traces[task.task_id].append({"attempt": attempt, "completion": sample.completion,
                                             "status": outcome.status.value, "reason": outcome.reason,
                                             "feedback": None if outcome.passed else next(given)})
                if outcome.passed:
                    solved.add(task.task_id)
            metrics.append({
                "attempt": attempt,
                "pass_rate": len(solved) / len(tasks),
                "solved": len(solved),
                "tasks": len(tasks),
                "attempted": len(todo),
                "newly_solved": sum(o.passed for o in outcomes),
                "compile_error_rate_attempted": sum(o.status is Status.COMPILE_ERROR for o in outcomes) / len(todo),
            })
            write_jsonl(out / "metrics.jsonl", metrics)
            write_jsonl(out / "traces.jsonl", ({"task_id": tid, "attempts": tr} for tid, tr in traces.items()))
    plot_metrics(metrics, "attempt", ["pass_rate"], out / "metrics.png", title=f"Self-Refine: {cfg.model} on {cfg.tasks}")
    return metrics
