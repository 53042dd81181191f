"""Structured Text types: the elementary ones, arrays, strings, structures, enumerations, function blocks.

Integers wrap to their width when stored (two's complement), as PLC runtimes do; REAL is stored
rounded to single precision, LREAL as a Python float; TIME is a whole number of milliseconds.
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Type:
    kind: str  # bool, int, bits, real, string, time, enum, array, struct, fb, void, error
    name: str
    bits: int = 0
    signed: bool = True
    literal: bool = False  # an untyped numeric literal: takes the type its context needs
    elem: Type | None = None  # arrays
    dims: tuple[tuple[int, int], ...] = ()
    length: int = 80  # strings
    fields: dict[str, tuple[str, Type, Any]] = field(default_factory=dict)  # KEY → (name, type, init node)
    values: dict[str, tuple[str, int]] = field(default_factory=dict)  # enums: KEY → (name, value)
    pou: Any = None  # function blocks: the Pou node (None for standard blocks)
    initial: Any = None  # structures: the value with every field's initializer applied (set at load)

    def __repr__(self) -> str:
        return self.display()

    def display(self) -> str:
        if self.kind == "array":
            ranges = ", ".join(f"{lo}..{hi}" for lo, hi in self.dims)
            return f"ARRAY[{ranges}] OF {self.elem.display() if self.elem else '?'}"
        if self.kind == "string" and self.length != 80:
            return f"{self.name}[{self.length}]"
        if self.literal:
            return "an integer literal" if self.kind == "int" else "a REAL literal"
        return self.name

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "bits", "real", "error")

    @property
    def integral(self) -> bool:
        return self.kind in ("int", "bits", "error")


def _int(name: str, bits: int, signed: bool, kind: str = "int") -> Type:
    return Type(kind, name, bits, signed)


ELEMENTARY: dict[str, Type] = {t.name: t for t in [
    Type("bool", "BOOL", 1, False),
    _int("SINT", 8, True), _int("INT", 16, True), _int("DINT", 32, True), _int("LINT", 64, True),
    _int("USINT", 8, False), _int("UINT", 16, False), _int("UDINT", 32, False), _int("ULINT", 64, False),
    _int("BYTE", 8, False, "bits"), _int("WORD", 16, False, "bits"), _int("DWORD", 32, False, "bits"),
    _int("LWORD", 64, False, "bits"),
    Type("real", "REAL", 32), Type("real", "LREAL", 64),
    Type("time", "TIME", 64), Type("time", "LTIME", 64),
    Type("string", "STRING"), Type("string", "WSTRING"),
]}
BOOL, INT, DINT, LINT, REAL, LREAL, TIME, STRING = (ELEMENTARY[n] for n in
                                                    ("BOOL", "INT", "DINT", "LINT", "REAL", "LREAL", "TIME", "STRING"))
INT_LITERAL = Type("int", "DINT", 64, True, literal=True)
REAL_LITERAL = Type("real", "LREAL", 64, literal=True)
VOID = Type("void", "VOID")
ERROR = Type("error", "?")  # the type of an expression already reported: compatible with anything

INT_RANK = ["SINT", "USINT", "BYTE", "INT", "UINT", "WORD", "DINT", "UDINT", "DWORD", "LINT", "ULINT", "LWORD"]


def int_range(t: Type) -> tuple[int, int]:
    if t.signed:
        return -(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1
    return 0, (1 << t.bits) - 1


def wrap(value: int, t: Type) -> int:
    """An integer stored into ``t``: two's complement wrap-around at its width."""
    mask = (1 << t.bits) - 1
    value &= mask
    if t.signed and value >> (t.bits - 1):
        value -= 1 << t.bits
    return value


def to_real32(value: float) -> float:
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


def wider(a: Type, b: Type) -> Type:
    """The type of an arithmetic result on ``a`` and ``b`` (both numeric)."""
    if a.kind == "error" or b.kind == "error":
        return ERROR
    if a.kind == "real" or b.kind == "real":
        if "LREAL" in (a.name, b.name) and not (a.literal and b.kind == "real") and not (b.literal and a.kind == "real"):
            return LREAL
        return REAL if (a.name == "REAL" or b.name == "REAL") else LREAL
    if a.literal:
        return b
    if b.literal:
        return a
    return a if INT_RANK.index(a.name) >= INT_RANK.index(b.name) else b


def assignable(target: Type, source: Type) -> str | None:
    """Why ``source`` cannot be stored into ``target`` (None: it can)."""
    if target.kind == "error" or source.kind == "error":
        return None
    if source.kind == "void":
        return "the call returns no value"
    if target.kind in ("int", "bits"):
        if source.kind in ("int", "bits"):
            return None
        if source.kind == "real":
            return f"cannot store {source.display()} in {target.display()} without a conversion (e.g. {source.name}_TO_{target.name})"
    elif target.kind == "real":
        if source.kind in ("int", "bits", "real"):
            return None
    elif target.kind == source.kind and target.kind in ("bool", "string", "time"):
        return None
    elif target.kind == "enum" and source is target:
        return None
    elif target.kind == "array" and source.kind == "array":
        if target.dims == source.dims and target.elem and source.elem and (
                target.elem is source.elem or target.elem.name == source.elem.name):
            return None
    elif target.kind in ("struct", "fb") and source is target:
        return None
    return f"cannot store {source.display()} in {target.display()}"


def default_value(t: Type, block: Callable[[Type], Any] | None = None) -> Any:
    """The value a variable of type ``t`` starts with when it has no initializer. ``block`` makes a
    function block instance (the interpreter's), for blocks held in arrays and structures."""
    if t.kind in ("int", "bits", "time", "enum"):
        if t.kind == "enum" and t.values:
            return next(iter(t.values.values()))[1]
        return 0
    if t.kind == "bool":
        return False
    if t.kind == "real":
        return 0.0
    if t.kind == "string":
        return ""
    if t.kind == "array" and t.elem is not None:
        return _array(t.elem, t.dims, block)
    if t.kind == "struct":
        if t.initial is not None:
            return copy.deepcopy(t.initial)
        return {k: default_value(ft, block) for k, (_, ft, _) in t.fields.items()}
    if t.kind == "fb" and block is not None:
        return block(t)
    return None


def _array(elem: Type, dims: tuple[tuple[int, int], ...], block: Callable[[Type], Any] | None) -> list[Any]:
    lo, hi = dims[0]
    if len(dims) == 1:
        return [default_value(elem, block) for _ in range(hi - lo + 1)]
    return [_array(elem, dims[1:], block) for _ in range(hi - lo + 1)]


def coerce(value: Any, t: Type) -> Any:
    """A value as stored in a variable of type ``t`` (wrapped, rounded, truncated to length)."""
    if t.kind in ("int", "bits"):
        return wrap(int(value), t)
    if t.kind == "real":
        return to_real32(float(value)) if t.name == "REAL" else float(value)
    if t.kind == "bool":
        return bool(value)
    if t.kind == "string":
        return str(value)[:t.length]
    if t.kind == "time":
        return wrap(int(value), LINT)
    return value
