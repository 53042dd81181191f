"""Ending a trusted helper's whole session: a compiler, a training launcher and whatever they started.

A helper started with ``start_new_session=True`` leads a session and a process group of its own.
``os.killpg`` only queues SIGKILL: the processes die once the scheduler next runs them, which on a busy
machine can be after the caller has moved on (and a launcher's workers may still hold GPU memory the
next step needs). :func:`end_session` kills every process of the session, by process group and by
session (a worker may have moved to a group of its own), and returns once none is left running.

It is not a containment boundary: a process that calls ``setsid()`` leaves the session, and is not
found. Untrusted code runs in :class:`~codeloop.sandbox.Sandbox`, whose PID namespace has no way out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time


def session_members(sid: int) -> list[int]:
    """The running processes of session ``sid`` (zombies, already dead, are left out). Empty where
    there is no ``/proc``."""
    members = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:  # it ended while we looked
                continue
            fields = stat[stat.rfind(b")") + 2:].split()  # the name, in parentheses, may hold anything
            if len(fields) > 3 and fields[0] not in (b"Z", b"X") and int(fields[3]) == sid:
                members.append(int(entry.name))
    return members


def end_session(leader: int, timeout_s: float = 10.0) -> list[int]:
    """SIGKILL every process of the session ``leader`` leads and wait until none is running; returns
    the ones still running after ``timeout_s`` (a process blocked in the kernel dies when it wakes)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while True:
        left = session_members(leader)
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.005)
