"""A Structured Text interpreter over the checked syntax tree.

:func:`entry` turns one FUNCTION, FUNCTION_BLOCK or PROGRAM of a program into a Python callable that
takes and returns plain data, which is how the sandbox's I/O tests call it:

- a FUNCTION is called with its inputs (VAR_INPUT, then VAR_IN_OUT, in declaration order) and returns
  its result; one that also has VAR_OUTPUT or VAR_IN_OUT parameters returns a dict of them by their
  declared names, with the result under the function's own name;
- a FUNCTION_BLOCK or PROGRAM is called with a list of scan cycles, each a dict of inputs by name
  (``"@ms"``: milliseconds the clock advances before that cycle, for timers), and returns, per cycle,
  a dict of its VAR_OUTPUT values after it ran. One instance lives through all the cycles.

Values cross as JSON data: BOOL as bool, integers as int, REAL as float, STRING as str, TIME as
milliseconds, an enumeration value as its name, ARRAY as (nested) lists, a structure as a dict.

AND and OR skip their right side when the left decides (as ``AND_THEN``/``OR_ELSE`` would); run-time
faults (division by zero, an index out of range) raise :class:`STRuntimeError` naming the line. The
interpreter never runs anything but the program's own statements: it is still meant to run inside
``codeloop.sandbox``, which bounds its time and memory.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from codeloop.languages.st.check import Checked, Var, check
from codeloop.languages.st.stdlib import BLOCKS, STRuntimeError, convert, step_block
from codeloop.languages.st.syntax import (ArrayInit, Assign, Binary, Call, CallStmt, Case, For, If, Index, Jump,
                                          Literal, Member, Name, Node, Pou, Repeat, StructInit, Unary, While)
from codeloop.languages.st.typesys import Type, coerce, default_value, wrap


class STCompileError(Exception):
    """The program did not pass the checker; ``diagnostics`` lists why."""

    def __init__(self, diagnostics: list[Any]) -> None:
        errors = [d for d in diagnostics if d.severity == "error"]
        super().__init__("; ".join(str(d) for d in errors[:5]))
        self.diagnostics = diagnostics


class _Exit(Exception):
    pass


class _Continue(Exception):
    pass


class _Return(Exception):
    pass


class Instance:
    """A function block (or PROGRAM) instance: its variables, kept between calls."""

    def __init__(self, type_: Type, vars_: dict[str, Any]) -> None:
        self.type, self.vars = type_, vars_
        self.state: dict[str, Any] = {}  # standard blocks' hidden memory (edges, timer starts)


class _Ref:
    """A VAR_IN_OUT: the caller's variable, read and written in place."""

    def __init__(self, container: Any, key: Any) -> None:
        self.container, self.key = container, key

    def get(self) -> Any:
        return self.container[self.key]

    def set(self, value: Any) -> None:
        self.container[self.key] = value


def _fault(node: Node, message: str) -> STRuntimeError:
    return STRuntimeError(f"line {node.line}: {message}")


class Runtime:
    """Runs a checked program. ``now_ms`` is the clock the standard timers read."""

    def __init__(self, program: Checked) -> None:
        self.program = program
        self.now_ms = 0
        for t in program.types.values():
            self._struct_initial(t)

    def _struct_initial(self, t: Type) -> None:
        """Apply structure field initializers once, inner structures first."""
        if t.kind != "struct" or t.initial is not None:
            return
        value: dict[str, Any] = {}
        for key, (_, ft, init) in t.fields.items():
            self._struct_initial(ft)
            value[key] = self.init_value(init, ft, {}) if init is not None else self.default(ft)
        t.initial = value

    # -- variables
    def new_vars(self, pou: Pou) -> dict[str, Any]:
        scope = self.program.scopes[pou.name.upper()]
        frame: dict[str, Any] = {}
        for key, var in scope.items():
            frame[key] = self.initial(var, frame)
        return frame

    def initial(self, var: Var, frame: dict[str, Any]) -> Any:
        t = var.type
        if t.kind == "fb":
            return self.new_instance(t)
        if var.decl is not None and var.decl.init is not None:
            return self.init_value(var.decl.init, t, frame)
        return self.default(t)

    def default(self, t: Type) -> Any:
        return default_value(t, self.new_instance)

    def new_instance(self, t: Type) -> Instance:
        if t.pou is not None:
            return Instance(t, self.new_vars(t.pou))
        return Instance(t, {k: default_value(ft) for k, (_, ft, _) in BLOCKS[t.name].fields.items()})

    def init_value(self, init: Node, t: Type, frame: dict[str, Any]) -> Any:
        if isinstance(init, ArrayInit):
            value = self.default(t)
            assert t.elem is not None
            flat: list[Any] = []
            for count, item in init.items:
                v = self.default(t.elem) if isinstance(item, Literal) and item.kind == "default" \
                    else self.init_value(item, t.elem, frame)
                flat += [copy.deepcopy(v) for _ in range(count)]
            _fill(value, flat, len(t.dims))
            return value
        if isinstance(init, StructInit):
            value = self.default(t)
            for fname, item in init.fields:
                fkey = fname.upper()
                value[fkey] = self.init_value(item, t.fields[fkey][1], frame)
            return value
        return self.store_value(self.eval(init, frame), t)

    @staticmethod
    def store_value(value: Any, t: Type) -> Any:
        if isinstance(value, (list, dict)):
            return copy.deepcopy(value)
        if isinstance(value, Instance):
            return copy.deepcopy(value)  # its variables and a standard block's hidden state
        return coerce(value, t)

    # -- statements
    def run_block(self, stmts: list[Node], frame: dict[str, Any]) -> None:
        for s in stmts:
            self.execute(s, frame)

    def execute(self, s: Node, frame: dict[str, Any]) -> None:
        if isinstance(s, Assign):
            self.store(s.target, self.eval(s.value, frame), frame)
        elif isinstance(s, CallStmt):
            self.call(s.call, frame)
        elif isinstance(s, If):
            for cond, body in s.branches:
                if self.eval(cond, frame):
                    self.run_block(body, frame)
                    return
            self.run_block(s.orelse, frame)
        elif isinstance(s, Case):
            selector = self.eval(s.selector, frame)
            for arm in s.arms:
                for lo, hi in arm.labels:
                    low = self.eval(lo, frame)
                    if selector == low if hi is None else low <= selector <= self.eval(hi, frame):
                        self.run_block(arm.body, frame)
                        return
            self.run_block(s.orelse, frame)
        elif isinstance(s, For):
            self.for_loop(s, frame)
        elif isinstance(s, While):
            while self.eval(s.cond, frame) and self.loop_pass(s.body, frame):
                pass
        elif isinstance(s, Repeat):
            while self.loop_pass(s.body, frame) and not self.eval(s.cond, frame):
                pass
        elif isinstance(s, Jump):
            raise {"EXIT": _Exit, "CONTINUE": _Continue, "RETURN": _Return}[s.kind]()

    def loop_pass(self, body: list[Node], frame: dict[str, Any]) -> bool:
        """One pass of a loop's body; False when it EXITs (CONTINUE just ends the pass)."""
        try:
            self.run_block(body, frame)
        except _Exit:
            return False
        except _Continue:
            pass
        return True

    def for_loop(self, s: For, frame: dict[str, Any]) -> None:
        value = self.eval(s.start, frame)
        stop = self.eval(s.stop, frame)
        step = self.eval(s.step, frame) if s.step is not None else 1
        self.store(s.var, value, frame)
        while True:
            value = self.eval(s.var, frame)
            if (step >= 0 and value > stop) or (step < 0 and value < stop) or not self.loop_pass(s.body, frame):
                break
            self.store(s.var, self.eval(s.var, frame) + step, frame)

    # -- places
    def store(self, target: Node, value: Any, frame: dict[str, Any]) -> None:
        container, key = self.place(target, frame)
        t: Type = target.typ  # type: ignore[attr-defined]
        current = container[key]
        if isinstance(current, _Ref):
            current.set(self.store_value(value, t))
        else:
            container[key] = self.store_value(value, t)

    def place(self, node: Node, frame: dict[str, Any]) -> tuple[Any, Any]:
        """The container and key of an assignable place."""
        if isinstance(node, Name):
            current = frame[node.key]
            if isinstance(current, _Ref):
                return current.container, current.key
            return frame, node.key
        if isinstance(node, Member):
            base = self.eval(node.base, frame)
            return (base.vars if isinstance(base, Instance) else base), node.name.upper()
        if isinstance(node, Index):
            base = self.eval(node.base, frame)
            dims = node.base.typ.dims  # type: ignore[attr-defined]
            for ix, (lo, hi) in list(zip(node.indices, dims))[:-1]:
                base = base[self.offset(ix, lo, hi, frame)]
            ix, (lo, hi) = node.indices[-1], dims[-1]
            return base, self.offset(ix, lo, hi, frame)
        raise _fault(node, "not an assignable place")

    def offset(self, ix: Node, lo: int, hi: int, frame: dict[str, Any]) -> int:
        i = self.eval(ix, frame)
        if not lo <= i <= hi:
            raise _fault(ix, f"index {i} is outside the array's range {lo}..{hi}")
        return int(i - lo)

    # -- expressions
    def eval(self, node: Node, frame: dict[str, Any]) -> Any:
        if isinstance(node, Literal):
            t = node.typ  # type: ignore[attr-defined]
            return float(node.value) if t.kind == "real" else bool(node.value) if t.kind == "bool" else node.value
        if isinstance(node, Name):
            if hasattr(node, "const"):
                return node.const
            value = frame[node.key]
            return value.get() if isinstance(value, _Ref) else value
        if isinstance(node, Member):
            if hasattr(node, "const"):
                return node.const
            base = self.eval(node.base, frame)
            key = node.name.upper()
            value = base.vars[key] if isinstance(base, Instance) else base[key]
            return value.get() if isinstance(value, _Ref) else value
        if isinstance(node, Index):
            container, key = self.place(node, frame)
            return container[key]
        if isinstance(node, Binary):
            return self.binary(node, frame)
        if isinstance(node, Unary):
            value = self.eval(node.operand, frame)
            if node.op == "NOT":
                t = node.typ  # type: ignore[attr-defined]
                return (not value) if t.kind == "bool" else wrap(~int(value), t)
            return -value if node.op == "-" else value
        if isinstance(node, Call):
            return self.call(node, frame)
        raise _fault(node, "cannot evaluate this expression")

    def binary(self, node: Binary, frame: dict[str, Any]) -> Any:
        op = node.op
        a = self.eval(node.left, frame)
        if op in ("AND", "OR") and isinstance(a, bool):
            if (op == "AND" and not a) or (op == "OR" and a):
                return a
            return bool(self.eval(node.right, frame))
        b = self.eval(node.right, frame)
        if op in ("AND", "OR", "XOR"):
            if isinstance(a, bool):
                return a != b if op == "XOR" else (a and b if op == "AND" else a or b)
            return {"AND": a & b, "OR": a | b, "XOR": a ^ b}[op]
        if op in ("=", "<>", "<", ">", "<=", ">="):
            return {"=": a == b, "<>": a != b, "<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
        t: Type = node.typ  # type: ignore[attr-defined]
        integral = t.kind in ("int", "bits", "time")
        try:
            if op == "+":
                out = a + b
            elif op == "-":
                out = a - b
            elif op == "*":
                out = a * b
            elif op == "/":
                if b == 0:
                    raise _fault(node, "division by zero")
                out = _trunc_div(a, b) if integral and isinstance(a, int) and isinstance(b, int) else a / b
            elif op == "MOD":
                if b == 0:
                    raise _fault(node, "MOD by zero")
                out = a - b * _trunc_div(a, b)
            else:  # **
                if integral and isinstance(b, int) and b >= 0:
                    out = pow(a, b) if b < 256 else pow(a, b, 1 << 64)
                else:
                    out = math.pow(a, b)
        except (OverflowError, ValueError, ZeroDivisionError) as exc:
            raise _fault(node, f"arithmetic error: {exc}") from None
        if integral and isinstance(out, float):
            if math.isnan(out) or math.isinf(out):
                raise _fault(node, "arithmetic error: not a finite number")
            out = int(out)
        return out

    # -- calls
    def call(self, node: Call, frame: dict[str, Any]) -> Any:
        kind, what = node.callee  # type: ignore[attr-defined]
        if kind == "std":
            args = [self.eval(e, frame) for e in node.ordered]  # type: ignore[attr-defined]
            try:
                return what.run(args, [e.typ for e in node.ordered], node.typ)  # type: ignore[attr-defined]
            except STRuntimeError as exc:
                raise _fault(node, str(exc)) from None
        if kind == "conv":
            value_node = node.args[0].value
            source, target = what
            arg_t = value_node.typ  # type: ignore[attr-defined]
            try:
                return convert(self.eval(value_node, frame), arg_t if not arg_t.literal else source, target)
            except STRuntimeError as exc:
                raise _fault(node, str(exc)) from None
        binding = node.binding  # type: ignore[attr-defined]
        if kind == "user":
            pou: Pou = what
            callee = self.new_vars(pou)
            self.bind(binding, callee, frame)
            try:
                self.run_block(pou.body, callee)
            except _Return:
                pass
            self.collect(binding, callee, frame)
            return callee[pou.name.upper()]
        instance = self.eval(node.target, frame) if node.target is not None else frame[node.name.upper()]
        if isinstance(instance, _Ref):
            instance = instance.get()
        self.run_instance(instance, binding, frame)
        return None

    def run_instance(self, instance: Instance, binding: dict[str, Any] | None, frame: dict[str, Any]) -> None:
        if binding is not None:
            self.bind(binding, instance.vars, frame)
        pou = instance.type.pou
        if pou is None:
            step_block(instance.type.name, instance.vars, instance.state, self.now_ms)
        else:
            scope = self.program.scopes[pou.name.upper()]
            for key, var in scope.items():
                if var.section == "VAR_TEMP":
                    instance.vars[key] = self.initial(var, instance.vars)
            try:
                self.run_block(pou.body, instance.vars)
            except _Return:
                pass
        if binding is not None:
            self.collect(binding, instance.vars, frame)

    def bind(self, binding: dict[str, Any], callee: dict[str, Any], frame: dict[str, Any]) -> None:
        for key, expr, in_out, t in binding["inputs"]:
            if in_out:
                container, ckey = self.place(expr, frame)
                callee[key] = _Ref(container, ckey)
            else:
                callee[key] = self.store_value(self.eval(expr, frame), t)

    def collect(self, binding: dict[str, Any], callee: dict[str, Any], frame: dict[str, Any]) -> None:
        for key, target in binding["outputs"]:
            self.store(target, callee[key], frame)


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _fill(target: list[Any], flat: list[Any], depth: int) -> None:
    """Row-major fill of a nested list from ``flat`` (shorter: the rest keeps its default)."""
    cells: list[tuple[list[Any], int]] = []

    def walk(node: list[Any], d: int) -> None:
        for i in range(len(node)):
            if d == 1:
                cells.append((node, i))
            else:
                walk(node[i], d - 1)
    walk(target, depth)
    for (container, i), value in zip(cells, flat):
        container[i] = value


# ---- the boundary: plain data in and out ------------------------------------------------------------

def to_plain(value: Any, t: Type) -> Any:
    if t.kind == "enum":
        for name, v in t.values.values():
            if v == value:
                return name
        return value
    if t.kind == "array" and t.elem is not None:
        return [to_plain(v, t.elem) if len(t.dims) == 1 else to_plain(v, Type("array", "ARRAY", elem=t.elem, dims=t.dims[1:]))
                for v in value]
    if t.kind == "struct":
        return {name: to_plain(value[k], ft) for k, (name, ft, _) in t.fields.items()}
    if isinstance(value, Instance):
        return {name: to_plain(value.vars[k], ft) for k, (name, ft, sec) in value.type.fields.items() if sec == "VAR_OUTPUT"}
    return value


def from_plain(value: Any, t: Type, where: str) -> Any:
    """A test's plain value as a value of type ``t``; ValueError naming ``where`` when it cannot be."""
    def bad() -> ValueError:
        return ValueError(f"{where}: {value!r} is not a valid {t.display()}")
    if t.kind == "bool":
        if not isinstance(value, bool) and value not in (0, 1):
            raise bad()
        return bool(value)
    if t.kind in ("int", "bits", "time"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return coerce(value, t)
    if t.kind == "real":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return coerce(value, t)
    if t.kind == "string":
        if not isinstance(value, str):
            raise bad()
        return coerce(value, t)
    if t.kind == "enum":
        if isinstance(value, str):
            name = value.rpartition("#")[2].upper()
            if name in t.values:
                return t.values[name][1]
        elif isinstance(value, int) and any(v == value for _, v in t.values.values()):
            return value
        raise bad()
    if t.kind == "array" and t.elem is not None:
        lo, hi = t.dims[0]
        if not isinstance(value, list) or len(value) != hi - lo + 1:
            raise bad()
        inner = t.elem if len(t.dims) == 1 else Type("array", "ARRAY", elem=t.elem, dims=t.dims[1:])
        return [from_plain(v, inner, f"{where}[{lo + i}]") for i, v in enumerate(value)]
    if t.kind == "struct":
        if not isinstance(value, dict):
            raise bad()
        out = default_value(t)
        for k, v in value.items():
            field = t.fields.get(str(k).upper())
            if field is None:
                raise ValueError(f"{where}: {t.name} has no field {k!r}")
            out[str(k).upper()] = from_plain(v, field[1], f"{where}.{field[0]}")
        return out
    raise bad()


def load(source: str) -> Runtime:
    """Parse and check ``source``; a runtime for it, or :class:`STCompileError`."""
    program, diagnostics = check(source)
    if program is None:
        raise STCompileError(diagnostics)
    return Runtime(program)


def entry(source: str, name: str) -> Callable[..., Any]:
    """The callable a test calls for POU ``name`` of ``source`` (see the module docstring)."""
    runtime = load(source)
    pou = runtime.program.pous.get(name.upper())
    if pou is None:
        raise STRuntimeError(f"the program defines no FUNCTION, FUNCTION_BLOCK or PROGRAM named {name!r}")
    scope = runtime.program.scopes[pou.name.upper()]
    inputs = [(k, v) for k, v in scope.items() if v.section in ("VAR_INPUT", "VAR_IN_OUT")]
    outputs = [(k, v) for k, v in scope.items() if v.section in ("VAR_OUTPUT", "VAR_IN_OUT")]
    if pou.kind == "FUNCTION":
        return _function_entry(runtime, pou, inputs, outputs)
    return _block_entry(runtime, pou, inputs, [(k, v) for k, v in outputs if v.section == "VAR_OUTPUT"])


def _function_entry(runtime: Runtime, pou: Pou, inputs: list[tuple[str, Var]],
                    outputs: list[tuple[str, Var]]) -> Callable[..., Any]:
    key = pou.name.upper()
    result = runtime.program.scopes[key][key]

    def call(*args: Any) -> Any:
        if len(args) != len(inputs):
            raise TypeError(f"{pou.name} takes {len(inputs)} argument(s), {len(args)} given")
        frame = runtime.new_vars(pou)
        for (k, var), value in zip(inputs, args):
            frame[k] = from_plain(value, var.type, f"{pou.name}.{var.name}")
        try:
            runtime.run_block(pou.body, frame)
        except _Return:
            pass
        if not outputs:
            return to_plain(frame[key], result.type)
        out = {var.name: to_plain(frame[k], var.type) for k, var in outputs}
        if result.type.kind != "void":
            out[pou.name] = to_plain(frame[key], result.type)
        return out
    return call


def _block_entry(runtime: Runtime, pou: Pou, inputs: list[tuple[str, Var]],
                 outputs: list[tuple[str, Var]]) -> Callable[..., Any]:
    by_key = dict(inputs)

    def call(cycles: Any) -> list[dict[str, Any]]:
        if not isinstance(cycles, list):
            raise TypeError(f"{pou.name}: expected a list of scan cycles (dicts of inputs)")
        runtime.now_ms = 0
        instance = Instance(runtime.program.types.get(pou.name.upper()) or Type("fb", pou.name, pou=pou),
                            runtime.new_vars(pou))
        results = []
        for n, cycle in enumerate(cycles):
            if not isinstance(cycle, dict):
                raise TypeError(f"{pou.name}: cycle {n} is not a dict of inputs")
            for k, value in cycle.items():
                if k == "@ms":
                    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                        raise ValueError(f"{pou.name}: cycle {n}: '@ms' must be a whole number of milliseconds >= 0")
                    runtime.now_ms += value
                    continue
                var = by_key.get(str(k).upper())
                if var is None:
                    raise ValueError(f"{pou.name}: cycle {n}: no input named {k!r}")
                instance.vars[str(k).upper()] = from_plain(value, var.type, f"{pou.name}.{var.name}")
            runtime.run_instance(instance, None, {})
            results.append({var.name: to_plain(instance.vars[k], var.type) for k, var in outputs})
        return results
    return call


__all__ = ["Instance", "Runtime", "STCompileError", "STRuntimeError", "entry", "from_plain", "load", "to_plain"]
