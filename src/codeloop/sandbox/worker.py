"""A long-lived sandbox worker: ``python -m codeloop.sandbox.worker LEVEL``.

Started by :class:`codeloop.sandbox.Sandbox` with a scrubbed environment (so not even
``/proc/<pid>/environ`` holds the evaluator's secrets). At start-up it pays the expensive set-up once:
private mount/network/IPC/UTS namespaces, a read-only view of every filesystem with fresh tmpfs
mounts over the world-writable directories, pre-imported modules, and the zygote. Then it reads jobs
(pickled, from the trusted evaluator) on stdin and writes outcomes on stdout, one frame each.
"""

from __future__ import annotations

import importlib
import os
import pickle
import socket
import sys
from pathlib import Path

from codeloop.sandbox import _linux, judge, wire
from codeloop.sandbox.zygote import zygote_main

# Imported once here, so that samples find them in sys.modules instead of each paying the import.
# Cheap modules only: this memory is inherited by every fork.
PREIMPORT = (
    "abc array bisect calendar cmath collections collections.abc contextlib copy dataclasses datetime "
    "decimal difflib enum fractions functools hashlib heapq io itertools json math numbers operator "
    "pprint queue random re statistics string struct textwrap time typing unicodedata"
).split()

WRITABLE_TMPFS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")


def _lock_filesystem() -> None:
    """In this (private) mount namespace: everything read-only, world-writable dirs on fresh tmpfs."""
    _linux.make_tree_private_readonly("/")
    for path in WRITABLE_TMPFS:
        if os.path.isdir(path):
            _linux.mount("tmpfs", path, "tmpfs", _linux.MS_NOSUID | _linux.MS_NODEV, "size=512m,mode=755")


def _closed_ancestors(paths: list[str]) -> dict[str, set[str]]:
    """For each path, its first ancestor that "other" may not traverse, and the child leading on."""
    found: dict[str, set[str]] = {}
    for path in paths:
        parts = Path(os.path.realpath(path)).parts
        current = "/"
        for part in parts[1:]:
            if not os.stat(current).st_mode & 0o001:
                found.setdefault(current, set()).add(part)
                break
            current = os.path.join(current, part)
    return found


def _placeholder(like: str, at: str) -> None:
    if os.path.isdir(like):
        os.makedirs(at, exist_ok=True)
    else:
        open(at, "a").close()


def expose_interpreter(paths: list[str]) -> None:
    """Let an unprivileged sample read the interpreter, venv and codeloop source, wherever they are.

    A Python under /root (mode 700) cannot be read by another uid. In this mount namespace only, each
    such closed directory is covered by a tmpfs that holds read-only binds of just the children on
    the way to those paths: the sample can import the standard library and sees nothing else there.
    """
    stage_root = "/tmp/.codeloop-stage"
    for closed, children in _closed_ancestors(paths).items():
        os.makedirs(stage_root, exist_ok=True)
        staged = []
        for child in sorted(children):
            source, stage = os.path.join(closed, child), os.path.join(stage_root, child)
            _placeholder(source, stage)
            _linux.mount(source, stage, "", _linux.MS_BIND | _linux.MS_REC)
            staged.append((source, stage))
        _linux.mount("tmpfs", closed, "tmpfs", _linux.MS_NOSUID | _linux.MS_NODEV, "size=1m,mode=755")
        for target, stage in staged:
            _placeholder(stage, target)
            _linux.mount(stage, target, "", _linux.MS_BIND | _linux.MS_REC)
            _linux.umount(stage)
            (os.rmdir if os.path.isdir(stage) else os.unlink)(stage)
        _linux.make_tree_private_readonly(closed)
        os.rmdir(stage_root)


def isolate(requested: str) -> str:
    """Enter the strongest isolation the OS allows (or exactly ``requested``); return its name."""
    ns = _linux.CLONE_NEWNS | _linux.CLONE_NEWNET | _linux.CLONE_NEWIPC | _linux.CLONE_NEWUTS
    if requested in ("auto", "root") and os.geteuid() == 0:
        try:
            _linux.unshare(ns)
            _lock_filesystem()
            expose_interpreter([sys.base_prefix, sys.prefix, sys.executable, *filter(os.path.exists, sys.path)])
            return "root"
        except OSError:
            if requested == "root":
                raise
    if requested in ("auto", "userns"):
        uid, gid = os.geteuid(), os.getegid()
        try:
            _linux.unshare(_linux.CLONE_NEWUSER | ns)
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
            _lock_filesystem()
            return "userns"
        except OSError:
            if requested == "userns":
                raise
    if requested not in ("auto", "none"):
        raise OSError(f"isolation level {requested!r} is not available here")
    return "none"


def main() -> None:
    requested = sys.argv[1] if len(sys.argv) > 1 else "auto"
    jobs_fd, results_fd = os.dup(0), os.dup(1)
    os.dup2(2, 1)  # a stray print can never corrupt the result stream
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        level = isolate(requested)
    except OSError as exc:
        wire.write_frame(results_fd, pickle.dumps({"error": f"isolation {requested!r} failed: {exc}"}))
        return
    for name in PREIMPORT:
        importlib.import_module(name)
    uid = 100_000 + os.getpid() if level == "root" else None  # unique among live workers
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    if os.fork() == 0:  # the zygote: forked before any job arrives, so it holds none
        ours.close()
        os.close(jobs_fd)
        os.close(results_fd)
        zygote_main(theirs, level, uid)
    theirs.close()
    wire.write_frame(results_fd, pickle.dumps({"level": level}))
    while True:
        try:
            request = pickle.loads(wire.read_frame(jobs_fd))
        except wire.PeerClosed:
            return
        outcome = judge.run_job(request["job"], ours, request["timeout_s"], request["memory_mb"], level)
        wire.write_frame(results_fd, pickle.dumps(outcome))


if __name__ == "__main__":
    main()
