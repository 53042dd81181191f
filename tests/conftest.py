"""Shared fixtures: one sandbox per test module (workers take ~0.2 s to start)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from codeloop.annotate.server import make_server
from codeloop.annotate.store import Store
from codeloop.sandbox import Job, Sandbox, cgroup
from codeloop.types import Outcome


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2, timeout_s=2.0, memory_mb=512) as sb:
        yield sb


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local Ray instance with 2 CPUs, standing in for a cluster (for RaySandbox). Skipped where Ray is
    not installed (it is in the dev extras, so ``make test`` always has it): the sandbox's suites can then
    run, for their local sandbox, under another Python or a lighter install."""
    ray = pytest.importorskip("ray")

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 << 20, log_to_driver=False)
    yield
    ray.shutdown()


def _cgroups_unavailable() -> str:
    """Why no cgroup can be made on this machine ("" if one can)."""
    try:
        cgroup.create(f"{os.getpid()}-probe", 64, 1).remove()
    except cgroup.Unavailable as exc:
        return str(exc)
    return ""


_NO_CGROUPS = _cgroups_unavailable()
CGROUPS = pytest.mark.skipif(bool(_NO_CGROUPS), reason=f"no cgroup can be made here: {_NO_CGROUPS}")
"""For tests of the workers' cgroups (codeloop.sandbox.cgroup): as root on a Linux host, or in a delegated
cgroup v2 subtree."""


def check_job(program: str, test: str = "def check(candidate):\n    assert candidate(2) == 4\n",
              entry_point: str = "f") -> Job:
    """A HumanEval-style job: the candidate must double its argument unless ``test`` says otherwise."""
    return Job(program=program, entry_point=entry_point, test=test)


def running_with(marker: str) -> list[int]:
    """The running processes whose command line holds ``marker`` (a zombie's command line is empty)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def run(sandbox: Sandbox, program: str, **kwargs: object) -> Outcome:
    return sandbox.run_one(check_job(program, **kwargs))  # type: ignore[arg-type]


def _ctrl_c() -> None:
    raise KeyboardInterrupt


def judged_jobs(monkeypatch: pytest.MonkeyPatch, stop_after: int | None = None,
                stop: Callable[[], None] = _ctrl_c) -> list[int]:
    """Spy on every ``Sandbox.run`` from here on: the returned list gets the number of jobs each call was
    given; with ``stop_after``, a call runs ``stop`` (by default: raises KeyboardInterrupt, as Ctrl-C would)
    once it has yielded that many outcomes."""
    real, counts = Sandbox.run, []

    def spy(self: Sandbox, jobs: Any, **options: Any) -> Iterator[Outcome]:
        jobs = list(jobs)
        counts.append(len(jobs))
        for done, outcome in enumerate(real(self, jobs, **options)):
            if done == stop_after:
                stop()
            yield outcome

    monkeypatch.setattr(Sandbox, "run", spy)
    return counts


# A seed-python sample that passes the 6 cases of a synthetic-python:test task and is wrong (it drops the 1s):
# the stricter tests of synthetic-python+ must catch it.
SQUARE_SORTED = '"""Replace each value by its square, then return them in ascending order."""'
DROPS_ONES = "    xs = [x * x for x in xs]\n    xs = [x for x in xs if x > 1]\n    return sorted(xs)\n"


@contextlib.contextmanager
def serving(store: Store, **options: Any) -> Iterator[str]:
    """The annotation server on a free port, in a thread; yields its base URL (no trailing slash)."""
    server = make_server(store, port=0, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if options.get('tls') else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
