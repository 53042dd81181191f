"""The Structured Text checker: what a compiler front end rejects, with line and column.

It resolves every name and type and reports, among others: undeclared variables, unknown types and
functions, duplicate declarations, type mismatches (a BOOL where a number is needed, a REAL stored in an
INT without a conversion, a condition that is not BOOL), wrong argument counts and names, writing to a
CONSTANT or to a block's output, EXIT outside a loop, constant array indices out of range, duplicate
CASE labels, and recursion (IEC 61131-3 forbids it). Narrowing integer stores are warnings, as in
common PLC compilers. The syntax tree is annotated for :mod:`codeloop.languages.st.interp`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from codeloop.languages.st import stdlib
from codeloop.languages.st.syntax import (Arg, ArrayInit, Assign, Binary, Call, CallStmt, Case, For, If, Index,
                                          Jump, Literal, Member, Name, Node, Pou, Repeat, STError, StructInit,
                                          TypeRef, Unary, Unit, VarDecl, While, parse)
from codeloop.languages.st.typesys import (BOOL, ELEMENTARY, ERROR, INT_LITERAL, LREAL, REAL, REAL_LITERAL, STRING,
                                           TIME, VOID, Type, assignable, int_range, wider)

MAX_ERRORS = 50
MAX_CELLS = 10_000_000  # elements in one array (nested arrays included)


@dataclass(frozen=True)
class Diagnostic:
    line: int
    col: int
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        return f"{self.line}:{self.col}: {self.severity}: {self.message}"


@dataclass
class Var:
    name: str
    type: Type
    section: str  # VAR, VAR_INPUT, VAR_OUTPUT, VAR_IN_OUT, VAR_TEMP, RETURN
    constant: bool
    decl: VarDecl | None


@dataclass
class Checked:
    """A program that passed the checker: its syntax tree (annotated), types and variable tables."""

    unit: Unit
    pous: dict[str, Pou]
    types: dict[str, Type]
    scopes: dict[str, dict[str, Var]]  # POU key → its variables (a FUNCTION's own name is its result)


class _TooMany(Exception):
    pass


def check(source: str) -> tuple[Checked | None, list[Diagnostic]]:
    """Parse and check; the checked program when there is no error, and every diagnostic found."""
    try:
        unit = parse(source)
    except STError as exc:
        return None, [Diagnostic(exc.line, exc.col, exc.message)]
    except RecursionError:  # the parser bounds nesting; this is a safety net, never a crash
        return None, [Diagnostic(1, 1, "the program is nested too deeply to check")]
    checker = _Checker(unit)
    try:
        checker.run()
    except _TooMany:
        pass
    except STError as exc:  # a constant expression or type that cannot be resolved at all
        checker.error(exc, exc.message)
    except RecursionError:
        checker.diags.append(Diagnostic(1, 1, "the program is nested too deeply to check"))
    diags = sorted(checker.diags, key=lambda d: (d.line, d.col))
    if any(d.severity == "error" for d in diags):
        return None, diags
    return Checked(unit, checker.pous, checker.types, checker.scopes), diags


def _pos(node: Any) -> tuple[int, int]:
    return (node.line, node.col) if hasattr(node, "line") else (0, 0)


class _Checker:
    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.diags: list[Diagnostic] = []
        self.types: dict[str, Type] = dict(ELEMENTARY) | dict(stdlib.BLOCKS)
        self.pous: dict[str, Pou] = {}
        self.scopes: dict[str, dict[str, Var]] = {}
        self.enum_values: dict[str, list[Type]] = {}
        self.calls: dict[str, set[str]] = {}
        self.scope: dict[str, Var] = {}
        self.pou: Pou | None = None
        self.loops = 0
        self.assigned: set[str] = set()

    # -- reporting
    def error(self, node: Any, message: str) -> Type:
        line, col = _pos(node)
        self.diags.append(Diagnostic(line, col, message))
        if sum(d.severity == "error" for d in self.diags) >= MAX_ERRORS:
            raise _TooMany
        return ERROR

    def warn(self, node: Any, message: str) -> None:
        line, col = _pos(node)
        self.diags.append(Diagnostic(line, col, message, "warning"))

    # -- declarations
    def run(self) -> None:
        user_types = []
        for td in self.unit.types:
            key = td.name.upper()
            if key in self.types:
                self.error(td, f"type '{td.name}' is already defined")
                continue
            t = Type(td.kind if td.kind != "alias" else "alias", td.name)
            self.types[key] = t
            user_types.append((td, t))
        for pou in self.unit.pous:
            key = pou.name.upper()
            if key in self.pous or key in self.types or key in stdlib.FUNCTIONS:
                self.error(pou, f"'{pou.name}' is already defined")
                continue
            self.pous[key] = pou
            if pou.kind == "FUNCTION_BLOCK":
                self.types[key] = Type("fb", pou.name, pou=pou)
        for td, t in user_types:
            self._define_type(td, t)
        for td, t in user_types:
            if t.kind == "struct" and self._contains(t, t, set()):
                self.error(td, f"structure '{td.name}' contains itself")
                t.fields.clear()
        for key, pou in self.pous.items():
            self.scopes[key] = self._declare(pou)
        for key, pou in self.pous.items():
            self._check_body(key, pou)
        self._check_recursion()

    def _define_type(self, td: Any, t: Type) -> None:
        if td.kind == "struct":
            for f in td.fields:
                fkey = f.name.upper()
                if fkey in t.fields:
                    self.error(f, f"field '{f.name}' is declared twice in '{td.name}'")
                ft = self.resolve(f.type, {})
                t.fields[fkey] = (f.name, ft, f.init)
                if f.init is not None:
                    self.scope = {}
                    self.check_init(f.init, ft)
        elif td.kind == "enum":
            t.kind = "enum"
            value = -1
            for vname, vexpr in td.values:
                value = self.const_int(vexpr, {}) if vexpr is not None else value + 1
                vkey = vname.upper()
                if vkey in t.values:
                    self.error(td, f"value '{vname}' appears twice in enumeration '{td.name}'")
                t.values[vkey] = (vname, value)
                self.enum_values.setdefault(vkey, []).append(t)
        else:
            target = self.resolve(td.alias, {})
            t.__dict__.update({k: v for k, v in target.__dict__.items() if k != "name"})
            t.name = target.name

    def _contains(self, outer: Type, t: Type, seen: set[int]) -> bool:
        """Whether structure ``t`` holds ``outer`` (directly, in arrays or in nested structures)."""
        for _, ft, _ in t.fields.values():
            while ft.kind == "array" and ft.elem is not None:
                ft = ft.elem
            if ft is outer:
                return True
            if ft.kind == "struct" and id(ft) not in seen:
                seen.add(id(ft))
                if self._contains(outer, ft, seen):
                    return True
        return False

    def resolve(self, ref: TypeRef, scope: dict[str, Var]) -> Type:
        if ref.name == "ARRAY":
            assert ref.of is not None
            dims = []
            for lo_e, hi_e in ref.dims:
                lo, hi = self.const_int(lo_e, scope), self.const_int(hi_e, scope)
                if hi < lo:
                    self.error(lo_e, f"array range {lo}..{hi} is empty")
                    hi = lo
                if hi - lo >= 1_000_000:
                    self.error(lo_e, f"array range {lo}..{hi} is larger than 1,000,000 elements")
                    hi = lo
                dims.append((lo, hi))
            elem = self.resolve(ref.of, scope)
            cells = math.prod(hi - lo + 1 for lo, hi in dims) * max(1, math.prod(
                hi - lo + 1 for lo, hi in elem.dims) if elem.kind == "array" else 1)
            if cells > MAX_CELLS:
                self.error(ref, f"the array has {cells:,} elements, more than {MAX_CELLS:,}")
                dims = [(lo, lo) for lo, _ in dims]
            return Type("array", "ARRAY", elem=elem, dims=tuple(dims))
        if ref.name == "STRING":
            length = self.const_int(ref.length, scope) if ref.length is not None else 80
            if not 1 <= length <= 65535:
                self.error(ref, f"string length {length} is outside 1..65535")
                length = 80
            return Type("string", "STRING", length=length)
        t = self.types.get(ref.name)
        if t is None:
            if ref.name in ("DATE", "TIME_OF_DAY", "TOD", "DATE_AND_TIME", "DT", "CHAR", "WCHAR"):
                return self.error(ref, f"type {ref.name} is not supported")
            return self.error(ref, f"unknown type '{ref.name}'")
        if t.kind == "alias":
            return self.error(ref, f"type '{t.name}' is defined in terms of itself")
        return t

    def const_int(self, node: Node | None, scope: dict[str, Var]) -> int:
        """The value of a constant integer expression (array bounds, string lengths, CASE labels)."""
        if isinstance(node, Literal) and node.kind == "int":
            return int(node.value)
        if isinstance(node, Unary) and node.op in ("-", "+"):
            v = self.const_int(node.operand, scope)
            return -v if node.op == "-" else v
        if isinstance(node, Binary) and node.op in ("+", "-", "*", "/", "MOD"):
            a, b = self.const_int(node.left, scope), self.const_int(node.right, scope)
            if node.op in ("/", "MOD") and b == 0:
                raise STError(node.line, node.col, "division by zero in a constant expression")
            return {"+": a + b, "-": a - b, "*": a * b, "/": int(a / b) if b else 0,
                    "MOD": a - b * int(a / b) if b else 0}[node.op]
        if isinstance(node, Name):
            var = scope.get(node.key)
            if var and var.constant and var.decl is not None and var.decl.init is not None:
                return self.const_int(var.decl.init, scope)
            values = self.enum_values.get(node.key)
            if values and len(values) == 1:
                return values[0].values[node.key][1]
        if isinstance(node, Member) and isinstance(node.base, Name):
            t = self.types.get(node.base.key)
            if t is not None and t.kind == "enum" and node.name.upper() in t.values:
                return t.values[node.name.upper()][1]
        line, col = _pos(node)
        raise STError(line, col, "expected a constant integer expression")

    def _declare(self, pou: Pou) -> dict[str, Var]:
        scope: dict[str, Var] = {}
        key = pou.name.upper()
        if pou.kind == "FUNCTION":
            rt = self.resolve(pou.return_type, scope) if pou.return_type else VOID
            if rt.kind == "fb":
                rt = self.error(pou.return_type, "a function cannot return a function block")
            scope[key] = Var(pou.name, rt, "RETURN", False, None)
        fields: dict[str, tuple[str, Type, Any]] = {}
        for decl in pou.decls:
            dkey = decl.name.upper()
            if dkey in scope:
                what = "the function's own name" if scope[dkey].section == "RETURN" else f"'{decl.name}'"
                self.error(decl, f"{what} is declared twice" if what != "the function's own name"
                           else f"'{decl.name}' is the function's own name (its result)")
                continue
            t = self.resolve(decl.type, scope)
            if t.kind == "fb" and t.pou is pou:
                t = self.error(decl, f"'{pou.name}' cannot contain an instance of itself")
            if decl.constant and decl.init is None:
                self.error(decl, f"constant '{decl.name}' needs a value")
            if decl.section == "VAR_IN_OUT" and decl.init is not None:
                self.error(decl, f"VAR_IN_OUT '{decl.name}' cannot have an initial value")
            scope[dkey] = Var(decl.name, t, decl.section, decl.constant, decl)
            fields[dkey] = (decl.name, t, decl.section)
            if decl.init is not None:
                self.scope = scope
                self.check_init(decl.init, t)
        if pou.kind == "FUNCTION_BLOCK":
            self.types[key].fields.update(fields)
        return scope

    def check_init(self, init: Node, t: Type) -> None:
        if isinstance(init, ArrayInit):
            if t.kind != "array":
                self.error(init, f"an array initializer cannot initialise {t.display()}")
                return
            size = 1
            for lo, hi in t.dims:
                size *= hi - lo + 1
            count = sum(n for n, _ in init.items)
            if count > size:
                self.error(init, f"{count} initial values for an array of {size} elements")
            for _, item in init.items:
                if not (isinstance(item, Literal) and item.kind == "default"):
                    self.check_init(item, t.elem or ERROR)
            return
        if isinstance(init, StructInit):
            if t.kind != "struct":
                self.error(init, f"a structure initializer cannot initialise {t.display()}")
                return
            for fname, value in init.fields:
                field = t.fields.get(fname.upper())
                if field is None:
                    self.error(init, f"'{t.name}' has no field '{fname}'")
                else:
                    self.check_init(value, field[1])
            return
        if t.kind == "fb":
            self.error(init, "a function block instance cannot have an initial value")
            return
        self.check_store(init, t, self.expr(init))

    # -- bodies
    def _check_body(self, key: str, pou: Pou) -> None:
        self.scope, self.pou, self.loops = self.scopes[key], pou, 0
        self.calls[key] = set()
        self.assigned = set()
        for t in self.scope.values():
            if t.type.kind == "fb" and t.type.pou is not None:
                self.calls[key].add(t.type.name.upper())
        self.block(pou.body)
        if pou.kind == "FUNCTION" and self.scope[key].type is not VOID and key not in self.assigned:
            self.warn(pou, f"function '{pou.name}' never assigns its result: it always returns the default value")

    def _check_recursion(self) -> None:
        for start in self.calls:
            seen, stack = set(), [start]
            while stack:
                for callee in self.calls.get(stack.pop(), ()):
                    if callee == start:
                        pou = self.pous[start]
                        self.error(pou, f"'{pou.name}' calls itself (recursion is not allowed in IEC 61131-3)")
                        stack = []
                        break
                    if callee not in seen:
                        seen.add(callee)
                        stack.append(callee)

    def block(self, stmts: list[Node]) -> None:
        for s in stmts:
            self.statement(s)

    def statement(self, s: Node) -> None:
        if isinstance(s, Assign):
            target_t = self.lvalue(s.target, "assign to")
            self.check_store(s.value, target_t, self.expr(s.value))
        elif isinstance(s, CallStmt):
            self.call(s.call, statement=True)
        elif isinstance(s, If):
            for cond, body in s.branches:
                self.condition(cond, "IF")
                self.block(body)
            self.block(s.orelse)
        elif isinstance(s, Case):
            self.case(s)
        elif isinstance(s, For):
            var_t = self.lvalue(s.var, "use as the FOR variable")
            if not var_t.integral:
                self.error(s.var, f"the FOR variable must be an integer, not {var_t.display()}")
            for part in (s.start, s.stop, s.step):
                if part is not None:
                    t = self.expr(part)
                    if not t.integral:
                        self.error(part, f"FOR bounds must be integers, not {t.display()}")
            if s.step is not None and isinstance(s.step, Literal) and s.step.value == 0:
                self.error(s.step, "a FOR step of 0 never ends")
            self.loop(s.body)
        elif isinstance(s, While):
            self.condition(s.cond, "WHILE")
            self.loop(s.body)
        elif isinstance(s, Repeat):
            self.loop(s.body)
            self.condition(s.cond, "UNTIL")
        elif isinstance(s, Jump):
            if s.kind in ("EXIT", "CONTINUE") and self.loops == 0:
                self.error(s, f"{s.kind} outside a loop")

    def loop(self, body: list[Node]) -> None:
        self.loops += 1
        self.block(body)
        self.loops -= 1

    def condition(self, cond: Node, what: str) -> None:
        t = self.expr(cond)
        if t.kind not in ("bool", "error"):
            self.error(cond, f"the {what} condition must be BOOL, not {t.display()}")

    def case(self, s: Case) -> None:
        sel = self.expr(s.selector)
        if sel.kind not in ("int", "bits", "enum", "error"):
            self.error(s.selector, f"the CASE selector must be an integer or enumeration, not {sel.display()}")
        seen: list[tuple[int, int, Node]] = []
        for arm in s.arms:
            for lo, hi in arm.labels:
                for part in (lo, hi):
                    if part is None:
                        continue
                    t = self.expr(part)
                    if sel.kind != "error" and t.kind != "error" and not (
                            (sel.integral and t.integral) or t is sel):
                        self.error(part, f"CASE label of type {t.display()} for a selector of type {sel.display()}")
                try:
                    a = self.const_int(lo, self.scope)
                    b = self.const_int(hi, self.scope) if hi is not None else a
                except STError as exc:
                    self.error(exc, "CASE labels must be constants")
                    continue
                if b < a:
                    self.error(lo, f"empty CASE range {a}..{b}")
                seen.append((a, b, lo))
            self.block(arm.body)
        self.block(s.orelse)
        seen.sort(key=lambda r: (r[0], r[2].line, r[2].col))  # sorted, overlaps are neighbours: n log n
        reach = None
        for a, b, node in seen:
            if reach is not None and a <= reach:
                self.error(node, "CASE label repeats an earlier one")
            reach = b if reach is None else max(reach, b)

    # -- stores
    def lvalue(self, node: Node, verb: str) -> Type:
        """The type of an assignable place; reports writes to constants, outputs of blocks, non-variables."""
        if isinstance(node, Name):
            var = self.scope.get(node.key)
            if var is None:
                self.expr(node)
                return ERROR
            node.typ = var.type  # type: ignore[attr-defined]
            if var.constant:
                return self.error(node, f"cannot {verb} constant '{var.name}'")
            if var.section == "RETURN":
                self.assigned.add(node.key)
            return var.type
        if isinstance(node, Member):
            base_t = self.expr(node.base)
            t = self.expr(node)
            if base_t.kind == "fb":
                field = base_t.fields.get(node.name.upper())
                if field is not None and field[2] == "VAR_OUTPUT":
                    return self.error(node, f"cannot {verb} output '{field[0]}' of a function block instance")
            if isinstance(node.base, Name) and node.base.key not in self.scope:
                return self.error(node, f"cannot {verb} an enumeration value") if t.kind != "error" else ERROR
            self._writable_root(node.base, verb)
            return t
        if isinstance(node, Index):
            t = self.expr(node)
            self._writable_root(node.base, verb)
            return t
        return self.error(node, f"cannot {verb} this expression")

    def _writable_root(self, node: Node, verb: str) -> None:
        while isinstance(node, (Index, Member)):
            node = node.base
        if isinstance(node, Name):
            var = self.scope.get(node.key)
            if var is not None and var.constant:
                self.error(node, f"cannot {verb} part of constant '{var.name}'")

    def check_store(self, value: Node, target: Type, source: Type) -> None:
        why = assignable(target, source)
        if why:
            self.error(value, why)
            return
        if target.kind in ("int", "bits") and source.kind in ("int", "bits"):
            if isinstance(value, Literal) and value.kind == "int":  # the parser folds -5 into a literal
                lo, hi = int_range(target)
                if not lo <= value.value <= hi:
                    self.error(value, f"constant {value.value} does not fit {target.display()} ({lo}..{hi})")
            elif not source.literal and source.bits > target.bits:
                self.warn(value, f"implicit conversion from {source.display()} to {target.display()} may lose data")

    # -- expressions
    def expr(self, node: Node) -> Type:
        t = self._expr(node)
        node.typ = t  # type: ignore[attr-defined]
        return t

    def _expr(self, node: Node) -> Type:
        if isinstance(node, Literal):
            return self.literal(node)
        if isinstance(node, Name):
            var = self.scope.get(node.key)
            if var is not None:
                return var.type
            values = self.enum_values.get(node.key)
            if values:
                if len(values) > 1:
                    names = " or ".join(f"{v.name}#{node.name}" for v in values)
                    return self.error(node, f"'{node.name}' is ambiguous: write {names}")
                node.const = values[0].values[node.key][1]  # type: ignore[attr-defined]
                return values[0]
            if node.key in self.pous or node.key in stdlib.FUNCTIONS:
                return self.error(node, f"'{node.name}' is a function: call it with ( )")
            if node.key in self.types:
                return self.error(node, f"'{node.name}' is a type, not a variable")
            return self.error(node, f"'{node.name}' is not declared")
        if isinstance(node, Member):
            if isinstance(node.base, Name) and node.base.key not in self.scope and node.base.key in self.types:
                t = self.types[node.base.key]
                if t.kind == "enum":
                    v = t.values.get(node.name.upper())
                    if v is None:
                        return self.error(node, f"enumeration '{t.name}' has no value '{node.name}'")
                    node.const = v[1]  # type: ignore[attr-defined]
                    return t
            base = self.expr(node.base)
            if base.kind == "error":
                return ERROR
            if base.kind not in ("struct", "fb"):
                return self.error(node, f"{base.display()} has no member '{node.name}'")
            field = base.fields.get(node.name.upper())
            if field is None:
                return self.error(node, f"'{base.name}' has no member '{node.name}'")
            if base.kind == "fb" and field[2] in ("VAR", "VAR_TEMP"):
                return self.error(node, f"'{field[0]}' is internal to function block '{base.name}'")
            return field[1]
        if isinstance(node, Index):
            base = self.expr(node.base)
            for ix in node.indices:
                it = self.expr(ix)
                if not it.integral:
                    self.error(ix, f"an array index must be an integer, not {it.display()}")
            if base.kind == "error":
                return ERROR
            if base.kind != "array":
                return self.error(node, f"{base.display()} is not an array")
            if len(node.indices) != len(base.dims):
                return self.error(node, f"{len(node.indices)} indices for an array of {len(base.dims)} dimension(s)")
            for ix, (lo, hi) in zip(node.indices, base.dims):
                if isinstance(ix, Literal) and ix.kind == "int" and not lo <= ix.value <= hi:
                    self.error(ix, f"index {ix.value} is outside the array's range {lo}..{hi}")
            return base.elem or ERROR
        if isinstance(node, Call):
            return self.call(node, statement=False)
        if isinstance(node, Unary):
            t = self.expr(node.operand)
            if node.op == "NOT":
                if t.kind not in ("bool", "int", "bits", "error"):
                    return self.error(node, f"NOT needs a BOOL or bit string, not {t.display()}")
                return t
            if not (t.numeric or t.kind == "time"):
                return self.error(node, f"unary '{node.op}' needs a number, not {t.display()}")
            return t
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, (ArrayInit, StructInit)):
            return self.error(node, "an initializer list is only allowed in a declaration")
        return self.error(node, "unexpected expression")

    def literal(self, node: Literal) -> Type:
        if node.kind == "int":
            if node.type_name:
                t = self.types.get(node.type_name)
                if t is None or t.kind not in ("int", "bits", "real", "bool", "time"):
                    return self.error(node, f"'{node.type_name}#' is not a numeric type")
                if t.kind in ("int", "bits"):
                    lo, hi = int_range(t)
                    if not lo <= node.value <= hi:
                        self.error(node, f"constant {node.value} does not fit {t.name} ({lo}..{hi})")
                if t.kind == "bool" and node.value not in (0, 1):
                    self.error(node, f"BOOL#{node.value}: only 0 and 1")
                return t
            return INT_LITERAL
        if node.kind == "real":
            if node.type_name:
                t = self.types.get(node.type_name)
                if t is None or t.kind != "real":
                    return self.error(node, f"'{node.type_name}#' cannot hold a REAL value")
                return t
            return REAL_LITERAL
        if node.kind == "bool":
            return BOOL
        if node.kind == "time":
            return TIME
        if node.kind == "string":
            return ELEMENTARY["WSTRING"] if node.type_name == "WSTRING" else STRING
        return ERROR

    def binary(self, node: Binary) -> Type:
        a, b = self.expr(node.left), self.expr(node.right)
        op = node.op
        if a.kind == "error" or b.kind == "error":
            return ERROR
        if op in ("AND", "OR", "XOR"):
            if a.kind == b.kind == "bool":
                return BOOL
            if a.integral and b.integral:
                return wider(a, b)
            return self.error(node, f"{op} needs two BOOLs or two bit strings, not {a.display()} and {b.display()}")
        if op in ("=", "<>", "<", ">", "<=", ">="):
            if (a.numeric and b.numeric) or (a.kind == b.kind and a.kind in ("string", "time", "bool")):
                if a.kind == "bool" and op not in ("=", "<>"):
                    return self.error(node, f"'{op}' cannot compare BOOLs")
                return BOOL
            if a.kind == "enum" and b is a:
                return BOOL
            return self.error(node, f"cannot compare {a.display()} with {b.display()}")
        if a.kind == "time" or b.kind == "time":
            if op in ("+", "-") and a.kind == b.kind == "time":
                return TIME
            if op in ("*", "/") and a.kind == "time" and b.numeric:
                return TIME
            if op == "*" and b.kind == "time" and a.numeric:
                return TIME
            return self.error(node, f"'{op}' is not defined for {a.display()} and {b.display()}")
        if not (a.numeric and b.numeric):
            hint = " (use CONCAT for strings)" if op == "+" and a.kind == b.kind == "string" else ""
            return self.error(node, f"'{op}' needs numbers, not {a.display()} and {b.display()}{hint}")
        if op == "MOD" and not (a.integral and b.integral):
            return self.error(node, f"MOD needs integers, not {a.display()} and {b.display()}")
        if op == "/" and isinstance(node.right, Literal) and node.right.value == 0:
            self.error(node.right, "division by zero")
        if op == "**":
            if a.integral and b.integral:
                return wider(a, b)
            return LREAL if LREAL in (a, b) else REAL
        return wider(a, b)

    # -- calls
    def call(self, node: Call, statement: bool) -> Type:
        key = node.name.upper()
        if node.target is not None or (key in self.scope and self.scope[key].type.kind == "fb"):
            fb_t = self.expr(node.target) if node.target is not None else self.scope[key].type
            if fb_t.kind == "error":
                return ERROR
            if fb_t.kind != "fb":
                return self.error(node, f"'{node.name}' is {fb_t.display()}, not a function block instance")
            node.callee = ("fb", fb_t)  # type: ignore[attr-defined]
            self._bind_block(node, fb_t)
            if not statement:
                return self.error(node, "a function block call has no value: call it as a statement, then read its outputs")
            return VOID
        if key in self.pous:
            pou = self.pous[key]
            if pou.kind != "FUNCTION":
                what = "a function block type: declare an instance and call that" if pou.kind == "FUNCTION_BLOCK" \
                    else "a PROGRAM and cannot be called"
                return self.error(node, f"'{pou.name}' is {what}")
            if self.pou is not None:
                self.calls.setdefault(self.pou.name.upper(), set()).add(key)
            node.callee = ("user", pou)  # type: ignore[attr-defined]
            self._bind_user(node, self.scopes[key], pou.name)
            rt = self.scopes[key][key].type
            if rt is VOID and not statement:
                return self.error(node, f"function '{pou.name}' returns no value")
            return rt
        if key in stdlib.FUNCTIONS:
            return self._call_std(node, stdlib.FUNCTIONS[key])
        conv = stdlib.conversion(key)
        if conv is not None:
            return self._call_conversion(node, *conv)
        if key in stdlib.BLOCKS or key in self.types:
            return self.error(node, f"'{node.name}' is a type: declare an instance and call that")
        if key in self.scope:
            return self.error(node, f"'{node.name}' is a variable of type {self.scope[key].type.display()}, not a function")
        return self.error(node, f"unknown function '{node.name}'")

    def _bind_user(self, node: Call, scope: dict[str, Var], owner: str, block: bool = False) -> None:
        inputs = [v for v in scope.values() if v.section in ("VAR_INPUT", "VAR_IN_OUT")]
        formal = [a for a in node.args if a.name is not None]
        if formal and len(formal) != len(node.args):
            self.error(node, "arguments must be all positional or all named (IN := x)")
            return
        binding: dict[str, Any] = {"inputs": [], "outputs": []}
        node.binding = binding  # type: ignore[attr-defined]
        if not formal:
            if len(node.args) != len(inputs) and not (block and len(node.args) < len(inputs)):
                self.error(node, f"'{owner}' takes {len(inputs)} argument(s), {len(node.args)} given")
            for arg, param in zip(node.args, inputs):
                self._bind_input(arg, param, binding)
            for arg in node.args[len(inputs):]:
                self.expr(arg.value)
            return
        seen: set[str] = set()
        for arg in node.args:
            assert arg.name is not None
            akey = arg.name.upper()
            var = scope.get(akey)
            if akey in seen:
                self.error(arg.value, f"parameter '{arg.name}' is given twice")
            seen.add(akey)
            if var is None or var.section not in ("VAR_INPUT", "VAR_IN_OUT", "VAR_OUTPUT"):
                self.error(arg.value, f"'{owner}' has no parameter '{arg.name}'")
                self.expr(arg.value)
                continue
            if arg.output != (var.section == "VAR_OUTPUT"):
                self.error(arg.value, f"use '=>' for output '{var.name}'" if var.section == "VAR_OUTPUT"
                           else f"use ':=' for input '{var.name}'")
                continue
            if arg.output:
                target_t = self.lvalue(arg.value, "write an output to")
                why = assignable(target_t, var.type)
                if why:
                    self.error(arg.value, why)
                binding["outputs"].append((var.name.upper(), arg.value))
            else:
                self._bind_input(arg, var, binding)
        for var in inputs:
            if var.section == "VAR_IN_OUT" and var.name.upper() not in seen:
                self.error(node, f"VAR_IN_OUT '{var.name}' of '{owner}' must be given")

    def _bind_input(self, arg: Arg, var: Var, binding: dict[str, Any]) -> None:
        if var.section == "VAR_IN_OUT":
            t = self.lvalue(arg.value, f"pass as VAR_IN_OUT '{var.name}'")
            if t.kind != "error" and (assignable(var.type, t) is not None or t.kind != var.type.kind):
                self.error(arg.value, f"VAR_IN_OUT '{var.name}' needs a variable of type {var.type.display()}, not {t.display()}")
        else:
            self.check_store(arg.value, var.type, self.expr(arg.value))
        binding["inputs"].append((var.name.upper(), arg.value, var.section == "VAR_IN_OUT", var.type))

    def _bind_block(self, node: Call, fb_t: Type) -> None:
        scope = {k: Var(name, t, section, False, None) for k, (name, t, section) in fb_t.fields.items()}
        self._bind_user(node, scope, fb_t.name, block=True)

    def _call_std(self, node: Call, fn: stdlib.StdFunction) -> Type:
        args = node.args
        if any(a.name is not None for a in args):
            if not all(a.name is not None for a in args):
                return self.error(node, "arguments must be all positional or all named")
            if fn.variadic:
                return self.error(node, f"{fn.name} takes positional arguments")
            names = [p for p, _ in fn.params]
            by_name = {a.name.upper(): a for a in args if a.name}
            unknown = [a.name for a in args if a.name and a.name.upper() not in names]
            if unknown:
                return self.error(node, f"{fn.name} has no parameter '{unknown[0]}'")
            missing = [n for n in names if n not in by_name]
            if missing:
                return self.error(node, f"{fn.name} needs parameter '{missing[0]}'")
            ordered = [by_name[n].value for n in names]
        else:
            ordered = [a.value for a in args]
        n = len(fn.params)
        if len(ordered) < n or (len(ordered) > n and not fn.variadic):
            self.error(node, f"{fn.name} takes {n}{' or more' if fn.variadic else ''} argument(s), {len(ordered)} given")
        types = [self.expr(v) for v in ordered]
        for i, (value, t) in enumerate(zip(ordered, types)):
            pname, cls = fn.accepts(i)
            if not fn.fits(cls, t):
                self.error(value, f"{fn.name}: {pname} must be {fn.describe(cls)}, not {t.display()}")
                return ERROR
        if fn.name in ("MIN", "MAX", "LIMIT", "SEL", "MUX") and len(types) >= 2:
            rest = types[1:] if fn.name in ("SEL", "MUX") else types
            kinds = {"num" if t.numeric else t.kind for t in rest}
            if len(kinds) > 1:
                return self.error(node, f"{fn.name}: arguments of different types ({', '.join(t.display() for t in rest)})")
        if len(ordered) < n:
            return ERROR
        node.callee = ("std", fn)  # type: ignore[attr-defined]
        node.ordered = ordered  # type: ignore[attr-defined]
        return fn.result(types)

    def _call_conversion(self, node: Call, source: Type | None, target: Type) -> Type:
        if len(node.args) != 1 or node.args[0].output:
            return self.error(node, f"{node.name} takes exactly one argument")
        value = node.args[0].value
        t = self.expr(value)
        if t.kind == "error":
            return ERROR
        if t.kind not in ("bool", "int", "bits", "real", "string", "time"):
            return self.error(value, f"{node.name} cannot convert {t.display()}")
        if source is not None and not (t.kind == source.kind or (t.integral and source.integral)
                                       or (t.literal and source.numeric) or (t.kind == "real" and source.kind == "real")):
            self.error(value, f"{node.name} expects {source.display()}, not {t.display()}")
        node.callee = ("conv", (source or t, target))  # type: ignore[attr-defined]
        return target


__all__ = ["Checked", "Diagnostic", "Var", "check"]
