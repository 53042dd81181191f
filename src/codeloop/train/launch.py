"""One TRL update in the processes a launcher starts: ``torchrun``, ``accelerate launch`` (with its
multi-GPU, FSDP or DeepSpeed config), ``deepspeed``: whatever starts N copies of a Python module and
tells each, through the environment, its rank. codeloop does no distribution of its own.

The loop (the parent) keeps sampling, the sandbox and the bookkeeping in its own process. For an
update with ``launch`` set, ``launched_update``:

1. writes the policy, the tokenizer, the rows to train on and the settings into a fresh folder under
   ``$TMPDIR``, and the reference (none with LoRA: the adapter's base is the reference) where it is
   not already saved (below);
2. moves its own copies of the policy and the reference off the GPU, so the launched processes have it;
3. runs ``LAUNCH -m codeloop.train.launch FOLDER`` in a session of its own (stopping the loop, or the
   update failing, stops every process the launcher started), its output kept in ``FOLDER/output.log``;
4. on success reads the trained weights into the policy it holds (with LoRA: merges the saved adapter
   into it) and moves both models back; on failure raises ``LaunchError`` with the log's last lines.

Each launched process (``main``) loads the folder, builds the same trainer as an update in the loop's
own process would (``codeloop.train.trl_backend.build_trainer``), trains, and saves through the trainer
(``save_model`` gathers FSDP shards and DeepSpeed ZeRO-3 partitions as the launcher's config says); the
first process writes the statistics. ``batch_size`` stays the batch of one optimiser step: each of the N
processes takes batch_size / N rows of it (N must divide it), so a config means the same update whether
it trains in one process or on eight GPUs (the rows' order differs: each process draws its own share).

The folder holds a full copy of the policy at every update. The reference (without LoRA) is written once,
into a folder of its own under ``$TMPDIR``, at the first launched update that trains against it, and
reused while that object lives and its weights stay as written (``_reference_folder`` says how that is
checked); it is removed once the reference is gone, or at exit. Put ``$TMPDIR`` on a disk with room for
two copies of the model.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from codeloop.data import read_jsonl, write_jsonl
from codeloop.sandbox.session import end_session

from .trl_backend import LoRA, build_trainer, quiet, train


class LaunchError(RuntimeError):
    """A launched update failed: the launch command, its exit status, what the first failing process said
    (else the output's last lines), and where its whole output is kept."""


def launcher(launch: str) -> list[str]:
    """``launch`` as the command's words, its program resolved: "python" is this interpreter; a bare name
    (``torchrun``, ``accelerate``, ``deepspeed``) is looked for beside this interpreter first (the
    virtual environment codeloop runs in, activated or not), then on PATH. A ValueError, starting with
    "launch", when there is none."""
    try:
        words = shlex.split(launch)
    except ValueError as error:
        raise ValueError(f"launch {launch!r} is not a command line: {error}") from None
    if not words:
        raise ValueError("launch is empty: give a launcher command such as 'torchrun --standalone --nproc_per_node 8', "
                         "or leave the key out to train in the loop's own process")
    program = words[0]
    if program in ("python", "python3"):
        return [sys.executable, *words[1:]]
    if os.sep in program:
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise ValueError(f"launch {program} is not an executable file")
        return words
    beside = Path(sys.executable).parent / program
    found = str(beside) if beside.is_file() else shutil.which(program)
    if found is None:
        raise ValueError(f"launch {program!r} is neither beside {sys.executable} nor on PATH "
                         f"(torchrun comes with torch; accelerate with codeloop[trl])")
    return [found, *words[1:]]


def launched_update(launch: str, method: str, model: Any, reference: Any, tokenizer: Any, rows: list[dict],
                    settings: dict, lora: LoRA | None) -> tuple[Any, dict]:
    """One ``method`` ("dpo", "kto") update of ``model`` in the processes ``launch`` starts (see the module
    docstring); returns ``model``, trained in place and in eval mode, and the update's statistics, which
    add ``processes`` (how many trained) to an in-process update's."""
    command = launcher(launch)
    with tempfile.TemporaryDirectory(prefix="codeloop-launch-") as tmp:
        work = Path(tmp)
        model.save_pretrained(work / "policy")
        tokenizer.save_pretrained(work / "policy")
        saved = _reference_folder(reference) if reference is not None and lora is None else None
        write_jsonl(work / "rows.jsonl", rows)
        (work / "spec.json").write_text(json.dumps({"method": method, "settings": settings, "reference": saved and str(saved),
                                                    "lora": asdict(lora) if lora else None}))
        with _off_the_gpu(model, reference):
            _run([*command, "-m", "codeloop.train.launch", str(work)], work / "output.log", launch)
            if not (work / "stats.json").exists():
                raise LaunchError(f"the update launched with {launch!r} exited 0, but no process of it finished the "
                                  f"update: is {command[0]} a launcher that runs 'LAUNCH -m MODULE ARGS' (torchrun, "
                                  "accelerate launch, deepspeed, python)?")
            stats = json.loads((work / "stats.json").read_text())
            if lora is not None:
                from peft import PeftModel

                with quiet():
                    model = PeftModel.from_pretrained(model, str(work / "model")).merge_and_unload()
            else:
                trained = type(model).from_pretrained(str(work / "model"))
                model.load_state_dict(trained.state_dict())
                del trained
    model.eval()
    return model, stats


class _Saved(NamedTuple):
    reference: weakref.ref
    folder: Path
    mark: tuple  # _fingerprint's (layout, version counters, checksums) when it was written
    remove: weakref.finalize  # removes the folder (and this entry): when the reference goes, at exit, or when called


_SAVED: dict[int, _Saved] = {}  # id(reference) -> where it is saved


def _reference_folder(reference: Any) -> Path:
    """The folder ``reference`` is saved in (``save_pretrained``): written at its first launched update, then
    reused while the same object lives and its weights are unchanged; removed once it is gone, or at exit.

    Unchanged means the same names, shapes, dtypes, devices, version counters (every in-place change,
    an optimiser's step or ``load_state_dict``, counts one) and checksums as when it was written: the
    sum of each row and of each column of every tensor (seen as rows by the rest of its dimensions),
    which catch what the counters miss (a ``.data`` assignment, a write through ``.data``, rows or
    columns reordered). Two reads of the weights, no copy of them: faster than writing them
    (``benchmarks/reference_reuse.py``). The loops never change their reference in place (a refreshed
    reference is a new object, written anew)."""
    import torch

    key, mark = id(reference), _fingerprint(reference)
    entry = _SAVED.get(key)
    if (entry is not None and entry.reference() is reference and entry.mark[:2] == mark[:2]
            and torch.equal(entry.mark[2], mark[2])):
        return entry.folder
    if entry is not None:
        entry.remove()  # another object under a reused id, or changed weights: its folder goes
    folder = Path(tempfile.mkdtemp(prefix="codeloop-reference-"))
    try:
        reference.save_pretrained(folder)
    except BaseException:  # a full disk, Ctrl-C: no half-written copy is left behind
        shutil.rmtree(folder, ignore_errors=True)
        raise
    _SAVED[key] = _Saved(weakref.ref(reference), folder, mark, weakref.finalize(reference, _forget, key, folder))
    return folder


def _forget(key: int, folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    if key in _SAVED and _SAVED[key].folder == folder:
        del _SAVED[key]


def _fingerprint(model: Any) -> tuple[tuple, tuple, Any]:
    """(names, shapes, dtypes and devices; version counters; the checksums, on the CPU)."""
    import torch

    tensors = list(model.state_dict(keep_vars=True).items())
    try:
        versions = tuple(t._version for _, t in tensors)
    except RuntimeError:  # inference tensors keep no version counter: NaN, which equals nothing, forces a write
        versions = ()
    with torch.no_grad():
        sums = [torch.cat([_checksum(t) for _, t in tensors if str(t.device) == device]).cpu()
                for device in sorted({str(t.device) for _, t in tensors})]  # one transfer per device
    checks = torch.cat([*sums, torch.full((0 if versions else 1,), float("nan"))])
    return tuple((name, tuple(t.shape), str(t.dtype), str(t.device)) for name, t in tensors), versions, checks


def _checksum(tensor: Any) -> Any:
    import torch

    t = torch.view_as_real(tensor) if tensor.is_complex() else tensor
    t = t if t.is_floating_point() else t.to(torch.float32)  # integer and bool buffers (small)
    grid = t.reshape(t.shape[0] if t.dim() else 1, -1) if t.numel() else t.reshape(0, 0)
    return torch.cat([grid.sum(dim=1, dtype=torch.float32), grid.sum(dim=0, dtype=torch.float32)])


def launched_as(stats: dict) -> dict:
    """How an update ran, for a loop's metrics row: for a launched update, how many processes trained and
    accelerate's distributed type there (``FSDP``, ``DEEPSPEED``, ``MULTI_GPU``; ``MULTI_CPU`` without
    GPUs, whatever the config asked for); nothing for an update in the loop's own process."""
    return {key: stats[key] for key in ("processes", "distributed") if key in stats}


@contextlib.contextmanager
def _off_the_gpu(*models: Any) -> Iterator[None]:
    """The models on the CPU for the block (their GPU memory given back), then where they were."""
    import torch

    places = [(m, m.device) for m in models if m is not None and m.device.type != "cpu"]
    for m, _ in places:
        m.to("cpu")
    if places:
        torch.cuda.empty_cache()
    try:
        yield
    finally:
        for m, device in places:
            m.to(device)


def _run(command: list[str], log: Path, launch: str) -> None:
    """``command`` in a session of its own, stdin closed, output into ``log``; once it ends, or the caller
    stops (Ctrl-C), every process left in its session is killed."""
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            code = process.wait()
        finally:
            left = end_session(process.pid)  # the launcher's workers too, were any left behind
            process.wait()
    if left:
        warnings.warn(f"processes {left} of the update launched with {launch!r} still run 10 s after SIGKILL "
                      "(blocked in the kernel?)", RuntimeWarning, stacklevel=2)
    if code == 0:
        return
    kept = tempfile.NamedTemporaryFile(prefix="codeloop-launch-", suffix=".log", delete=False)  # outlives the folder
    with kept:
        kept.write(log.read_bytes())
    failed = f"the update launched with {launch!r} failed (exit {code}; its whole output is in {kept.name})"
    reports = {int(p.stem.split(".")[1]): p for p in log.parent.glob("error.*.txt")}  # error.RANK.txt
    if reports:  # what the first failing rank said, not the launcher's account of it
        rank = min(reports)
        raise LaunchError(f"{failed}; process {rank}: {reports[rank].read_text().strip()}")
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    raise LaunchError(f"{failed}; its last lines:\n{tail}")


def main(argv: list[str] | None = None) -> NoReturn:
    """One process's part of a launched update: ``python -m codeloop.train.launch FOLDER``. A process that
    fails says why in ``FOLDER/error.RANK.txt`` (the loop reports the first rank's), and on stderr.

    The process then ends at once (:func:`_end`), its trainer and process group never torn down: PyTorch
    can deadlock destroying a Gloo process group just after a collective. Its worker thread frees the
    finished work under the group's lock and needs the GIL for the tensors it held; the thread freeing
    the group (DDP's reducer, when the trainer went) holds the GIL and waits for that lock. A rank stuck
    so never exits, and the launcher and the loop wait for it for ever (seen in CI, and in 1 of 14 runs
    of tests/test_launch.py here: rank 1 in ``~ProcessGroupGloo``, its part of the update done)."""
    (folder,) = sys.argv[1:] if argv is None else argv
    work = Path(folder)
    rank = os.environ.get("RANK", "0")
    try:
        trainer = _update(work)
    except Exception as error:
        import traceback

        refusal = isinstance(error, _Refused)
        text = str(error) if refusal else traceback.format_exc()
        (work / f"error.{rank}.txt").write_text(text)
        print(f"codeloop: {text}", file=sys.stderr)
        _end(2 if refusal else 1)  # here, while the failed frames (and what they hold) still live
    _end(0, trainer)


def _end(code: int, *alive: Any) -> NoReturn:
    """Flush the output (Python's, and the C library's that native code writes through) and leave with
    ``code``, running no destructor, atexit hook or finaliser (what ``alive`` holds stays alive until the
    process is gone)."""
    import ctypes

    sys.stdout.flush()
    sys.stderr.flush()
    ctypes.CDLL(None).fflush(None)
    os._exit(code)


class _Refused(ValueError):
    """Settings the launched processes cannot train with."""


def _update(work: Path) -> Any:
    """This process's part of the update in ``work``; returns its trainer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = json.loads((work / "spec.json").read_text())
    settings, processes = spec["settings"], int(os.environ.get("WORLD_SIZE", "1"))
    if settings["batch_size"] % processes:
        raise _Refused(f"batch_size {settings['batch_size']} does not split evenly over the {processes} processes "
                       "launched: choose a batch_size that is a multiple of their number")
    model = AutoModelForCausalLM.from_pretrained(work / "policy")
    tokenizer = AutoTokenizer.from_pretrained(work / "policy")
    reference = AutoModelForCausalLM.from_pretrained(spec["reference"]) if spec["reference"] else None
    lora = LoRA(**spec["lora"]) if spec["lora"] else None
    rows = [row for _, row in read_jsonl(work / "rows.jsonl")]
    with tempfile.TemporaryDirectory(prefix="codeloop-trl-") as out, quiet():
        trainer = build_trainer(spec["method"], model, reference, tokenizer, rows, settings, lora, out, processes)
        stats = train(trainer)
        trainer.save_model(str(work / "model"))
    if trainer.accelerator.is_main_process:
        (work / "stats.json").write_text(json.dumps({**stats, "processes": trainer.accelerator.num_processes,
                                                     "distributed": trainer.accelerator.distributed_type.value}))
    return trainer  # kept by main until the process ends: freeing it frees the process group (see main)


if __name__ == "__main__":
    main()
