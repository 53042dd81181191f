"""The workers' cgroups (codeloop.sandbox.cgroup): where they are made, with what limits, and that they go.

What they contain is tested in the adversarial suite (memory held by many processes, files in /tmp,
the process count of a root caller at level userns)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import CGROUPS, run

from codeloop.sandbox import Sandbox, cgroup
from codeloop.sandbox.cgroup import Hierarchy, hierarchies
from codeloop.types import Status


HYBRID_MOUNTS = """\
25 1 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
29 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 25 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
35 25 0:32 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUPS = "8:pids:/\n4:memory:/process_api/4e32\n1:cpu:/\n0::/\n"


def test_a_hybrid_host_uses_its_v1_hierarchies_for_both_controllers():
    # This VM's shape: cpu, memory and pids in v1, an empty v2 beside them. v1 cgroups go under our own.
    found = hierarchies(HYBRID_MOUNTS, HYBRID_CGROUPS)
    assert found == [Hierarchy(1, "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu", ("cpu",)),
                     Hierarchy(1, "/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/process_api/4e32", ("memory",)),
                     Hierarchy(1, "/sys/fs/cgroup/pids", "/sys/fs/cgroup/pids", ("pids",))]
    assert [h.parent for h in found] == ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory/process_api/4e32",
                                         "/sys/fs/cgroup/pids"]


def test_a_v2_host_puts_the_workers_cgroups_beside_the_evaluators_own():
    # A v2 cgroup holding processes (ours) may not have children with controllers: a sibling it is.
    mounts = "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
    found = hierarchies(mounts, "0::/user.slice/user-1000.slice/user@1000.service/app.slice/run-1.scope\n")
    assert found == [Hierarchy(2, "/sys/fs/cgroup",
                               "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/run-1.scope",
                               ("memory", "pids", "cpu"))]
    assert found[0].parent == "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice"
    # at the root of the hierarchy (which may hold processes and children), the root itself
    assert hierarchies(mounts, "0::/\n")[0].parent == "/sys/fs/cgroup"


def test_a_bind_mounted_subtree_and_escaped_mount_points_are_read_right():
    # A container without a cgroup namespace sees its own subtree mounted at the hierarchy's place.
    mounts = ("40 30 0:26 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n"
              "41 30 0:27 /docker/abc /sys/fs/cgroup/with\\040space rw - cgroup cgroup rw,pids\n")
    found = hierarchies(mounts, "5:pids:/docker/abc/inner\n4:memory:/elsewhere\n")
    assert found == [Hierarchy(1, "/sys/fs/cgroup/with space", "/sys/fs/cgroup/with space/inner", ("pids",))]


def _cpu_files(directory: Path, text: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in text.items():
        (directory / name).write_text(value)


def test_the_cpu_quota_of_our_cgroup_or_any_above_it_bounds_the_default_workers(tmp_path):
    from codeloop.sandbox.pool import default_workers

    # v1: the pod's cgroup allows 2.5 CPUs, the container's inside it 4: the tighter one counts
    _cpu_files(tmp_path / "v1", {"cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n"})
    _cpu_files(tmp_path / "v1/kubepods/pod1", {"cpu.cfs_quota_us": "250000\n", "cpu.cfs_period_us": "100000\n"})
    _cpu_files(tmp_path / "v1/kubepods/pod1/ctr", {"cpu.cfs_quota_us": "400000\n", "cpu.cfs_period_us": "100000\n"})
    mounts = f"26 25 0:23 / {tmp_path}/v1 rw,relatime - cgroup cgroup rw,cpu\n"
    assert cgroup.cpu_limit(mounts, "1:cpu:/kubepods/pod1/ctr\n") == 2.5
    assert default_workers(64, 2.5) == 3 and default_workers(2, 2.5) == 2 and default_workers(8, 0.2) == 1
    assert default_workers(8, 2.0) == 2 and default_workers(8, None) == 8
    # v2: "max" is no quota; the sibling's is not ours
    _cpu_files(tmp_path / "v2", {})
    _cpu_files(tmp_path / "v2/app.slice", {"cpu.max": "max 100000\n"})
    _cpu_files(tmp_path / "v2/app.slice/run.scope", {"cpu.max": "max 100000\n"})
    _cpu_files(tmp_path / "v2/other.slice", {"cpu.max": "50000 100000\n"})
    mounts2 = f"30 24 0:26 / {tmp_path}/v2 rw - cgroup2 cgroup2 rw\n"
    assert cgroup.cpu_limit(mounts2, "0::/app.slice/run.scope\n") is None
    _cpu_files(tmp_path / "v2/app.slice", {"cpu.max": "150000 100000\n"})
    assert cgroup.cpu_limit(mounts2, "0::/app.slice/run.scope\n") == 1.5
    assert cgroup.cpu_limit("", "") is None  # nothing mounted: no quota known


def test_a_sandbox_whose_cgroup_has_a_cpu_quota_starts_no_more_workers_than_it_allows(monkeypatch):
    monkeypatch.setattr(cgroup, "cpu_limit", lambda: 1.0)
    sandbox = Sandbox()  # starts nothing yet
    assert sandbox.n_workers == 1
    assert sandbox.pin is False  # one worker is not one per usable CPU here (unless there is one CPU: not pinned either)
    assert Sandbox(workers=3).n_workers == 3  # asked for: as many as asked


def test_the_recipes_run_torch_on_no_more_threads_than_the_cpu_quota_allows(monkeypatch, tmp_path):
    torch = pytest.importorskip("torch")  # the train extra, in make test's install

    from codeloop.recipes.common import Loop

    monkeypatch.setattr(cgroup, "cpu_limit", lambda: 1.0)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        Loop.open(str(tmp_path / "run"), 1, {})
        assert torch.get_num_threads() == 1  # os.cpu_count() would say every CPU the host has
    finally:
        torch.set_num_threads(before)


def test_no_controller_mounted_means_no_hierarchy():
    assert hierarchies("25 1 0:22 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n", "1:devices:/\n") == []
    with pytest.raises(cgroup.Unavailable, match="no memory, pids or cpu controller"):
        cgroup.create("x", 64, 1, mountinfo="", cgroups="")


def test_on_v2_the_missing_controllers_are_enabled_in_the_parent_and_the_limits_written(tmp_path, monkeypatch):
    # A v2 tree on a plain file system, whose mkdir adds the files the kernel would: the steps and what
    # they write (this VM mounts cpu, memory and pids as v1, so v2 is not exercised live here).
    mount = tmp_path / "cgroup"
    parent = mount / "user.slice"
    (parent / "me.scope").mkdir(parents=True)
    (parent / "cgroup.controllers").write_text("cpu memory pids\n")
    (parent / "cgroup.subtree_control").write_text("pids\n")  # memory and cpu not yet offered to children
    real_mkdir, real_write = os.mkdir, cgroup._write
    written: dict[str, list[str]] = {}

    def kernel_mkdir(path: str, mode: int = 0o777) -> None:
        real_mkdir(path, mode)
        for name in ("cgroup.procs", "memory.max", "memory.swap.max", "pids.max", "cpu.max"):
            Path(path, name).write_text("")

    def write(path: str, text: str) -> None:
        real_write(path, text)
        written.setdefault(os.path.relpath(path, parent), []).append(text)

    monkeypatch.setattr(os, "mkdir", kernel_mkdir)
    monkeypatch.setattr(cgroup, "_write", write)
    made = cgroup.create("7-0", 100, 64, cpus=1.0, mountinfo=f"30 24 0:26 / {mount} rw - cgroup2 cgroup2 rw\n",
                         cgroups="0::/user.slice/me.scope\n")
    assert made.dirs == (str(parent / "codeloop-7-0"),) and set(made.controllers) == {"memory", "pids", "cpu"}
    assert made.describe().startswith("cgroup v2: ")
    assert written == {"cgroup.subtree_control": ["+memory", "+cpu"],
                       "codeloop-7-0/memory.max": [str((100 + cgroup.MARGIN_MB) << 20)],
                       "codeloop-7-0/memory.swap.max": ["0"],
                       "codeloop-7-0/pids.max": [str(64 + cgroup.OWN_TASKS)],
                       "codeloop-7-0/cpu.max": [f"{cgroup.PERIOD_US} {cgroup.PERIOD_US}"]}


def test_a_hierarchy_that_refuses_leaves_the_others_bounding_what_they_can(tmp_path, monkeypatch):
    memory, pids = tmp_path / "memory", tmp_path / "pids-not-there"
    memory.mkdir()
    real_mkdir = os.mkdir

    def kernel_mkdir(path: str, mode: int = 0o777) -> None:
        real_mkdir(path, mode)
        for name in ("cgroup.procs", "memory.limit_in_bytes"):
            Path(path, name).write_text("")

    monkeypatch.setattr(os, "mkdir", kernel_mkdir)
    mounts = (f"29 25 0:26 / {memory} rw - cgroup cgroup rw,memory\n"
              f"33 25 0:30 / {pids} rw - cgroup cgroup rw,pids\n")
    made = cgroup.create("7-1", 100, 64, mountinfo=mounts, cgroups="8:pids:/\n4:memory:/\n")
    assert made.dirs == (str(memory / "codeloop-7-1"),) and made.controllers == ("memory",)
    assert (memory / "codeloop-7-1" / "memory.limit_in_bytes").read_text() == str((100 + cgroup.MARGIN_MB) << 20)
    with pytest.raises(cgroup.Unavailable, match="cannot make .*pids-not-there"):
        cgroup.create("7-2", 100, 64, mountinfo=mounts.splitlines()[1] + "\n", cgroups="8:pids:/\n")


def _sandbox_cgroups() -> list[Path]:
    """The cgroups this test process's sandboxes made, in every hierarchy."""
    prefix = f"{cgroup.PREFIX}{os.getpid()}-"
    found = hierarchies(Path("/proc/self/mountinfo").read_text(), Path("/proc/self/cgroup").read_text())
    return sorted(p for h in found for p in Path(h.parent).iterdir() if p.name.startswith(prefix))


@CGROUPS
def test_each_worker_runs_in_a_cgroup_of_its_own_with_the_limits_and_it_goes_with_the_sandbox():
    assert _sandbox_cgroups() == []
    with Sandbox(workers=2, memory_mb=300) as sandbox:
        assert sandbox.cgroup.startswith("cgroup v"), sandbox.cgroup
        assert run(sandbox, "def f(x):\n    return 2 * x\n").status is Status.PASSED
        made = _sandbox_cgroups()
        assert len(made) == 2 * len({p.parent for p in made})  # one per worker in each hierarchy
        for directory in made:
            limit = directory / ("memory.limit_in_bytes" if (directory / "memory.limit_in_bytes").exists() else "memory.max")
            if limit.exists():
                assert int(limit.read_text()) == (300 + cgroup.MARGIN_MB) << 20
            if (directory / "pids.max").exists():
                assert (directory / "pids.max").read_text().strip() == str(64 + cgroup.OWN_TASKS)
            if (directory / "cpu.cfs_quota_us").exists():
                assert (directory / "cpu.cfs_quota_us").read_text().strip() == str(cgroup.PERIOD_US)
            assert len((directory / "cgroup.procs").read_text().split()) == 1  # the zygote, between samples
    assert _sandbox_cgroups() == []


@CGROUPS
def test_a_closed_sandbox_tells_its_level_and_cgroup_without_starting_workers_again():
    """Asked after close what it had, a sandbox answers from memory. It used to start workers to say so,
    whose cgroups no one removed (a test read ``local.level`` past its ``with``)."""
    with Sandbox(workers=1) as sandbox:
        assert run(sandbox, "def f(x):\n    return 2 * x\n").status is Status.PASSED  # level never asked
    assert sandbox.level in ("root", "userns") and sandbox.cgroup.startswith("cgroup v")
    assert sandbox.containment.startswith(f"sandbox: isolation {sandbox.level}; each sample bounded")
    assert sandbox._workers == [] and _sandbox_cgroups() == []
    with sandbox:  # a closed sandbox still runs jobs again when asked to, and closes again
        assert run(sandbox, "def f(x):\n    return 2 * x\n").status is Status.PASSED
    assert _sandbox_cgroups() == []


@CGROUPS
def test_cgroups_left_by_a_killed_evaluator_are_swept_by_the_next():
    dead = subprocess.Popen(["true"])
    dead.wait()
    parents = {h.parent for h in hierarchies(Path("/proc/self/mountinfo").read_text(), Path("/proc/self/cgroup").read_text())}
    stale = [Path(parent) / f"{cgroup.PREFIX}{dead.pid}-0" for parent in parents]
    for directory in stale:
        directory.mkdir()
    cgroup.create(f"{os.getpid()}-sweeper", 64, 1).remove()
    assert [d for d in stale if d.exists()] == []


def test_without_a_cgroup_the_sandbox_says_why_and_still_runs(monkeypatch):
    def refuse(*args: object, **kwargs: object) -> cgroup.Cgroup:
        raise cgroup.Unavailable("not ours to write")

    monkeypatch.setattr(cgroup, "create", refuse)
    with Sandbox(workers=1) as sandbox:
        assert sandbox.cgroup == "none: not ours to write"
        assert run(sandbox, "def f(x):\n    return 2 * x\n").status is Status.PASSED
    with Sandbox(workers=1, cgroups=False) as sandbox:
        assert sandbox.cgroup == "none: not asked for (cgroups=False)"


def test_a_cgroup_the_worker_cannot_join_is_removed_and_said(monkeypatch, tmp_path):
    not_a_cgroup = tmp_path / "not-a-cgroup"
    not_a_cgroup.mkdir()
    monkeypatch.setattr(cgroup, "create", lambda *a, **k: cgroup.Cgroup((str(not_a_cgroup),), ("memory",), (2,)))
    with Sandbox(workers=1) as sandbox:
        assert sandbox.cgroup.startswith("none: cgroup v2: memory: cannot open"), sandbox.cgroup
        assert not not_a_cgroup.exists()
        assert run(sandbox, "def f(x):\n    return 2 * x\n").status is Status.PASSED


def test_workers_start_again_without_a_cgroup_once_one_could_not_join_its_own(monkeypatch):
    # Workers that moved their zygote into one hierarchy's cgroup and failed in the next: each cgroup is
    # removed with its worker (the zygote inside killed), and the workers start again without.
    from codeloop.sandbox import pool

    ready, refused = pool._Worker.ready, []

    def refuse(self: pool._Worker) -> None:
        if self.group is not None:
            refused.append(self.group)
            self.close()
            raise pool._CgroupRefused("cgroup v1: memory, pids: cannot move the zygote into it: Invalid argument")
        ready(self)

    monkeypatch.setattr(pool._Worker, "ready", refuse)
    with Sandbox(workers=2, pin=False) as sandbox:
        sandbox.level  # started
        assert [w.cgroup for w in sandbox._workers] == 2 * ["none: cgroup v1: memory, pids: cannot move the zygote "
                                                            "into it: Invalid argument"]
        assert run(sandbox, "def f(x):\n    return 2 * x\n").status is Status.PASSED
        for w in sandbox._workers:  # their replacements go without at once
            w.proc.kill()
            w.proc.wait()
        assert run(sandbox, "def f(x):\n    return 2 * x\n").status is Status.PASSED
    assert len(refused) == 2 and not any(os.path.exists(d) for group in refused for d in group.dirs)


KILLS_ITSELF = "import os, signal\ndef f(x):\n    os.kill(os.getpid(), signal.SIGKILL)\n"


@CGROUPS
def test_the_cgroup_tells_a_sample_killed_for_its_memory_from_one_killed_otherwise():
    # Any SIGKILL used to read as "out of memory". A sample can SIGKILL itself only at level none (at
    # the others it is pid 1 of its PID namespace, which that signal cannot reach from inside). One the
    # cgroup killed for its memory: test_files_a_sample_writes_in_tmp_count_against_its_memory.
    with Sandbox(workers=1, isolation="none") as sandbox:
        killed = run(sandbox, KILLS_ITSELF)
    assert (killed.status, killed.reason) == (Status.RUNTIME_ERROR, "killed by SIGKILL during call 1"), killed.reason
    with Sandbox(workers=1, isolation="none", cgroups=False) as sandbox:  # no count to ask: as before
        assert run(sandbox, KILLS_ITSELF).status is Status.MEMORY_EXCEEDED
