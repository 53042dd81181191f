"""Ending a trusted helper's session (codeloop.sandbox.session): nothing it started is left running once
the call returns, not even a process that moved to a process group of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from codeloop.feedback.compiler import command_check
from codeloop.sandbox.session import end_session, session_members
from conftest import running_with


def _marker(base: int) -> str:
    return f"{base + os.getpid() % 1000 / 1000}"  # a sleep length no other test run uses


def test_every_process_of_the_session_is_gone_when_it_returns_even_one_in_a_group_of_its_own():
    grouped, moved = _marker(291), _marker(292)
    leader = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
                               f"subprocess.Popen(['sleep', '{grouped}'])\n"
                               f"subprocess.Popen(['sleep', '{moved}'], process_group=0)\n"  # killpg misses it
                               "print(flush=True); time.sleep(300)"],
        stdout=subprocess.PIPE, start_new_session=True)
    assert leader.stdout is not None
    leader.stdout.readline()  # both started
    assert len(session_members(leader.pid)) == 3
    try:
        assert end_session(leader.pid) == []
        assert running_with(f"sleep {grouped}") == [] and running_with(f"sleep {moved}") == []  # at once, no polling
        assert session_members(leader.pid) == []
    finally:
        leader.kill()
        leader.wait()


def test_a_leader_that_is_already_dead_and_unreaped_does_not_make_it_wait():
    leader = subprocess.Popen(["true"], start_new_session=True)
    time.sleep(0.2)  # a zombie now, our child, not reaped yet
    start = time.monotonic()
    assert end_session(leader.pid, timeout_s=20) == []
    assert time.monotonic() - start < 5
    leader.wait()


def test_a_process_whose_name_holds_a_parenthesis_and_fields_is_still_counted():
    leader = subprocess.Popen(
        [sys.executable, "-c", "import ctypes, time\n"
                               "ctypes.CDLL(None).prctl(15, b'x) R 1 1 1 ')\n"  # PR_SET_NAME: a name that mimics /proc/PID/stat
                               "print(flush=True); time.sleep(300)"],
        stdout=subprocess.PIPE, start_new_session=True)
    assert leader.stdout is not None
    leader.stdout.readline()
    try:
        assert session_members(leader.pid) == [leader.pid]
    finally:
        end_session(leader.pid)
        leader.wait()


def test_a_compiler_that_leaves_a_process_running_leaves_none_once_checked():
    left = _marker(293)
    feedback = command_check("x", ["sh", "-c", f"sleep {left} >/dev/null 2>&1 & exit 0"])
    assert feedback.score == 1.0
    assert running_with(f"sleep {left}") == []


def test_a_compiler_past_its_time_is_reported_and_gone():
    stuck = _marker(294)
    feedback = command_check("x", ["sh", "-c", f"sleep {stuck} >/dev/null 2>&1 & sleep {stuck}"], timeout_s=0.5)
    assert (feedback.score, feedback.reason) == (0.0, "the compiler ran past 0.5s")
    assert running_with(f"sleep {stuck}") == []
