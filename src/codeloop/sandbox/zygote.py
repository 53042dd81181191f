"""The zygote: a clean process that forks one sample process per request.

The worker starts it (fork, then exec of a fresh interpreter: :func:`exec_zygote`) at start-up, before
it has seen any task, so a sample (a fork of the zygote) inherits no test code, no expected output and
no other sample's program, nor any module of the worker's it does not need. It receives the
sample's four descriptors (request pipe, response pipe, stdout file, stderr file) and its temp dir
from the worker over a Unix socket (SCM_RIGHTS), forks the sample, and on the worker's word kills it
(and, through its PID namespace, everything it started), reaps it and reports how it ended.

Every fork write-protects the zygote's own pages, so each page it touches afterwards costs it a fault:
its loop does as little as it can. Temp dirs and outputs are the worker's (:mod:`scratch`).
"""

from __future__ import annotations

import gc
import importlib
import marshal
import os
import random
import signal
import socket
import struct
import sys
from types import CodeType
from typing import NoReturn

from codeloop.sandbox import _linux, seccomp
from codeloop.sandbox.child import Limits, apply_shared_limits, prepare_zygote, sample_main

REPLY = struct.Struct("=idq")  # wait status, CPU seconds (user + system), max RSS in KiB
_FDS = struct.Struct("=4i")
_ANCILLARY = socket.CMSG_LEN(_FDS.size)


_LIMITS = struct.Struct("=5q")

ON_DEMAND = frozenset((
    "abc array bisect calendar cmath collections collections.abc contextlib copy dataclasses datetime "
    "decimal difflib enum fractions functools hashlib heapq io itertools json math numbers operator "
    "pprint queue random re statistics string struct textwrap time typing unicodedata"
).split())
"""Standard-library modules the zygote imports, once, before it forks the first sample whose program
names one (:func:`modules_named`): later samples find it in sys.modules instead of each paying the
import (1-5 ms). On demand, not all at start, since every page the zygote holds makes each fork and
exit dearer (page tables to copy and tear down): all of them add ~0.1 ms to each fork + exit
(``benchmarks/fork_cost.py``), and HumanEval's programs name five (typing, math, re, collections,
hashlib). Nothing else is ever imported there: the zygote keeps the privileges samples drop, and an
import runs the module's code."""


def modules_named(code: CodeType) -> list[str]:
    """The :data:`ON_DEMAND` modules that ``code`` (or a function in it) may import: each one whose name
    it uses. An over-estimate, on purpose (a variable called ``copy`` counts too, costing one import
    once); a name built at run time (``__import__(name)``) is missed, and that sample pays its import."""
    found: set[str] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        found.update(name for name in current.co_names if name in ON_DEMAND)
        stack.extend(const for const in current.co_consts if isinstance(const, CodeType))
    return sorted(found)


def request(limits: Limits, tmpdir: str, modules: list[str] | tuple[str, ...] = ()) -> bytes:
    """The spawn request the worker sends with the sample's four descriptors: plain numbers and names,
    never a pickle, since the worker runs the tests' code and the zygote keeps the privileges samples
    drop. ``modules``: :data:`ON_DEMAND` modules to import before this fork."""
    return (tmpdir.encode() + b"\0" + _LIMITS.pack(limits.cpu_s, limits.memory_mb, limits.file_mb, limits.nproc,
                                                   limits.nofile) + " ".join(modules).encode())


def import_on_demand(names: bytes) -> list[str]:
    """In the zygote: import the :data:`ON_DEMAND` modules among ``names`` (space-separated; any other
    name is ignored) that it does not hold yet, and freeze what they made (as at start, see
    zygote_main). A module that fails to import is left to the sample. Returns those imported."""
    imported = []
    for name in names.decode("ascii", "replace").split():
        if name in ON_DEMAND and name not in sys.modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the sample's own import will say why
                continue
            imported.append(name)
    if imported:
        gc.collect()
        gc.freeze()
    return imported


def zygote_main(sock: socket.socket, level: str, uid: int | None) -> NoReturn:
    """Serve spawn requests until the worker goes away. ``level``: "root", "userns" or "none"."""
    code = 0
    try:
        _linux.prctl(_linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # every sample's stdin: EOF at once
        os.close(null)
        prepare_zygote()
        os.chdir("/")  # not the evaluator's working directory, which samples must not reach (not even by /proc/1/cwd)
        if level == "userns":
            show_only_this_pidns()
        own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY) if level == "root" else None
        try:
            confine_zygote(level)
        except OSError as exc:
            sock.sendall(f"the zygote could not confine itself: {exc}".encode())
            raise
        sock.sendall(READY)
        applied, limits, home = b"", None, b""
        reaper = level == "userns" and os.getpid() == 1  # pid 1 of the worker's PID namespace (see _end_sample)
        gc.collect()
        gc.freeze()  # inherited objects move to a permanent generation: the sample's GC never writes to
        # (and so never copies) the pages it shares with the zygote.
        while True:
            try:
                raw, ancillary, _flags, _addr = sock.recvmsg(1 << 16, _ANCILLARY)
            except OSError:
                break
            if not raw:
                break
            fds = _FDS.unpack(ancillary[0][2])  # exactly four, from the trusted worker
            tmpdir, _, rest = raw.partition(b"\0")
            blob = rest[:_LIMITS.size]
            if len(rest) > _LIMITS.size:
                import_on_demand(rest[_LIMITS.size:])
            if blob != applied:
                applied, limits = blob, Limits(*_LIMITS.unpack(blob))
                apply_shared_limits(limits)
            random.seed()  # what os.fork()'s at-fork hook does in each child: every sample draws its own
            path = tmpdir.decode()
            if tmpdir != home:  # set here (the sample pays no faults for it), and only when it changes: C's
                home = tmpdir  # environment keeps every value ever set (see scratch._make_dir)
                os.environ["HOME"] = os.environ["TMPDIR"] = path
            pid = _fork_sample(fds, path, limits, level, uid, own_pidns)  # type: ignore[arg-type]
            for fd in fds:
                os.close(fd)
            sock.recv(16)  # the worker's "finish" (or EOF if the worker died)
            sock.sendall(REPLY.pack(*_end_sample(pid, level, reaper)))
    except BaseException:  # noqa: BLE001
        code = 1
    os._exit(code)


READY = b"ready"
"""What the zygote sends the worker once it is set up (anything else: why it is not)."""

OWN_MODULES = ("codeloop.sandbox._linux", "codeloop.sandbox.seccomp", "codeloop.sandbox.wire",
               "codeloop.sandbox.child", "codeloop.sandbox.zygote")
"""What of codeloop the zygote runs, in import order: it holds nothing else of it (see :func:`exec_zygote`)."""

_BOOT = """
import importlib, marshal, socket, sys, types
config = marshal.load(sys.stdin.buffer)
sys.argv, sys.path[:] = [""], config["path"]
package = types.ModuleType("codeloop")
package.__path__ = [config["package"]]  # where samples import codeloop.languages from
sandbox = types.ModuleType("codeloop.sandbox")
sandbox.__path__ = []
package.sandbox = sandbox
sys.modules["codeloop"], sys.modules["codeloop.sandbox"] = package, sandbox
for name, filename, code in config["modules"]:
    module = types.ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module
    setattr(sandbox, name.rsplit(".", 1)[1], module)
    exec(marshal.loads(code), module.__dict__)
sock = socket.socket(fileno=config["sock"])
for name in config["preload"]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        sock.sendall(f"preload {name!r} failed: {type(exc).__name__}: {exc}".encode())
        raise SystemExit(1)
sys.modules["codeloop.sandbox.zygote"].zygote_main(sock, config["level"], config["uid"])
"""
"""The zygote's first code, in a fresh interpreter: it builds the modules of :data:`OWN_MODULES` from
the code the worker read before the file system hid codeloop (``codeloop`` and ``codeloop.sandbox``
stand in as empty packages), imports the caller's ``preload`` modules, and serves."""


def own_code() -> list[tuple[str, str, bytes]]:
    """The compiled code of :data:`OWN_MODULES`: read by the worker before isolation hides codeloop's files."""
    modules = []
    for name in OWN_MODULES:
        spec = sys.modules[name].__spec__
        assert spec is not None and spec.loader is not None
        code = spec.loader.get_code(name)  # type: ignore[attr-defined]
        modules.append((name, spec.origin or "", marshal.dumps(code)))
    return modules


def boot_config(modules: list[tuple[str, str, bytes]], level: str, uid: int | None, preload: list[str],
                sock_fd: int) -> bytes:
    """What :data:`_BOOT` reads on its stdin."""
    import codeloop
    return marshal.dumps({"path": list(sys.path), "package": os.path.dirname(codeloop.__file__ or ""),
                          "modules": modules, "preload": list(preload), "sock": sock_fd, "level": level,
                          "uid": uid})


def exec_zygote(sock: socket.socket, config: int) -> NoReturn:
    """In the worker's fork: become the zygote, a fresh interpreter that holds only what samples need.

    Forked from the worker, it held all of the worker's modules (the judge, the pool, the task
    types: ~3 MB more), and every page it holds is copied at each fork and torn down at each
    sample's exit (``benchmarks/fork_cost.py``). ``config``: a pipe with :func:`boot_config`'s bytes,
    which becomes its stdin; ``sock``: its end of the worker's socket."""
    try:
        os.dup2(config, 0)
        os.set_inheritable(sock.fileno(), True)
        os.execv(sys.executable, [sys.executable, "-I", "-c", _BOOT])
    except OSError as exc:  # the worker reports it, as any failure of the zygote's set-up
        sock.sendall(f"the zygote could not start {sys.executable}: {exc}".encode())
    finally:
        os._exit(1)


def confine_zygote(level: str) -> None:
    """No new privileges and the seccomp filter (:mod:`seccomp`), on the zygote itself before its first
    fork: every sample is born with both, and pays nothing to set them up. The filter lets through the
    two calls the zygote makes for each sample's PID namespace (at levels root and userns), which the
    kernel refuses to a sample, since it holds no capability by the time its code runs."""
    _linux.prctl(_linux.PR_SET_NO_NEW_PRIVS, 1)
    seccomp.install(pid_namespaces=level != "none")


def show_only_this_pidns() -> None:
    """At level userns, in the zygote (pid 1 of the worker's PID namespace): over /proc, in a
    mount namespace of the zygote's own (the worker keeps its view), a procfs of that PID namespace, in
    which a sample sees the zygote and the processes of its own job, none of the host's. The host's
    /proc let a sample list every process on the machine and read their command lines. A user
    namespace may mount procfs only where the host's /proc is fully visible (in a container that masks
    parts of it, it is refused): then samples keep seeing the host's processes, as before."""
    try:
        _linux.unshare(_linux.CLONE_NEWNS)
        _linux.mount("proc", "/proc", "proc", _linux.MS_NOSUID | _linux.MS_NODEV | _linux.MS_NOEXEC | _linux.MS_RDONLY)
    except OSError:
        pass


def _fork_sample(fds: tuple[int, ...], tmpdir: str, limits: Limits, level: str, uid: int | None,
                 own_pidns: int | None) -> int:
    req_fd, resp_fd, out_fds = fds[0], fds[1], (fds[2], fds[3])
    if level == "root":
        # The next child is pid 1 of a fresh PID namespace; then point our own children back home.
        _linux.unshare(_linux.CLONE_NEWPID)
        pid = _linux.raw_fork()
        if pid == 0:
            sample_main(req_fd, resp_fd, out_fds, tmpdir, limits, uid, level)
        _linux.setns(own_pidns, _linux.CLONE_NEWPID)  # type: ignore[arg-type]
        return pid
    if level == "userns":
        # setns back is not allowed inside a user namespace, so an intermediate process enters the
        # new PID namespace and execs nothing: it waits for the sample and mirrors its exit status.
        pid = _linux.raw_fork()
        if pid == 0:
            _linux.prctl(_linux.PR_SET_PDEATHSIG, signal.SIGKILL)
            _linux.unshare(_linux.CLONE_NEWPID)
            inner = _linux.raw_fork()
            if inner == 0:
                sample_main(req_fd, resp_fd, out_fds, tmpdir, limits, None, level)
            _, st = os.waitpid(inner, 0)
            os._exit(os.waitstatus_to_exitcode(st) & 0xFF if os.WIFEXITED(st) else 128 + os.WTERMSIG(st))
        return pid
    pid = _linux.raw_fork()
    if pid == 0:
        sample_main(req_fd, resp_fd, out_fds, tmpdir, limits, None, level)
    return pid


def _end_sample(pid: int, level: str, reaper: bool) -> tuple[int, float, int]:
    """Kill the sample ``pid`` and all it started, and reap them: its wait status, CPU seconds (user +
    system) and largest resident set (KiB), as :data:`REPLY` sends them.

    At level userns ``pid`` is the intermediate process (see :func:`_fork_sample`). Killed alone, it left
    the sample (killed in turn: its parent died) to the zygote, the reaper of the worker's PID namespace,
    which waited only for the intermediate: a zombie per sample, each counted against the worker's
    cgroup's ``pids.max`` (every sample from about the 65th on failed to start) or, without a cgroup,
    against the caller's process limit. As pid 1 of that namespace the zygote kills everything in it but
    itself, and reaps until it has no child left; the sample's CPU time counts whichever process reaped
    it. ``reaper``: the zygote is that pid 1 (never kill(-1) from outside a PID namespace of our own)."""
    if reaper:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:  # all gone already
            pass
        status, cpu_s, max_rss = 0, 0.0, 0
        while True:
            try:
                reaped, st, usage = os.wait4(-1, 0)
            except ChildProcessError:
                return status, cpu_s, max_rss
            status = st if reaped == pid else status
            cpu_s += usage.ru_utime + usage.ru_stime
            max_rss = max(max_rss, usage.ru_maxrss)
    if level == "none":
        _kill_group(pid)
    try:
        os.kill(pid, signal.SIGKILL)  # pid 1 of its namespace (level root): the kernel kills all it started
    except ProcessLookupError:
        pass
    _, status, usage = os.wait4(pid, 0)
    return status, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
