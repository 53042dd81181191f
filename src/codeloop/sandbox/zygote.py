"""The zygote: a clean process that forks one sample process per request.

It is forked from the worker at start-up, before the worker has seen any task, so a sample (a fork of
the zygote) inherits no test code, no expected output and no other sample's program. It receives the
two pipe ends of each sample from the worker over a Unix socket (SCM_RIGHTS), forks the sample, and on
the worker's word kills it (and, through its PID namespace, everything it started), reaps it, reads its
capped stdout/stderr and deletes its temp dir.
"""

from __future__ import annotations

import gc
import os
import pickle
import shutil
import signal
import socket
from typing import Any, NoReturn

from codeloop.sandbox import _linux
from codeloop.sandbox.child import STREAM_CAP, Limits, apply_shared_limits, prepare_zygote, sample_main

SAMPLE_ROOT = "/tmp/codeloop-samples"


def zygote_main(sock: socket.socket, level: str, uid: int | None) -> NoReturn:
    """Serve spawn requests until the worker goes away. ``level``: "root", "userns" or "none"."""
    code = 0
    try:
        _linux.prctl(_linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        os.makedirs(SAMPLE_ROOT, mode=0o755, exist_ok=True)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # every sample's stdin: EOF at once
        os.close(null)
        prepare_zygote()
        own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY) if level == "root" else None
        counter = 0
        applied: Limits | None = None
        gc.collect()
        gc.freeze()  # inherited objects move to a permanent generation: the sample's GC never writes to
        # (and so never copies) the pages it shares with the zygote.
        while True:
            try:
                raw, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 2)
            except OSError:
                break
            if not raw:
                break
            counter += 1
            request = pickle.loads(raw)
            if request["limits"] != applied:
                applied = request["limits"]
                apply_shared_limits(applied)
            reply = _run_one(request, fds, level, uid, own_pidns, counter, sock)
            sock.sendall(pickle.dumps(reply))
    except BaseException:  # noqa: BLE001
        code = 1
    os._exit(code)


def _run_one(req: dict[str, Any], fds: list[int], level: str, uid: int | None, own_pidns: int | None,
             counter: int, sock: socket.socket) -> dict[str, Any]:
    limits: Limits = req["limits"]
    tmpdir = os.path.join(SAMPLE_ROOT, f"{os.getpid()}-{counter}")
    os.mkdir(tmpdir, 0o700)
    if uid is not None:
        os.chown(tmpdir, uid, uid)
    out_fds = tuple(os.open(os.path.join(tmpdir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    for name in ("stdout", "stderr"))
    if uid is not None:
        for fd in out_fds:
            os.fchown(fd, uid, uid)
    os.environ["HOME"] = os.environ["TMPDIR"] = tmpdir  # inherited by the fork; putenv, no scan
    pid = _fork_sample(fds, out_fds, tmpdir, limits, level, uid, own_pidns)  # type: ignore[arg-type]
    for fd in (*fds, *out_fds):
        os.close(fd)
    finish = sock.recv(1 << 12)  # the worker's "finish" (or EOF if the worker died)
    del finish
    if level == "none":
        _kill_group(pid)
    try:
        os.kill(pid, signal.SIGKILL)  # pid 1 of its namespace: the kernel kills all it started
    except ProcessLookupError:
        pass
    _, status, usage = os.wait4(pid, 0)
    reply = {
        "status": status,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_rss_kb": usage.ru_maxrss,
        "stdout": _read_capped(os.path.join(tmpdir, "stdout")),
        "stderr": _read_capped(os.path.join(tmpdir, "stderr")),
    }
    try:  # the common case: the sample left nothing but its two output files
        for name in ("stdout", "stderr"):
            os.unlink(os.path.join(tmpdir, name))
        os.rmdir(tmpdir)
    except OSError:
        shutil.rmtree(tmpdir, ignore_errors=True)
    if level == "userns":  # the sample owns these tmpfs roots there: leave nothing for the next one
        _wipe_shared_tmp()
    return reply


def _fork_sample(fds: list[int], out_fds: tuple[int, int], tmpdir: str, limits: Limits, level: str,
                 uid: int | None, own_pidns: int | None) -> int:
    req_fd, resp_fd = fds
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


def _wipe_shared_tmp() -> None:
    for root in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock"):
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
        for entry in entries:
            if entry.path != SAMPLE_ROOT:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    try:
                        os.unlink(entry.path)
                    except OSError:
                        pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_capped(path: str) -> str:
    try:
        if os.stat(path).st_size == 0:
            return ""
        with open(path, "rb") as f:
            data = f.read(STREAM_CAP + 1)
    except OSError:
        return ""
    text = data[:STREAM_CAP].decode("utf-8", errors="replace")
    return text + ("\n[... output cut at 64 KiB]" if len(data) > STREAM_CAP else "")
