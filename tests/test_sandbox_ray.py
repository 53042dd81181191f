"""The sandbox fanned out over Ray (a local Ray instance with 2 CPUs stands in for a cluster): the same
verdicts, in the same order, as the local sandbox; lost actors restarted; clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from conftest import CGROUPS, check_job

from codeloop.data import load_tasks
from codeloop.eval.evaluate import job_for
from codeloop.recipes.common import _same_settings
from codeloop.sandbox import RaySandbox, Sandbox, SandboxError, cgroup, open_sandbox
from codeloop.sandbox.cgroup import hierarchies
from codeloop.types import Sample, Status

ADVERSARIES = [  # one of each kind of outcome, and the ways a sample tries to fake a pass or bring down its judge
    "def f(x):\n    return 2 * x\n",
    "def f(x):\n    return x + 1\n",
    "def f(x)\n    return x\n",
    "def f(x):\n    return x / 0\n",
    "def f(x):\n    while True:\n        pass\n",
    "def f(x):\n    return bytearray(4 << 30)\n",
    "import sys\nsys.exit(0)\n",
    "import os\ndef f(x):\n    os._exit(0)\n",
    "class A:\n    def __eq__(self, o):\n        return True\ndef f(x):\n    return A()\n",
    "import os, signal\ndef f(x):\n    os.kill(os.getppid(), signal.SIGKILL)\n    return 2 * x\n",
    "import os\ndef f(x):\n    if os.fork() == 0:\n        import time\n        time.sleep(60)\n    return x\n",
]


def _humaneval_jobs(n: int):
    tasks = list(load_tasks("humaneval").values())[:n]
    right = [job_for(t, Sample(t.task_id, t.canonical_solution or "")) for t in tasks]
    wrong = [job_for(t, Sample(t.task_id, "    return None\n")) for t in tasks]
    return [job for pair in zip(right, wrong) for job in pair]


def test_ray_gives_the_local_verdicts_in_input_order(ray_cluster):
    jobs = _humaneval_jobs(40) + [check_job(p) for p in ADVERSARIES]
    with Sandbox(workers=2, timeout_s=1.0, memory_mb=512) as local:
        expected = list(local.run(jobs))
    done = []
    with RaySandbox(timeout_s=1.0, memory_mb=512, chunk=3) as remote:
        assert remote.workers == 2 and remote.level == local.level
        got = list(remote.run(jobs, on_done=lambda: done.append(1)))
    assert [o.status for o in got] == [o.status for o in expected]
    assert [o.reason for o in got] == [o.reason for o in expected]
    assert [o.status for o in got[:80:2]] == [Status.PASSED] * 40  # canonical solutions
    assert Status.PASSED not in {o.status for o in got[1:80:2]}
    assert [o.status for o in got[80:]] == [
        Status.PASSED, Status.FAILED, Status.COMPILE_ERROR, Status.RUNTIME_ERROR, Status.TIMEOUT,
        Status.MEMORY_EXCEEDED, Status.RUNTIME_ERROR, Status.RUNTIME_ERROR, Status.FAILED, Status.PASSED, Status.FAILED]
    assert len(done) == len(jobs)


def test_a_sample_cannot_reach_the_ray_actor_that_judges_it(ray_cluster):
    """The actor's process is the trusted side on a node: a sample must not be able to signal it."""
    program = ("import os, signal\ndef f(x):\n    for pid in range(2, 1 << 16):\n        try:\n"
               "            os.kill(pid, signal.SIGKILL)\n        except OSError:\n            pass\n    return 2 * x\n")
    with RaySandbox(timeout_s=5.0, memory_mb=512, chunk=1) as remote:
        assert remote.workers == 2
        pids = ray.get([slot.where.remote() for slot in remote._slots])
        outcomes = list(remote.run([check_job(program)] * 2 + [check_job(ADVERSARIES[0])] * 4))
        assert ray.get([slot.where.remote() for slot in remote._slots]) == pids  # no actor died and was restarted
    assert [o.status for o in outcomes] == [Status.PASSED] * 6  # nor a sandbox worker (twice: a violation)


AFFINITY = "import os\ndef f(x):\n    return sorted(os.sched_getaffinity(0))\n"


def _affinities(outcomes) -> set[str]:
    """What each sample answered (its CPUs), from the failed check's detail."""
    return {o.tests[0].detail.removeprefix("returned ") for o in outcomes}


def _leased(remote: RaySandbox) -> list[int | None]:
    """The CPU each actor leased (None: unpinned)."""
    return ray.get([slot.cpu.remote() for slot in remote._slots])


def test_actors_on_one_node_run_their_samples_on_cpus_of_their_own(ray_cluster):
    """Each actor leases a CPU no other actor on its node holds, and its worker's samples run there (as the
    local Sandbox pins its workers); with pin=False they run wherever the OS puts them."""
    jobs = [check_job(AFFINITY)] * 8  # check_job asks for f(2) == 4: each fails, showing its CPUs
    with RaySandbox(chunk=1, pin=True) as remote:
        assert remote.workers == 2
        leased = _leased(remote)
        seen = _affinities(remote.run(jobs))
    assert len(set(leased)) == 2 and None not in leased
    assert seen == {f"[{cpu}]" for cpu in leased}  # both actors judged some, each on its own CPU
    with RaySandbox(chunk=1, pin=False) as remote:
        assert remote.workers == 2
        assert _leased(remote) == [None, None]
        assert _affinities(remote.run(jobs)) == {str(sorted(os.sched_getaffinity(0)))}


@CGROUPS
def test_a_closed_ray_sandbox_leaves_no_cgroup_and_starts_no_actor_to_say_what_it_had(ray_cluster):
    """The actors close their sandboxes before Ray kills them: killed first, they left their workers'
    cgroups behind until the next sandbox on the node swept them."""
    with RaySandbox(chunk=1) as remote:
        assert remote.run_one(check_job("def f(x):\n    return 2 * x\n")).status is Status.PASSED
        pids = [pid for pid, _ in ray.get([slot.where.remote() for slot in remote._slots])]
        level, workers = remote.level, remote.workers
        parents = {h.parent for h in hierarchies(Path("/proc/self/mountinfo").read_text(),
                                                  Path("/proc/self/cgroup").read_text())}

        def left() -> list[str]:
            return [p.name for parent in parents for p in Path(parent).iterdir()
                    if any(p.name.startswith(f"{cgroup.PREFIX}{pid}-") for pid in pids)]

        assert len(left()) == len(pids) * len(parents)  # each actor's worker has its cgroups while it runs
    assert left() == []
    assert (remote.level, remote.workers) == (level, workers) and remote._slots == []


def test_by_default_actors_pin_only_where_ray_counts_the_cpus_they_may_run_on(ray_cluster):
    """A node whose Ray was told fewer CPUs than its actors see (a container's quota, --num-cpus) may share
    its host's CPUs with other nodes: its actors are left to the OS. Here Ray counts 2 CPUs."""
    with RaySandbox(chunk=1) as remote:
        assert remote.workers == 2
        leased = _leased(remote)
    if len(os.sched_getaffinity(0)) == 2:  # this VM, and CI's: Ray's count is the whole node
        assert sorted(leased) == sorted(os.sched_getaffinity(0))
    else:
        assert leased == [None, None]


def test_cpu_leases_are_exclusive_and_freed_when_their_holder_lets_go():
    from codeloop.sandbox.cluster import lease_cpu

    held = []
    try:
        while (lease := lease_cpu(wait_s=0)) is not None:
            held.append(lease)
        assert sorted(cpu for cpu, _ in held) == sorted(os.sched_getaffinity(0))  # each CPU once, then none
        cpu, sock = held.pop(0)
        sock.close()  # as when an actor's process ends
        again = lease_cpu(wait_s=0)
        assert again is not None and again[0] == cpu
        held.append(again)
    finally:
        for _, sock in held:
            sock.close()


def test_a_lost_actor_is_restarted_and_its_chunks_run_again(ray_cluster):
    jobs = _humaneval_jobs(30)
    with RaySandbox(chunk=2) as remote:
        remote.workers  # started
        victim = remote._slots[0]
        killed = []

        def kill_once() -> None:
            if not killed:
                killed.append(1)
                ray.kill(victim, no_restart=False)  # as a node's process dying would

        got = list(remote.run(jobs, on_done=kill_once))
    assert killed
    assert [o.status for o in got] == [Status.PASSED, Status.FAILED] * 30


def test_an_actor_gone_for_good_hands_its_chunks_to_the_others(ray_cluster):
    jobs = _humaneval_jobs(30)
    with RaySandbox(chunk=2) as remote:
        remote.workers
        victim, killed = remote._slots[0], []

        def kill_once() -> None:
            if not killed:
                killed.append(1)
                ray.kill(victim, no_restart=True)  # a node that does not come back

        got = list(remote.run(jobs, on_done=kill_once))
    assert killed
    assert [o.status for o in got] == [Status.PASSED, Status.FAILED] * 30


LOST_NODE = """
import signal, sys, time
import ray
from ray.cluster_utils import Cluster
from codeloop.sandbox import Job, RaySandbox

signal.signal(signal.SIGALRM, lambda *_: sys.exit("hung: the lost node's chunks never came back"))
signal.alarm(100)
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
try:
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    job = Job(program="import time\\ndef f(x):\\n    time.sleep(0.2)\\n    return 2 * x\\n", entry_point="f",
              test="def check(c):\\n    assert c(2) == 4\\n")
    with RaySandbox(workers=2, chunk=2, start_timeout_s=120) as sandbox:
        sandbox.workers  # started (on a busy machine, a fresh cluster's actors can take more than 8 s)
        sandbox.start_timeout_s = 8  # how long the lost actor's restart is waited for
        lost = []
        def lose_a_node():
            if not lost:
                lost.append(time.monotonic())
                cluster.remove_node(nodes[0])  # its actor's restart needs a CPU that no node has free
        outcomes = list(sandbox.run([job] * 20, on_done=lose_a_node))
    print("RESULT", " ".join(o.status.value for o in outcomes), round(time.monotonic() - lost[0]))
finally:
    ray.shutdown()
    cluster.shutdown()
"""


def test_an_actor_whose_restart_never_comes_is_given_up_and_its_chunks_move_on():
    """A node lost where no other has a free CPU: Ray would keep the actor's chunks waiting for ever."""
    proc = subprocess.run([sys.executable, "-c", LOST_NODE], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RAY_ADDRESS": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    _, *statuses, seconds = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT")).split()
    assert statuses == ["passed"] * 20
    assert int(seconds) < 60  # given up after start_timeout_s (8 s) and a probe interval or two


def test_with_every_actor_gone_the_jobs_are_infra_errors_that_say_so(ray_cluster):
    done = []
    with RaySandbox(chunk=2) as remote:
        for slot in list(remote._slots) if remote.workers else []:
            ray.kill(slot, no_restart=True)
        got = list(remote.run(_humaneval_jobs(5), on_done=lambda: done.append(1)))
    assert {o.status for o in got} == {Status.INFRA_ERROR} and len(got) == len(done) == 10
    assert "sandbox actor lost on the Ray cluster for good" in got[0].reason


def test_asking_for_more_workers_than_free_cpus_is_an_error_that_says_so(ray_cluster):
    with pytest.raises(SandboxError, match="only 2 of 3 sandbox actors started"):
        RaySandbox(workers=3, start_timeout_s=15).level
    with RaySandbox() as remote:  # the failed start left no actor holding a CPU
        assert remote.workers == 2


def test_open_sandbox_picks_local_or_ray_and_checks_options():
    assert type(open_sandbox("", workers=1)) is Sandbox
    assert type(open_sandbox("auto", workers=1)) is RaySandbox  # nothing starts until used
    with pytest.raises(ValueError, match="isolation"):
        open_sandbox("auto", isolation="chroot")
    with pytest.raises(ValueError, match="chunk"):
        RaySandbox(chunk=0)


def test_a_sandbox_that_starts_ray_sends_this_codeloop_to_the_nodes():
    """So that a node needs only Ray: the actors import the copy Ray unpacked, not an installed codeloop."""
    code = ("import ray\nfrom codeloop.sandbox import Job, RaySandbox\n"
            "with RaySandbox('local', workers=1) as r:\n"
            "    outcome = r.run_one(Job(program='def f(x):\\n    return 2 * x\\n', entry_point='f',"
            " test='def check(c):\\n    assert c(2) == 4\\n'))\n"
            "    print(outcome.status.value, ray.get(r._slots[0].where.remote())[1])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RAY_ADDRESS": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    status, where = proc.stdout.split()
    assert status == "passed" and "/runtime_resources/py_modules_files/" in where and where.endswith("/codeloop/__init__.py")


def test_a_node_with_another_codeloop_is_refused_by_name(ray_cluster, monkeypatch):
    monkeypatch.setattr("codeloop.__version__", "0.0.0")  # the driver's, sent to the actors with their options
    with pytest.raises(SandboxError, match=r"failed to start on the Ray cluster: a Ray node has codeloop 0\.1\.0, "
                                           r"the driver 0\.0\.0: install the same codeloop on every node"):
        RaySandbox().level
    monkeypatch.undo()
    with RaySandbox() as remote:  # the refused actors gave their CPUs back
        assert remote.workers == 2


def test_a_run_may_resume_on_another_executor(tmp_path):
    saved = {"run_format": 2, "model": "m", "lr": 0.1, "ray": ""}
    _same_settings(tmp_path, saved, {**saved, "ray": "auto"})  # where programs run changes no verdict
    _same_settings(tmp_path, saved, {**saved, "vllm_memory": 0.4})  # a run before the key, resumed with one
    with pytest.raises(ValueError, match="only iterations, out_dir, ray, launch and vllm_memory may differ"):
        _same_settings(tmp_path, saved, {**saved, "lr": 0.2})


def test_eval_cli_over_ray_writes_the_local_results(tmp_path):
    """`codeloop eval --ray local` in a fresh process, as a user would run it, against the local run."""
    samples = tmp_path / "samples.jsonl"
    tasks = list(load_tasks("humaneval").values())[:12]
    samples.write_text("".join(json.dumps({"task_id": t.task_id, "completion": c, "tag": i}) + "\n"
                               for i, t in enumerate(tasks) for c in (t.canonical_solution, "    return 1\n")))
    rows = {}
    for name, extra in (("local", []), ("ray", ["--ray", "local"])):
        out = tmp_path / f"{name}.jsonl"
        proc = subprocess.run([sys.executable, "-m", "codeloop.cli", "eval", "--tasks", "humaneval", "--samples", str(samples),
                               "--out", str(out), "--k", "1", *extra], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "RAY_ADDRESS": ""})
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "pass@1: 0.5000" in proc.stdout
        rows[name] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["task_id"], r["tag"], r["status"]) for r in rows["ray"]] == \
        [(r["task_id"], r["tag"], r["status"]) for r in rows["local"]]


def test_eval_cli_names_an_unreachable_cluster(tmp_path):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return True\n"}) + "\n")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "codeloop.cli", "eval", "--tasks", "humaneval", "--samples", str(samples),
                           "--ray", "127.0.0.1:1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "cannot connect to the Ray cluster at '127.0.0.1:1': nothing answers at 127.0.0.1:1" in proc.stderr
    assert time.monotonic() - started < 60  # Ray itself would wait for that address for minutes


def test_pinging_no_busy_actor_asks_ray_nothing():
    """When every actor holding chunks was given up already, there is nothing to ping (Ray refuses an empty wait)."""
    from codeloop.sandbox.cluster import _Pings

    class NoRay:
        def wait(self, refs, num_returns, timeout):
            raise ValueError(f"Invalid number of objects to return {num_returns}.")

    assert _Pings(NoRay(), [], patience_s=1.0).unanswered(set()) == []
