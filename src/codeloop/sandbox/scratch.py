"""A sample's scratch space: its fresh temp dir and the two files behind its stdout and stderr.

Made, read and removed by the worker (trusted; it never forks per sample, so this work costs it no
copy-on-write faults). The sample owns the directory while it runs and may rename, delete or replace
anything in it, so after the sample is dead the worker reads its output through the descriptors it
opened itself (``pread``), never by name: a name swapped for a link to a host file, or for a FIFO,
leaks nothing and stalls nothing. Removal walks the tree through directory descriptors without
following links, and without recursion (a sample can nest directories thousands deep).
"""

from __future__ import annotations

import itertools
import os

SAMPLE_ROOT = "/tmp/codeloop-samples"  # inside the worker's private tmpfs at the "root" and "userns" levels
_root = SAMPLE_ROOT  # where this worker makes its samples' dirs (see make_sample_root)
STREAM_CAP = 64 << 10  # stdout/stderr reported per sample are cut at 64 KiB (a sample's sys.stdout writes 1 MiB: child._Kept)
SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")

_numbers = itertools.count(1)


class Unavailable(OSError):
    """A sample's scratch space cannot be made (a full /tmp, ...): the machine's fault, not the sample's."""


def _make_dir() -> str:
    """A new, empty directory in this worker's sample root (:func:`make_sample_root`): by the same name for every sample of this worker
    (its pid; each sample's is removed before the next one's is made), so that the zygote sets the
    samples' HOME and TMPDIR once. Set anew for each sample, with a name of its own, they grew the
    zygote by ~190 bytes a sample (C's setenv keeps every value it was ever given: 6.2 -> 9.3 MB after
    20,000 samples), and every byte it holds is copied at each fork. Only when that name is taken (a
    tree that could not be removed; at level none, one a dead worker with the same pid left in the
    host's /tmp) a numbered name, the next free one."""
    path = os.path.join(_root, str(os.getpid()))
    while True:
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            path = os.path.join(_root, f"{os.getpid()}-{next(_numbers)}")


class Scratch:
    """``Scratch(uid)``: a new directory in the worker's sample root (owned by ``uid`` when given) with
    ``stdout`` and ``stderr`` files; ``fds`` go to the sample, :meth:`outputs` and :meth:`remove` after it."""

    def __init__(self, uid: int | None) -> None:
        self.uid = uid
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self.path = _make_dir()
            self.fds = tuple(os.open(os.path.join(self.path, name), flags, 0o600) for name in ("stdout", "stderr"))
        except OSError as exc:
            raise Unavailable(f"cannot make a sample's temp dir in {_root}: {exc.strerror}") from None
        if uid is not None:
            os.chown(self.path, uid, uid)
            for fd in self.fds:
                os.fchown(fd, uid, uid)

    def outputs(self) -> tuple[str, str]:
        """What the sample wrote to its stdout and stderr, each cut at :data:`STREAM_CAP`."""
        return _read_capped(self.fds[0]), _read_capped(self.fds[1])

    def remove(self, wipe_shared_tmp: bool = False) -> None:
        """Close the descriptors and delete the directory; with ``wipe_shared_tmp`` also everything a
        sample left in the tmpfs roots (levels root and userns, whose workers put fresh tmpfs there
        that samples may write: nothing one leaves reaches the next)."""
        for fd in self.fds:
            os.close(fd)
        _open_up(self.path)
        try:  # the common case: the sample left nothing but its two output files
            for name in ("stdout", "stderr"):
                os.unlink(os.path.join(self.path, name))
            os.rmdir(self.path)
        except OSError:
            remove_tree(self.path)
        if wipe_shared_tmp:
            _wipe_shared_tmp(keep_sample_root=self.uid is not None)


def make_sample_root(level: str = "root") -> None:
    """Create the directory this worker makes its samples' temp dirs in (at start, and again after a wipe
    removed it): :data:`SAMPLE_ROOT` in the worker's own tmpfs, or at level none, where /tmp is the
    host's, one of the caller's own (:func:`_own_sample_root`)."""
    global _root
    if level == "none":
        _root = _own_sample_root()
    else:
        os.makedirs(SAMPLE_ROOT, mode=0o755, exist_ok=True)
        _root = SAMPLE_ROOT


def _own_sample_root() -> str:
    """``codeloop-samples-UID`` in the temp dir, private to the caller. One name for every user (as
    :data:`SAMPLE_ROOT`) let the first user's directory refuse every later user's samples (each
    "brought down its sandbox worker twice": found running as a second user under cgroup v2,
    docs/sandbox-cgroup-v2.md), and let any user make it, for another's samples to work in. A directory
    by that name that is not the caller's, is open to others or is a link is left alone: a fresh one then."""
    import stat
    import tempfile

    path = os.path.join(tempfile.gettempdir(), f"codeloop-samples-{os.geteuid()}")
    try:
        os.mkdir(path, 0o700)
        return path
    except FileExistsError:
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077:
            return path
    return tempfile.mkdtemp(prefix="codeloop-samples-")


def _read_capped(fd: int) -> str:
    data = os.pread(fd, STREAM_CAP + 1, 0)
    text = data[:STREAM_CAP].decode("utf-8", errors="replace")
    return text + ("\n[... output cut at 64 KiB]" if len(data) > STREAM_CAP else "")


_wiped: dict[str, int] = {}  # tmpfs root -> its size after the last wipe (where samples run as another uid)


def _wipe_shared_tmp(keep_sample_root: bool) -> None:
    """Remove what samples left in the tmpfs roots. :data:`SAMPLE_ROOT` too (and make it again), unless
    ``keep_sample_root``: where samples run as another uid they cannot write in it, but a sample with
    the worker's uid could have planted the next sample's directory name there.

    Where samples run as another uid, the roots are sticky and everything already in them is root's, so
    a sample can add entries there but remove none; a tmpfs directory's size counts its entries, so a
    root whose size is what the last wipe left holds nothing new and is not listed (one ``stat`` each:
    listing all four cost about 0.05 ms a sample, at root level, where samples rarely write there)."""
    for root in SHARED_TMP:
        try:
            here = os.stat(root)
            if keep_sample_root and _wiped.get(root) == here.st_size:
                continue
            entries = list(os.scandir(root))
        except OSError:
            continue
        for entry in entries:
            if keep_sample_root and entry.path == SAMPLE_ROOT:
                continue
            try:
                if entry.stat(follow_symlinks=False).st_dev != here.st_dev:
                    continue  # a mount: the read-only view of a path the worker needs (the venv, a Ray job's files)
            except OSError:
                continue
            if entry.is_dir(follow_symlinks=False):
                remove_tree(entry.path)
            else:
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass
        if keep_sample_root:
            _wiped[root] = os.stat(root).st_size
    if not keep_sample_root:
        make_sample_root()


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_up(name: str, dir_fd: int | None = None) -> None:
    """Let the worker list and empty a directory a sample owned (and may have closed): at level root
    the worker is not root any more, only the owner of no file with CAP_FOWNER (see worker.confine).
    Only for a directory (never a link) in a tree nothing changes any more."""
    try:
        os.chmod(name, 0o777, dir_fd=dir_fd)
    except OSError:
        pass


def remove_tree(path: str) -> None:
    """Delete the directory ``path`` and everything in it, best effort, never raising.

    Only for trees nothing else is changing (the sample and all it started are dead): it goes down
    by ``openat`` of one subdirectory at a time and back up by "..", holding one descriptor and a
    list of names, so neither depth nor width can exhaust the stack or the descriptor table. Links
    are unlinked, never followed.
    """
    _open_up(path)
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError:
        return
    names: list[str] = []  # the path from ``path`` down to where fd points
    try:
        while True:
            sub = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        sub = entry.name
                        break
                    os.unlink(entry.name, dir_fd=fd)
            if sub is not None:
                _open_up(sub, fd)
                child = os.open(sub, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
                names.append(sub)
                continue
            if not names:
                break
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(names.pop(), dir_fd=fd)
    except OSError:
        pass  # what is left stays in the worker's private tmpfs, which goes when the worker does
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        pass
