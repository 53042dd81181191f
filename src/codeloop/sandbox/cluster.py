"""Execution fanned out over a Ray cluster: :class:`RaySandbox`, and :func:`open_sandbox`, which picks it
or the local :class:`~codeloop.sandbox.Sandbox`.

``RaySandbox("auto", workers=64).run(jobs)`` yields the same outcomes, in the same order, as
``Sandbox(workers=...).run(jobs)``: each of ``workers`` Ray actors (one CPU each, placed wherever the
cluster has room) holds a one-worker local Sandbox, pinned to a CPU it leases on its node
(:func:`lease_cpu`; where Ray counts that node's CPUs, see ``pin``) as the local Sandbox pins its
workers, and the jobs travel to them in chunks, two chunks
queued at every actor so none waits between them. Every verdict is still decided by a sandbox worker
on the node that ran the sample; Ray only carries jobs out and plain outcomes back. Nothing here is a
scheduler of its own: placement, restarts and retries are Ray's (an actor whose process dies is
restarted and its chunk run again, ``max_restarts``/``max_task_retries``); a chunk whose actor is gone
for good goes once more to a live actor, and only then are its jobs infra errors. One bound is added to
Ray's: an actor waiting for a restart that cannot come (its node lost, no free CPU anywhere) would hold
its chunks for ever, so when no chunk has come back for a while the busy actors are pinged, and one that
does not answer within ``start_timeout_s`` is given up for good (its chunks move on).

What the nodes need
    Ray and the driver's Python version, as for any Ray job. The driver's codeloop is sent to them when
    RaySandbox connects to Ray itself (``ship``; the sandbox imports only the standard library);
    otherwise the same codeloop version must be installed where the Ray workers import from (checked
    when an actor starts). The sandbox's containment is per node, as on one machine: run
    the Ray workers as root (or where user namespaces are allowed) for the "root" ("userns") level. At
    level "none" a sample shares the network with the Ray node, so it could reach the cluster's own
    services: that level is for trusted code only, here more than anywhere.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import codeloop
from codeloop.sandbox.judge import Job
from codeloop.sandbox.pool import Sandbox, SandboxError, usable_cpus
from codeloop.types import Outcome, Status

START_TIMEOUT_S = 120.0
"""How long the actors may take, by default, to be placed and to start their sandboxes (or to restart)."""
PROBE_EVERY_S = 30.0
"""With chunks in flight and none coming back for this long (or a quarter of ``start_timeout_s``, if
shorter), the busy actors are pinged."""
CONNECT_TIMEOUT_S = 5.0
"""How long a HOST:PORT address may take to accept a connection before it is refused as unreachable."""


class _Slot:
    """A Ray actor's body: one local sandbox worker, started on first use (so that a SandboxError, such as
    another codeloop version on the node, comes back to the driver as the error of a call, not of the
    actor's creation). Defined at module level: Ray pickles the class by reference, and the node imports
    it from the codeloop it has (shipped, or installed there)."""

    def __init__(self, version: str, options: dict[str, Any], pin: bool | None = None) -> None:
        self.version, self.options, self.pin = version, options, pin
        self.sandbox: Sandbox | None = None
        self.lease: tuple[int, socket.socket] | None = None

    def _sandbox(self) -> Sandbox:
        if self.sandbox is None:
            if self.version != codeloop.__version__:
                raise SandboxError(f"a Ray node has codeloop {codeloop.__version__}, the driver {self.version}: "
                                   "install the same codeloop on every node, or let codeloop start the connection to "
                                   "Ray, which sends it to the nodes")
            pin = self.pin if self.pin is not None else _node_cpus() == len(usable_cpus())  # see RaySandbox
            self.lease = lease_cpu() if pin else None
            cpus = [self.lease[0]] if self.lease else None
            self.sandbox = Sandbox(workers=1, cpus=cpus, **self.options)
        return self.sandbox

    def level(self) -> str:
        return self._sandbox().level  # starts the worker

    def where(self) -> tuple[int, str]:
        """(the actor's pid, the file its codeloop was imported from)."""
        return os.getpid(), codeloop.__file__ or ""

    def cpu(self) -> int | None:
        """The CPU its worker (with its zygote and samples) is pinned to, if it leased one."""
        return self.lease[0] if self.lease else None

    def run(self, jobs: list[Job]) -> list[Outcome]:
        return list(self._sandbox().run(jobs))

    def close(self) -> None:
        """Close its sandbox (which removes its worker's cgroups) and give back its CPU lease, before Ray
        kills the actor's process: killed, it would leave its cgroups behind, empty, until the next
        sandbox on the node swept them."""
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None
        if self.lease is not None:
            self.lease[1].close()
            self.lease = None


class RaySandbox:
    """The local Sandbox's interface (``run``, ``run_one``, ``level``, a context manager) over a Ray cluster.

    ``address`` is what ``ray.init`` takes ("auto": the cluster this machine has joined; "ray://HOST:10001":
    a remote one), or "local" to start Ray on this machine. When Ray is already initialised in this
    process, that connection is used and ``address`` is ignored. ``workers`` is the number of actors
    (one CPU each; default: every CPU the cluster has free), which must all start within ``start_timeout_s``.
    ``chunk`` jobs travel per Ray call. With ``ship`` (the default), when this sandbox connects to Ray,
    this codeloop travels to the nodes (Ray's job-level ``runtime_env`` ``py_modules``; the sandbox needs
    nothing outside the standard library), so a node needs only Ray. Otherwise (``ship=False``, or Ray
    initialised before, without it) each node imports its own codeloop, which must be the same version.
    With ``pin`` each actor leases a CPU of its node that no other actor there holds (:func:`lease_cpu`)
    and runs its worker, zygote and samples on it, as the local Sandbox pins its workers (an actor that
    finds none free goes unpinned). By default (None) an actor pins where Ray counts as many CPUs on its
    node as the actor may run on: a node told fewer (a container with a CPU quota but every CPU of its
    host in view, as in Kubernetes, or ``ray start --num-cpus``) may share its host's CPUs with other
    nodes, whose actors, leasing in namespaces of their own, would pile onto the same first CPUs.
    ``pin=False`` never pins. The other options are the local Sandbox's and apply on every node.
    """

    def __init__(self, address: str = "auto", workers: int | None = None, timeout_s: float = 3.0,
                 memory_mb: int = 2048, isolation: str = "auto", preload: Iterable[str] = (), chunk: int = 16,
                 start_timeout_s: float = START_TIMEOUT_S, ship: bool = True, hide: Iterable[str] = (),
                 pin: bool | None = None) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        Sandbox(timeout_s=timeout_s, memory_mb=memory_mb, isolation=isolation, preload=preload)  # its checks; starts nothing
        self.address, self.n_workers, self.chunk, self.start_timeout_s = address, workers, chunk, start_timeout_s
        self.ship, self.pin = ship, pin
        self.options = {"timeout_s": timeout_s, "memory_mb": memory_mb, "isolation": isolation, "preload": tuple(preload),
                        "hide": tuple(hide)}  # the driver's paths: hidden where a node has them too
        self._slots: list[Any] = []
        self._level = ""
        self._started = 0  # actors started (they may have closed since)
        self._owns_ray = False

    def _ray(self) -> Any:
        try:
            import ray
        except ImportError:
            raise SandboxError("running the sandbox on Ray needs Ray: pip install 'codeloop[ray]'") from None
        return ray

    def _start(self) -> None:
        if self._slots:
            return
        ray = self._ray()
        if not ray.is_initialized():
            _answers(self.address)
            try:
                shipped = {"py_modules": [str(Path(codeloop.__file__ or "").parent)]} if self.ship else None
                ray.init(address=None if self.address == "local" else self.address, log_to_driver=False, runtime_env=shipped)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise SandboxError(f"cannot connect to the Ray cluster at {self.address!r}: {exc}") from None
            self._owns_ray = True
        free = ray.available_resources().get("CPU", 0)
        n = self.n_workers or int(free)
        if n < 1:
            raise SandboxError("the Ray cluster has no free CPU for sandbox workers")
        # "health": a thread of its own for pings, answered while a chunk runs in the default group (one at a time)
        actor = ray.remote(num_cpus=1, max_restarts=2, max_task_retries=2, concurrency_groups={"health": 1})(_Slot)
        slots = [actor.remote(codeloop.__version__, self.options, self.pin) for _ in range(n)]
        pending = [slot.level.remote() for slot in slots]
        ready, waiting = ray.wait(pending, num_returns=len(pending), timeout=self.start_timeout_s)
        try:
            if waiting:
                raise SandboxError(f"only {len(ready)} of {n} sandbox actors started on the Ray cluster within "
                                   f"{self.start_timeout_s:g} s (each needs one free CPU): ask for fewer workers")
            levels = ray.get(ready)
        except BaseException as exc:
            started = set(ready)  # an actor never placed would not answer a request to close
            _release(ray, slots, free, [slot for slot, ref in zip(slots, pending) if ref in started])
            if isinstance(exc, ray.exceptions.RayError):  # a task's own error is its cause; Ray's end with theirs
                cause = getattr(exc, "cause", None) or str(exc).strip().splitlines()[-1]
                raise SandboxError(f"a sandbox actor failed to start on the Ray cluster: {cause}") from None
            raise
        self._slots, self._level, self._started = slots, levels[0], len(slots)

    @property
    def level(self) -> str:
        """The isolation level the actors' workers achieved (the first actor's: nodes are alike). Starts
        the actors unless they ran already (after :meth:`close`: the level they had)."""
        if not self._level:
            self._start()
        return self._level

    @property
    def containment(self) -> str:
        """One line on what holds the samples (starts the actors)."""
        return (f"sandbox: over Ray ({self.address}), {self.workers} workers at isolation {self.level}, each sample "
                "held by its node's sandbox as on one machine")

    @property
    def workers(self) -> int:
        """Sandbox workers over the cluster (starts them, as :attr:`level` does)."""
        if not self._level:
            self._start()
        return self._started

    def __enter__(self) -> RaySandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._slots:
            ray = self._ray()
            free = ray.available_resources().get("CPU", 0) + len(self._slots)  # less any actor already gone:
            _release(ray, self._slots, min(free, ray.cluster_resources().get("CPU", 0)))  # never more than exist
            self._slots = []
        if self._owns_ray:
            self._ray().shutdown()
            self._owns_ray = False

    def run_one(self, job: Job) -> Outcome:
        return next(iter(self.run([job])))

    def run(self, jobs: Iterable[Job], on_done: Callable[[], None] | None = None) -> Iterator[Outcome]:
        """Judge ``jobs`` on the cluster; yield outcomes in input order; ``on_done`` once per job, as
        each chunk comes back. A chunk whose actor is gone for good (past Ray's restarts) goes once more
        to a live actor; after that, or with none left, its jobs are infra errors."""
        self._start()
        ray = self._ray()
        listed = list(jobs)
        chunks = deque((start, listed[start:start + self.chunk], 0) for start in range(0, len(listed), self.chunk))
        in_flight: dict[Any, tuple[int, int, list[Job], int]] = {}  # ref -> (slot, first job, jobs, tries)
        dead: set[int] = set()
        pings = _Pings(ray, self._slots, self.start_timeout_s)
        done: dict[int, list[Outcome]] = {}
        next_out = 0

        def finish(start: int, outcomes: list[Outcome]) -> None:
            done[start] = outcomes
            for _ in range(len(outcomes) if on_done else 0):
                on_done()  # type: ignore[misc]

        try:
            while chunks or in_flight:
                load = Counter(i for i, *_ in in_flight.values())
                for i, slot in enumerate(self._slots):
                    for _ in range(0 if i in dead else 2 - load[i]):
                        if chunks:
                            start, part, tries = chunks.popleft()
                            in_flight[slot.run.remote(part)] = (i, start, part, tries)
                if not in_flight:  # every actor is gone
                    while chunks:
                        start, part, _ = chunks.popleft()
                        finish(start, _lost(len(part)))
                else:
                    ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=min(PROBE_EVERY_S, self.start_timeout_s / 4))
                    if not ready:  # its chunks come back as RayActorError at a later wait
                        for i in pings.unanswered({i for i, *_ in in_flight.values()} - dead):
                            ray.kill(self._slots[i], no_restart=True)
                    for ref in ready:
                        i, start, part, tries = in_flight.pop(ref)
                        pings.forget(i)  # it answered
                        try:
                            finish(start, ray.get(ref))
                        except ray.exceptions.RayActorError:
                            dead.add(i)
                            if tries == 0:
                                chunks.appendleft((start, part, 1))
                            else:
                                finish(start, _lost(len(part)))
                while next_out in done:
                    part_out = done.pop(next_out)
                    next_out += len(part_out)
                    yield from part_out
        finally:
            for ref in in_flight:  # a caller that stopped early: queued chunks are dropped
                ray.cancel(ref)


class _Pings:
    """Whether busy actors still answer: a ping (``where``, in the "health" group) to each actor that holds
    chunks, when none has come back for a while."""

    def __init__(self, ray: Any, slots: list[Any], patience_s: float) -> None:
        self.ray, self.slots, self.patience_s = ray, slots, patience_s
        self.sent: dict[int, tuple[Any, float]] = {}  # actor -> (its ping, when sent)

    def unanswered(self, busy: set[int]) -> list[int]:
        """Ping the ``busy`` actors not pinged yet; return those whose ping went unanswered for ``patience_s``
        (an answer, or an error, clears the ping)."""
        now = time.monotonic()
        for i in busy - self.sent.keys():
            self.sent[i] = (self.slots[i].where.options(concurrency_group="health").remote(), now)
        refs = [ref for ref, _ in self.sent.values()]
        if not refs:  # every actor holding chunks is already given up (ray.wait refuses an empty wait)
            return []
        answered = set(self.ray.wait(refs, num_returns=len(refs), timeout=0)[0])
        silent = []
        for i, (ref, since) in list(self.sent.items()):
            if ref in answered or now - since > self.patience_s:
                del self.sent[i]
                if ref not in answered:
                    silent.append(i)
        return silent

    def forget(self, i: int) -> None:
        self.sent.pop(i, None)


def _node_cpus() -> float:
    """The CPUs Ray counts on this actor's node (0 if it cannot tell)."""
    try:
        import ray

        node = ray.get_runtime_context().get_node_id()
        return float(next(n["Resources"].get("CPU", 0) for n in ray.nodes() if n["NodeID"] == node))
    except Exception:  # noqa: BLE001 - not in a Ray worker, or Ray's answer changed shape: do not pin
        return 0.0


LEASE_WAIT_S = 2.0
"""How long an actor that finds every CPU of its node leased waits for one to come free (an actor just
killed, say by the previous sandbox's close, may not have exited yet) before it goes unpinned."""


def lease_cpu(wait_s: float = LEASE_WAIT_S) -> tuple[int, socket.socket] | None:
    """A CPU of this node that no other sandbox actor of this user holds, and the lease on it: the first of
    this process's usable CPUs whose name (an abstract Unix socket, ``codeloop-cpu-UID-N``) this process
    could bind. The kernel frees the name when the last descriptor on it closes, however the actor's
    process ends, so nothing is left behind and no file is written. None when every CPU stays leased for
    ``wait_s`` (more actors than CPUs on the node: those go unpinned). Names are per network namespace:
    actors share a node's CPUs through them when they share its network, as a raylet's workers do."""
    deadline = time.monotonic() + wait_s
    while True:
        for cpu in usable_cpus():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(f"\0codeloop-cpu-{os.getuid()}-{cpu}")
            except OSError:
                sock.close()
                continue
            return cpu, sock
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def _lost(size: int) -> list[Outcome]:
    reason = "sandbox actor lost on the Ray cluster for good (past Ray's restarts)"
    return [Outcome(Status.INFRA_ERROR, reason=reason) for _ in range(size)]


CLOSE_WAIT_S = 10.0
"""How long the actors may take to close their sandboxes before they are killed anyway."""


def _release(ray: Any, slots: list[Any], free: float, started: list[Any] | None = None) -> None:
    """Ask the ``started`` actors (default: all) to close their sandboxes (at most :data:`CLOSE_WAIT_S`:
    one that is gone or busy does not hold up the rest), then kill all of them (a worker and zygote
    left die with them: their pipes close), and wait until the cluster has ``free`` CPUs again, at most
    10 s: Ray frees them asynchronously, and the next sandbox (the next iteration's, the next test's)
    must find them free."""
    closing = [slot.close.remote() for slot in (slots if started is None else started)]
    if closing:
        with contextlib.suppress(Exception):
            ray.wait(closing, num_returns=len(closing), timeout=CLOSE_WAIT_S)
    for slot in slots:
        ray.kill(slot)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and ray.available_resources().get("CPU", 0) < free:
        time.sleep(0.05)


def _answers(address: str) -> None:
    """Fail fast where nothing listens at a HOST:PORT address: ``ray.init`` would wait for it for minutes."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)/?", address)
    if not match:
        return  # "auto", "local", or a form Ray itself resolves
    host, port = match[1], int(match[2])
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise SandboxError(f"cannot connect to the Ray cluster at {address!r}: nothing answers at {host}:{port} "
                           f"({exc.strerror or type(exc).__name__})") from None


def open_sandbox(ray: str = "", **options: Any) -> Sandbox | RaySandbox:
    """A local :class:`Sandbox` (``ray`` empty) or a :class:`RaySandbox` at that address, with ``options``."""
    return RaySandbox(ray, **options) if ray else Sandbox(**options)
