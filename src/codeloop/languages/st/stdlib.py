"""The IEC 61131-3 standard functions and function blocks this interpreter knows, with their signatures.

Conversions ``A_TO_B`` exist between all elementary types (and ``TO_B``). A REAL becomes an integer
by rounding half away from zero (``TRUNC`` truncates); a STRING that is not a number converts to 0.
Timers (TON, TOF, TP) read the runtime's clock, which a test advances between scan cycles.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from codeloop.languages.st.typesys import (DINT, ELEMENTARY, INT, LREAL, REAL, STRING, Type, coerce,
                                           wider)


class STRuntimeError(Exception):
    """A run-time fault of the ST program (division by zero, index out of range, ...)."""


# Parameter classes a standard function accepts.
_ACCEPTS: dict[str, Callable[[Type], bool]] = {
    "num": lambda t: t.numeric,
    "int": lambda t: t.integral,
    "bool": lambda t: t.kind in ("bool", "error"),
    "bit": lambda t: t.kind in ("bool", "int", "bits", "error"),
    "string": lambda t: t.kind in ("string", "error"),
    "elem": lambda t: t.kind in ("bool", "int", "bits", "real", "string", "time", "enum", "error"),
    "any": lambda t: True,
}
_CLASS_NAMES = {"num": "a number", "int": "an integer", "bool": "a BOOL", "bit": "a BOOL or bit string",
                "string": "a STRING", "elem": "an elementary value", "any": "a value"}


@dataclass(frozen=True)
class StdFunction:
    name: str
    params: tuple[tuple[str, str], ...]  # (name, class)
    variadic: bool  # the last parameter repeats (MIN, MAX, CONCAT, MUX)
    result: Callable[[list[Type]], Type]
    run: Callable[[list[Any], list[Type], Type], Any]

    def accepts(self, index: int) -> tuple[str, str]:
        if index < len(self.params):
            return self.params[index]
        last_name, cls = self.params[-1]
        return f"{last_name.rstrip('0123456789')}{index - len(self.params) + 2}", cls

    @staticmethod
    def describe(cls: str) -> str:
        return _CLASS_NAMES[cls]

    @staticmethod
    def fits(cls: str, t: Type) -> bool:
        return _ACCEPTS[cls](t)


def _common(types: list[Type]) -> Type:
    """The type that all of ``types`` widen to (numbers), or the first one (others)."""
    out = types[0]
    for t in types[1:]:
        if out.numeric and t.numeric:
            out = wider(out, t)
    return out


def _real_of(types: list[Type]) -> Type:
    return LREAL if types[0].name == "LREAL" and not types[0].literal else REAL


def _round_half_away(x: float) -> int:
    if math.isnan(x) or math.isinf(x):
        raise STRuntimeError(f"cannot convert {x} to an integer")
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def _math(fn: Callable[[float], float]) -> Callable[[list[Any], list[Type], Type], Any]:
    def run(args: list[Any], _types: list[Type], result: Type) -> Any:
        try:
            return coerce(fn(float(args[0])), result)
        except (ValueError, OverflowError) as exc:
            raise STRuntimeError(f"math error: {exc}") from None
    return run


def _expt(args: list[Any], _types: list[Type], result: Type) -> Any:
    try:
        value = math.pow(float(args[0]), float(args[1]))
    except (ValueError, OverflowError, ZeroDivisionError) as exc:
        raise STRuntimeError(f"EXPT: {exc}") from None
    return coerce(value, result)


def _limit(args: list[Any], _t: list[Type], result: Type) -> Any:
    mn, value, mx = args
    return coerce(min(max(value, mn), mx), result)


def _mux(args: list[Any], _t: list[Type], result: Type) -> Any:
    k = int(args[0])
    if not 0 <= k < len(args) - 1:
        raise STRuntimeError(f"MUX: selector {k} outside 0..{len(args) - 2}")
    return coerce(args[k + 1], result)


def _check_position(name: str, p: int, n: int, length: int) -> None:
    if p < 1 or p > length + 1 or n < 0:
        raise STRuntimeError(f"{name}: position {p} or length {n} out of range for a string of length {length}")


def _mid(args: list[Any], *_: Any) -> str:
    s, n, p = args[0], int(args[1]), int(args[2])
    _check_position("MID", p, n, len(s))
    return str(s[p - 1:p - 1 + n])


def _insert(args: list[Any], *_: Any) -> str:
    s, t, p = args[0], args[1], int(args[2])
    if not 0 <= p <= len(s):
        raise STRuntimeError(f"INSERT: position {p} out of range for a string of length {len(s)}")
    return str(s[:p] + t + s[p:])


def _delete(args: list[Any], *_: Any) -> str:
    s, n, p = args[0], int(args[1]), int(args[2])
    _check_position("DELETE", p, n, len(s))
    return str(s[:p - 1] + s[p - 1 + n:])


def _replace(args: list[Any], *_: Any) -> str:
    s, t, n, p = args[0], args[1], int(args[2]), int(args[3])
    _check_position("REPLACE", p, n, len(s))
    return str(s[:p - 1] + t + s[p - 1 + n:])


def _shift(kind: str) -> Callable[[list[Any], list[Type], Type], Any]:
    def run(args: list[Any], types: list[Type], result: Type) -> Any:
        value, n = int(args[0]), int(args[1])
        bits = types[0].bits if not types[0].literal else 32
        mask = (1 << bits) - 1
        value &= mask
        n = n % bits if kind in ("ROL", "ROR") else n
        if n < 0:
            raise STRuntimeError(f"{kind}: negative shift {n}")
        if kind == "SHL":
            out = (value << n) & mask
        elif kind == "SHR":
            out = value >> n
        elif kind == "ROL":
            out = ((value << n) | (value >> (bits - n))) & mask
        else:
            out = ((value >> n) | (value << (bits - n))) & mask
        return coerce(out, result)
    return run


def _same(types: list[Type]) -> Type:
    return types[0]


def _fixed(t: Type) -> Callable[[list[Type]], Type]:
    return lambda _types: t


def _f(name: str, params: str, result: Callable[[list[Type]], Type], run: Callable[..., Any],
       variadic: bool = False) -> StdFunction:
    pairs = tuple((p.split(":")[0], p.split(":")[1]) for p in params.split())
    return StdFunction(name, pairs, variadic, result, run)


FUNCTIONS: dict[str, StdFunction] = {f.name: f for f in [
    _f("ABS", "IN:num", _same, lambda a, t, r: coerce(abs(a[0]), r)),
    *[_f(n, "IN:num", _real_of, _math(fn)) for n, fn in [
        ("SQRT", math.sqrt), ("LN", math.log), ("LOG", math.log10), ("EXP", math.exp), ("SIN", math.sin),
        ("COS", math.cos), ("TAN", math.tan), ("ASIN", math.asin), ("ACOS", math.acos), ("ATAN", math.atan)]],
    _f("EXPT", "IN1:num IN2:num", _real_of, _expt),
    _f("MIN", "IN1:elem IN2:elem", _common, lambda a, t, r: coerce(min(a), r), variadic=True),
    _f("MAX", "IN1:elem IN2:elem", _common, lambda a, t, r: coerce(max(a), r), variadic=True),
    _f("LIMIT", "MN:elem IN:elem MX:elem", _common, _limit),
    _f("SEL", "G:bool IN0:any IN1:any", lambda t: _common(t[1:]), lambda a, t, r: coerce(a[2] if a[0] else a[1], r)),
    _f("MUX", "K:int IN0:any IN1:any", lambda t: _common(t[1:]), _mux, variadic=True),
    _f("MOVE", "IN:any", _same, lambda a, t, r: a[0]),
    _f("TRUNC", "IN:num", _fixed(DINT), lambda a, t, r: coerce(math.trunc(a[0]), r)),
    _f("LEN", "IN:string", _fixed(INT), lambda a, t, r: len(a[0])),
    _f("LEFT", "IN:string L:int", _fixed(STRING), lambda a, t, r: a[0][:max(0, int(a[1]))]),
    _f("RIGHT", "IN:string L:int", _fixed(STRING), lambda a, t, r: a[0][len(a[0]) - int(a[1]):] if int(a[1]) > 0 else ""),
    _f("MID", "IN:string L:int P:int", _fixed(STRING), _mid),
    _f("CONCAT", "IN1:string IN2:string", _fixed(STRING), lambda a, t, r: "".join(a), variadic=True),
    _f("INSERT", "IN1:string IN2:string P:int", _fixed(STRING), _insert),
    _f("DELETE", "IN:string L:int P:int", _fixed(STRING), _delete),
    _f("REPLACE", "IN1:string IN2:string L:int P:int", _fixed(STRING), _replace),
    _f("FIND", "IN1:string IN2:string", _fixed(INT), lambda a, t, r: a[0].find(a[1]) + 1 if a[1] else 0),
    *[_f(n, "IN:int N:int", _same, _shift(n)) for n in ("SHL", "SHR", "ROL", "ROR")],
]}


def convert(value: Any, source: Type, target: Type) -> Any:
    """``value`` of type ``source`` as ``target`` (the ``A_TO_B`` functions)."""
    if target.kind == "string":
        if source.kind == "bool":
            return "TRUE" if value else "FALSE"
        if source.kind == "real":
            return repr(float(value))
        if source.kind == "time":
            return f"T#{value}ms"
        return coerce(str(value), target)
    if source.kind == "string":
        text = str(value).strip()
        try:
            number: Any = float(text) if target.kind == "real" else int(text, 0) if text[:2].lower() in ("0x", "0b", "0o") else int(text)
        except ValueError:
            number = 0
        if target.kind == "bool":
            return text.upper() == "TRUE" or number != 0
        return coerce(number, target)
    if target.kind == "bool":
        return value != 0
    if target.kind in ("int", "bits", "time") and source.kind == "real":
        return coerce(_round_half_away(value), target)
    return coerce(int(value) if source.kind == "bool" else value, target)


def conversion(name: str) -> tuple[Type | None, Type] | None:
    """``INT_TO_REAL`` → (INT, REAL); ``TO_REAL`` → (None, REAL); else None."""
    source, sep, target = name.upper().rpartition("_TO_")
    if not sep:
        if name.upper().startswith("TO_") and name.upper()[3:] in ELEMENTARY:
            return None, ELEMENTARY[name.upper()[3:]]
        return None
    if target not in ELEMENTARY or source not in ELEMENTARY:
        return None
    return ELEMENTARY[source], ELEMENTARY[target]


# ---- standard function blocks --------------------------------------------------------------------

def _block(name: str, inputs: str, outputs: str) -> Type:
    fields: dict[str, tuple[str, Type, Any]] = {}
    for section, spec in (("VAR_INPUT", inputs), ("VAR_OUTPUT", outputs)):
        for item in spec.split():
            vname, tname = item.split(":")
            fields[vname] = (vname, ELEMENTARY[tname], section)
    return Type("fb", name, fields=fields)


BLOCKS: dict[str, Type] = {t.name: t for t in [
    _block("R_TRIG", "CLK:BOOL", "Q:BOOL"),
    _block("F_TRIG", "CLK:BOOL", "Q:BOOL"),
    _block("SR", "S1:BOOL R:BOOL", "Q1:BOOL"),
    _block("RS", "S:BOOL R1:BOOL", "Q1:BOOL"),
    _block("CTU", "CU:BOOL R:BOOL PV:INT", "Q:BOOL CV:INT"),
    _block("CTD", "CD:BOOL LD:BOOL PV:INT", "Q:BOOL CV:INT"),
    _block("CTUD", "CU:BOOL CD:BOOL R:BOOL LD:BOOL PV:INT", "QU:BOOL QD:BOOL CV:INT"),
    _block("TON", "IN:BOOL PT:TIME", "Q:BOOL ET:TIME"),
    _block("TOF", "IN:BOOL PT:TIME", "Q:BOOL ET:TIME"),
    _block("TP", "IN:BOOL PT:TIME", "Q:BOOL ET:TIME"),
]}


def step_block(name: str, v: dict[str, Any], state: dict[str, Any], now_ms: int) -> None:
    """One call of standard block ``name``: reads its inputs from ``v``, writes its outputs there."""
    if name in ("R_TRIG", "F_TRIG"):
        prev = state.get("M", False)
        v["Q"] = (v["CLK"] and not prev) if name == "R_TRIG" else (prev and not v["CLK"])
        state["M"] = v["CLK"]
    elif name == "SR":
        v["Q1"] = v["S1"] or (v["Q1"] and not v["R"])
    elif name == "RS":
        v["Q1"] = not v["R1"] and (v["S"] or v["Q1"])
    elif name in ("CTU", "CTD", "CTUD"):
        _counter(name, v, state)
    else:
        _timer(name, v, state, now_ms)


def _counter(name: str, v: dict[str, Any], state: dict[str, Any]) -> None:
    limit = 32767
    cu = v.get("CU", False) and not state.get("CU", False)
    cd = v.get("CD", False) and not state.get("CD", False)
    state["CU"], state["CD"] = v.get("CU", False), v.get("CD", False)
    if name == "CTU":
        v["CV"] = 0 if v["R"] else v["CV"] + 1 if cu and v["CV"] < limit else v["CV"]
        v["Q"] = v["CV"] >= v["PV"]
    elif name == "CTD":
        v["CV"] = v["PV"] if v["LD"] else v["CV"] - 1 if cd and v["CV"] > -limit - 1 else v["CV"]
        v["Q"] = v["CV"] <= 0
    else:
        if v["R"]:
            v["CV"] = 0
        elif v["LD"]:
            v["CV"] = v["PV"]
        elif cu and not cd and v["CV"] < limit:
            v["CV"] += 1
        elif cd and not cu and v["CV"] > -limit - 1:
            v["CV"] -= 1
        v["QU"], v["QD"] = v["CV"] >= v["PV"], v["CV"] <= 0


def _timer(name: str, v: dict[str, Any], state: dict[str, Any], now: int) -> None:
    inp, pt = v["IN"], v["PT"]
    prev = state.get("IN", False)
    state["IN"] = inp
    if name == "TON":
        if inp and not prev:
            state["start"] = now
        v["ET"] = min(now - state["start"], pt) if inp else 0
        v["Q"] = bool(inp and v["ET"] >= pt)
    elif name == "TOF":
        if not inp and prev:
            state["start"] = now
        if inp:
            v["Q"], v["ET"] = True, 0
        elif "start" in state:
            v["ET"] = min(now - state["start"], pt)
            v["Q"] = v["ET"] < pt
    else:  # TP: a pulse of length PT on a rising edge, not retriggered while it runs
        if inp and not prev and not state.get("running", False):
            state["running"], state["start"] = True, now
        if state.get("running", False):
            v["ET"] = min(now - state["start"], pt)
            if v["ET"] >= pt:
                state["running"] = False
        elif not inp:
            v["ET"] = 0
        v["Q"] = state.get("running", False)


__all__ = ["BLOCKS", "FUNCTIONS", "STRuntimeError", "StdFunction", "conversion", "convert", "step_block"]
