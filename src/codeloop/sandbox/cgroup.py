"""A cgroup per sandbox worker: a sample's memory, process count and CPU, all its processes together.

rlimits are per process. RLIMIT_AS bounds each process's address space, so a sample that forks its 64
allowed processes, each filling ``memory_mb``, held 64 times ``memory_mb`` of the host's memory. Where
the machine lets the evaluator make cgroups (as root, or in a cgroup v2 subtree delegated to the
caller), :class:`~codeloop.sandbox.Sandbox` makes one per worker and the worker moves its zygote into
it before the first job, so every sample process is born there:

* memory: ``memory_mb`` + :data:`MARGIN_MB` for all that the zygote and its sample allocate from then
  on (anonymous memory, files the sample writes in /tmp or /dev/shm, which are tmpfs, page tables), and
  no swap beyond it. Over the limit the kernel reclaims, then kills a process of the sample (the worker
  gives its zygote, and so every sample process, an ``oom_score_adj`` of 1000, and a sample's process
  always holds more than the zygote): the verdict is ``memory_exceeded``, told from other kills by the
  cgroup's count of them (:func:`oom_kills`);
* pids: ``nproc`` + :data:`OWN_TASKS` tasks (processes and threads) for the zygote and its sample.
  Beyond it fork() fails with EAGAIN, whatever the sample's uid (RLIMIT_NPROC does not bind a caller who
  is root, nor at level userns before Linux 5.14);
* cpu: one CPU's time (``cpus``) per :data:`PERIOD_US`, however many processes the sample runs: a
  sample that forks busy processes cannot take the CPUs of the other workers' samples (and make them
  time out), whatever affinity it sets itself.

A worker runs one sample at a time, so its cgroup is its sample's, and nothing is done per sample.
Memory a process held before it moved stays charged to its old cgroup: the zygote's pages count there,
and only what a sample copies or allocates counts here.

The controllers are found from ``/proc/self/mountinfo`` and ``/proc/self/cgroup``: in a cgroup v1
hierarchy (``memory``, ``pids``, ``cpu``), the new cgroup is a child of the evaluator's own; in cgroup
v2, a sibling of it (a v2 cgroup that holds processes, such as the evaluator's, may not have children
with controllers), in a parent whose ``cgroup.subtree_control`` has, or can be given, the controllers.
A hierarchy that refuses is left out; if all do, :class:`Unavailable` says why, and the sandbox then
limits memory per process only.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from dataclasses import dataclass

CONTROLLERS = ("memory", "pids", "cpu")
PERIOD_US = 100_000
"""The CPU quota's period (the kernel's default): a sample over its quota waits for the next one."""
MARGIN_MB = 64
"""Memory beyond ``memory_mb``: the zygote's own copies while a sample runs, the sample's page tables."""
OWN_TASKS = 2
"""Tasks beyond ``nproc``: the zygote and, at level userns, the intermediate process (see :mod:`zygote`).
So a sample, its threads and the processes it starts are ``nproc`` tasks at most, as RLIMIT_NPROC has it."""
PREFIX = "codeloop-"


class Unavailable(OSError):
    """No cgroup can be made here (no controller, not ours to write, ...); the message says why."""


@dataclass(frozen=True)
class Hierarchy:
    """Where a controller lives: a mounted cgroup hierarchy, and the evaluator's own cgroup in it."""

    version: int  # 1 or 2
    mount: str  # where the hierarchy is mounted
    own: str  # the evaluator's cgroup, as a directory under ``mount``
    controllers: tuple[str, ...]  # those of CONTROLLERS it holds (v2: all it may offer; see _enable)

    @property
    def parent(self) -> str:
        """Where a worker's cgroup goes: a child of ``own`` in v1, a sibling in v2 (see the module docstring),
        or a child of the root, which may have both processes and children."""
        if self.version == 1 or self.own == self.mount:
            return self.own
        return os.path.dirname(self.own)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def hierarchies(mountinfo: str, cgroups: str) -> list[Hierarchy]:
    """The hierarchies holding :data:`CONTROLLERS`, from the texts of /proc/self/mountinfo and
    /proc/self/cgroup: each controller in its v1 hierarchy if one is mounted, else in v2."""
    own: dict[str, str] = {}  # controller (or "" for v2) -> our path in that hierarchy
    for line in cgroups.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for name in (parts[1].split(",") if parts[1] else [""]):
                own[name] = parts[2]
    found: list[Hierarchy] = []
    taken: set[str] = set()
    v2: tuple[str, str] | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        root, mount, fstype, options = _unescape(fields[3]), _unescape(fields[4]), fields[dash + 1], fields[dash + 3]
        if fstype == "cgroup2" and v2 is None and "" in own:
            v2 = (root, mount)
        elif fstype == "cgroup":
            names = [c for c in CONTROLLERS if c in options.split(",") and c not in taken and c in own]
            path = _under(own[names[0]], root, mount) if names else None
            if path is not None:
                found.append(Hierarchy(1, mount, path, tuple(names)))
                taken.update(names)
    rest = [c for c in CONTROLLERS if c not in taken]
    if v2 is not None and rest:
        path = _under(own[""], *v2)
        if path is not None:
            found.append(Hierarchy(2, v2[1], path, tuple(rest)))
    return found


def _under(path: str, root: str, mount: str) -> str | None:
    """The directory of cgroup ``path`` in a hierarchy whose ``root`` is mounted at ``mount`` (None if the
    mount does not show it)."""
    if root == "/":
        return os.path.normpath(mount + path)
    if path == root or path.startswith(root.rstrip("/") + "/"):
        return os.path.normpath(mount + path[len(root):])
    return None


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:  # a mount point's name may be any bytes
        return f.read()


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Cgroup:
    """One worker's cgroup: a directory in each hierarchy that holds one of :data:`CONTROLLERS`."""

    dirs: tuple[str, ...]
    controllers: tuple[str, ...]
    versions: tuple[int, ...]
    oom_events: str = ""
    """The file that counts its out-of-memory kills (memory.oom_control in v1, memory.events in v2)."""

    @property
    def procs(self) -> tuple[str, ...]:
        """The files a process's pid is written to, to move it in."""
        return tuple(os.path.join(d, "cgroup.procs") for d in self.dirs)

    def describe(self) -> str:
        return f"cgroup v{'+v'.join(map(str, sorted(set(self.versions))))}: {', '.join(self.controllers)}"

    def remove(self, wait_s: float = 2.0) -> None:
        """Kill what is left in it (the worker is gone by now; its zygote and sample follow it) and remove it."""
        deadline = time.monotonic() + wait_s
        for d in self.dirs:
            while True:
                _kill_all(d)
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        break  # left for the next evaluator's sweep (see _sweep)
                    time.sleep(0.002)  # its zygote and sample are still going, a few ms


def _kill_all(directory: str) -> None:
    try:
        pids = [int(p) for p in _read(os.path.join(directory, "cgroup.procs")).split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def create(name: str, memory_mb: int, nproc: int, cpus: float = 1.0, mountinfo: str | None = None,
           cgroups: str | None = None) -> Cgroup:
    """Make the cgroup ``PREFIX + name`` (see the module docstring); raise :class:`Unavailable` saying why not."""
    try:
        mountinfo = _read("/proc/self/mountinfo") if mountinfo is None else mountinfo
        cgroups = _read("/proc/self/cgroup") if cgroups is None else cgroups
    except OSError as exc:
        raise Unavailable(f"no cgroups here ({exc.strerror})") from None
    found = hierarchies(mountinfo, cgroups)
    if not found:
        raise Unavailable("no memory, pids or cpu controller is mounted")
    made: list[str] = []
    controllers: list[str] = []
    versions: list[int] = []
    oom_events = ""
    refused: list[str] = []  # why a hierarchy went without: the others still bound what they can
    try:
        for h in found:
            usable = _enable(h)
            if not usable:
                refused.append(f"the cgroup v2 parent {h.parent} does not offer {' or '.join(h.controllers)} to its "
                               "children, and cannot be made to (it holds processes, or is not ours)")
                continue
            _sweep(h.parent)
            directory = os.path.join(h.parent, PREFIX + name)
            try:
                os.mkdir(directory, 0o755)
            except OSError as exc:
                refused.append(f"cannot make {directory}: {exc.strerror}")
                continue
            try:
                _limit(directory, h.version, usable, memory_mb, nproc, cpus)
            except Unavailable as exc:
                Cgroup((directory,), (), ()).remove(0)
                refused.append(str(exc))
                continue
            made.append(directory)
            controllers += usable
            versions.append(h.version)
            if "memory" in usable:
                oom_events = os.path.join(directory, "memory.oom_control" if h.version == 1 else "memory.events")
    except BaseException:
        Cgroup(tuple(made), (), ()).remove(0)
        raise
    if not made:
        raise Unavailable("; ".join(refused))
    return Cgroup(tuple(made), tuple(controllers), tuple(versions), oom_events)


def cpu_limit(mountinfo: str | None = None, cgroups: str | None = None) -> float | None:
    """How many CPUs' worth of time this process's cgroup, or any above it, may use (its CPU quota: v1
    ``cpu.cfs_quota_us / cpu.cfs_period_us``, v2 ``cpu.max``); None where none is set or none can be
    read. A container with a quota (a Kubernetes pod's ``limits.cpu``) still sees every CPU of its host
    in its affinity, so the affinity alone overstates what it may use."""
    try:
        mountinfo = _read("/proc/self/mountinfo") if mountinfo is None else mountinfo
        cgroups = _read("/proc/self/cgroup") if cgroups is None else cgroups
    except OSError:
        return None
    limits: list[float] = []
    for h in hierarchies(mountinfo, cgroups):
        if "cpu" not in h.controllers:
            continue
        directory = h.own
        while True:
            quota = _quota(directory, h.version)
            if quota is not None:
                limits.append(quota)
            if os.path.normpath(directory) == os.path.normpath(h.mount) or directory in ("", "/"):
                break
            directory = os.path.dirname(directory)
    return min(limits) if limits else None


def _quota(directory: str, version: int) -> float | None:
    try:
        if version == 1:
            quota = int(_read(os.path.join(directory, "cpu.cfs_quota_us")))
            period = int(_read(os.path.join(directory, "cpu.cfs_period_us")))
        else:
            fields = _read(os.path.join(directory, "cpu.max")).split()
            if fields[0] == "max":
                return None
            quota, period = int(fields[0]), int(fields[1])
    except (OSError, ValueError, IndexError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def oom_kills(fd: int) -> int | None:
    """How many processes the kernel has killed for want of memory in a cgroup, from its
    :attr:`Cgroup.oom_events` file opened as ``fd`` (None where the kernel does not count them: v1 before
    Linux 4.13)."""
    try:
        text = os.pread(fd, 4096, 0).decode("ascii", "replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


def _enable(h: Hierarchy) -> list[str]:
    """The controllers of ``h`` its new cgroup will have (v2: those its parent offers, enabled there if need be)."""
    if h.version == 1:
        return list(h.controllers)
    try:
        offered = _read(os.path.join(h.parent, "cgroup.subtree_control")).split()
        available = _read(os.path.join(h.parent, "cgroup.controllers")).split()
    except OSError:
        return []
    usable = [c for c in h.controllers if c in offered]
    for c in h.controllers:
        if c not in offered and c in available:
            try:
                _write(os.path.join(h.parent, "cgroup.subtree_control"), f"+{c}")
                usable.append(c)
            except OSError:
                pass
    return usable


def _limit(directory: str, version: int, controllers: list[str], memory_mb: int, nproc: int, cpus: float) -> None:
    limit = str((memory_mb + MARGIN_MB) << 20)
    quota = str(max(1000, round(cpus * PERIOD_US)))
    writes = []
    if "memory" in controllers:
        writes += ([("memory.limit_in_bytes", limit), ("memory.memsw.limit_in_bytes", limit)] if version == 1
                   else [("memory.max", limit), ("memory.swap.max", "0")])
    if "pids" in controllers:
        writes.append(("pids.max", str(nproc + OWN_TASKS)))
    if "cpu" in controllers:
        writes += ([("cpu.cfs_period_us", str(PERIOD_US)), ("cpu.cfs_quota_us", quota)] if version == 1
                   else [("cpu.max", f"{quota} {PERIOD_US}")])
    for file, value in writes:
        path = os.path.join(directory, file)
        if file.startswith("memory.memsw") or file == "memory.swap.max":
            if not os.path.exists(path):  # no swap accounting in this kernel: nothing to bound
                continue
        try:
            _write(path, value)
        except OSError as exc:
            raise Unavailable(f"cannot set {path}: {exc.strerror}") from None


def _sweep(parent: str) -> None:
    """Remove the empty cgroups of evaluators that are gone (killed before they could)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for entry in names:
        m = re.fullmatch(re.escape(PREFIX) + r"(\d+)-\d+", entry)
        if m and not _alive(int(m.group(1))):
            try:
                os.rmdir(os.path.join(parent, entry))
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
