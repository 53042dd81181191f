"""Source of ``src/codeloop/data/st_plc.jsonl``: PLC programming tasks in IEC 61131-3 Structured Text.

Each task: an intent (what a PLC programmer would be asked), a reference ST program written for
codeloop, test inputs, and an independent Python reference that computes the expected outputs. So the
shipped outputs do not come from the ST interpreter: ``tests/test_st_tasks.py`` runs every ST reference
in the sandbox against them, which checks the interpreter against Python on every task.
Rebuild with ``.venv/bin/python scripts/build_st_tasks.py``.

Function tasks are called with their inputs; function-block tasks with a list of scan cycles (dicts of
inputs, ``"@ms"`` advancing the clock) and answer each cycle's outputs (see codeloop.languages.st.interp).
"""

from __future__ import annotations

import math
import struct
from typing import Any


def f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def wrap16(x: int) -> int:
    return (x + 32768) % 65536 - 32768


# ---- reference behaviour of the function blocks, cycle by cycle -----------------------------------

def ref_hysteresis(cycles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    on, out = False, []
    for c in cycles:
        if c["value"] > c["high"]:
            on = True
        elif c["value"] < c["low"]:
            on = False
        out.append({"on": on})
    return out


def ref_latch(cycles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    state, start, stop, out = False, False, False, []
    for c in cycles:
        start, stop = c.get("start", start), c.get("stop", stop)
        state = (start or state) and not stop
        out.append({"motor": state})
    return out


def ref_edges(cycles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    prev, count, pulse, out = False, 0, False, []
    for c in cycles:
        pulse = c.get("pulse", pulse)
        if c.get("reset", False):
            count = 0
        elif pulse and not prev:
            count += 1
        prev = pulse
        out.append({"count": count})
    return out


def ref_debounce(cycles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    now, raw, since, stable, out = 0, False, 0, False, []
    for c in cycles:
        now += c.get("@ms", 0)
        new = c.get("raw", raw)
        if new != raw:
            since = now
        raw = new
        if raw != stable and now - since >= 50:
            stable = raw
        out.append({"stable": stable})
    return out


def ref_traffic(cycles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Red 3 s, then green 2 s, then yellow 1 s, repeating while enabled; all off when disabled."""
    now, enable, phase, since, out = 0, False, 0, 0, []
    for c in cycles:
        now += c.get("@ms", 0)
        was = enable
        enable = c.get("enable", enable)
        if enable and not was:
            phase, since = 0, now
        if enable:
            while now - since >= (3000, 2000, 1000)[phase]:
                since += (3000, 2000, 1000)[phase]
                phase = (phase + 1) % 3
        out.append({"red": enable and phase == 0, "green": enable and phase == 1, "yellow": enable and phase == 2})
    return out


def ref_moving_average(cycles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    window: list[float] = []
    out = []
    for c in cycles:
        window = (window + [f32(c["x"])])[-4:]
        out.append({"avg": sum(window) / len(window)})
    return out


def ref_rate_limit(cycles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    value, out = 0.0, []
    for c in cycles:
        step = max(-c["max_step"], min(c["max_step"], c["target"] - value))
        value += step
        out.append({"out": value})
    return out


def ref_tank(cycles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pump fills from low mark to high mark; alarm when the level is above 95 or below 5."""
    pump, out = False, []
    for c in cycles:
        level = c["level"]
        if level <= 20:
            pump = True
        if level >= 80:
            pump = False
        out.append({"pump": pump, "alarm": level > 95 or level < 5})
    return out


def _bcd(n: int) -> int:
    return sum(int(d) << (4 * i) for i, d in enumerate(reversed(str(n))))


def _cycles(*rows: dict[str, Any]) -> list[dict[str, Any]]:
    return list(rows)


TASKS: list[dict[str, Any]] = [
    dict(id="max3", entry="Max3",
         intent="Write FUNCTION Max3 : INT with VAR_INPUT a, b, c : INT that returns the largest of the three.",
         st="""FUNCTION Max3 : INT
VAR_INPUT a, b, c : INT; END_VAR
Max3 := a;
IF b > Max3 THEN Max3 := b; END_IF;
IF c > Max3 THEN Max3 := c; END_IF;
END_FUNCTION""",
         ref=lambda a, b, c: max(a, b, c),
         inputs=[[1, 7, 3], [-5, -2, -9], [4, 4, 4], [32767, -32768, 0], [0, 0, 1]]),
    dict(id="scale_analog", entry="ScaleAnalog",
         intent="Write FUNCTION ScaleAnalog : REAL with VAR_INPUT raw : INT; lo, hi : REAL. It converts an analog input "
                "raw value (0..27648 is the full range) linearly to engineering units lo..hi, clamping raw to 0..27648 first.",
         st="""FUNCTION ScaleAnalog : REAL
VAR_INPUT raw : INT; lo, hi : REAL; END_VAR
VAR r : INT; END_VAR
r := LIMIT(0, raw, 27648);
ScaleAnalog := lo + (hi - lo) * INT_TO_REAL(r) / 27648.0;
END_FUNCTION""",
         ref=lambda raw, lo, hi: lo + (hi - lo) * min(max(raw, 0), 27648) / 27648.0,
         inputs=[[0, 0.0, 100.0], [27648, 0.0, 100.0], [13824, 0.0, 100.0], [-100, 4.0, 20.0], [30000, -50.0, 150.0],
                 [6912, -50.0, 150.0]]),
    dict(id="c_to_f", entry="CelsiusToFahrenheit",
         intent="Write FUNCTION CelsiusToFahrenheit : REAL with VAR_INPUT c : REAL that converts degrees Celsius to Fahrenheit.",
         st="""FUNCTION CelsiusToFahrenheit : REAL
VAR_INPUT c : REAL; END_VAR
CelsiusToFahrenheit := c * 9.0 / 5.0 + 32.0;
END_FUNCTION""",
         ref=lambda c: c * 9 / 5 + 32, inputs=[[0.0], [100.0], [-40.0], [36.6], [-273.15]]),
    dict(id="leap_year", entry="IsLeapYear",
         intent="Write FUNCTION IsLeapYear : BOOL with VAR_INPUT year : INT that tells whether the year is a leap year "
                "in the Gregorian calendar.",
         st="""FUNCTION IsLeapYear : BOOL
VAR_INPUT year : INT; END_VAR
IsLeapYear := (year MOD 4 = 0 AND year MOD 100 <> 0) OR year MOD 400 = 0;
END_FUNCTION""",
         ref=lambda y: (y % 4 == 0 and y % 100 != 0) or y % 400 == 0, inputs=[[2000], [1900], [2024], [2023], [2100], [1600]]),
    dict(id="factorial", entry="Factorial",
         intent="Write FUNCTION Factorial : DINT with VAR_INPUT n : INT returning n! for n from 0 to 12 (and 0 for a "
                "negative n).",
         st="""FUNCTION Factorial : DINT
VAR_INPUT n : INT; END_VAR
VAR i : INT; END_VAR
IF n < 0 THEN Factorial := 0; RETURN; END_IF;
Factorial := 1;
FOR i := 2 TO n DO Factorial := Factorial * i; END_FOR;
END_FUNCTION""",
         ref=lambda n: 0 if n < 0 else math.factorial(n), inputs=[[0], [1], [5], [10], [12], [-3]]),
    dict(id="gcd", entry="Gcd",
         intent="Write FUNCTION Gcd : DINT with VAR_INPUT a, b : DINT returning the greatest common divisor of |a| and |b| "
                "(Gcd(0, 0) = 0).",
         st="""FUNCTION Gcd : DINT
VAR_INPUT a, b : DINT; END_VAR
VAR x, y, t : DINT; END_VAR
x := ABS(a); y := ABS(b);
WHILE y <> 0 DO t := x MOD y; x := y; y := t; END_WHILE;
Gcd := x;
END_FUNCTION""",
         ref=math.gcd, inputs=[[12, 18], [17, 5], [0, 9], [0, 0], [-48, 36], [1000000, 250]]),
    dict(id="sum_array", entry="SumArray",
         intent="Write FUNCTION SumArray : DINT with VAR_INPUT xs : ARRAY[1..10] OF INT returning the sum of the elements.",
         st="""FUNCTION SumArray : DINT
VAR_INPUT xs : ARRAY[1..10] OF INT; END_VAR
VAR i : INT; END_VAR
SumArray := 0;
FOR i := 1 TO 10 DO SumArray := SumArray + xs[i]; END_FOR;
END_FUNCTION""",
         ref=lambda xs: sum(xs),
         inputs=[[[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], [[0] * 10], [[32767] * 10], [[-5, 5, -5, 5, -5, 5, -5, 5, -5, 6]]]),
    dict(id="average", entry="Average",
         intent="Write FUNCTION Average : REAL with VAR_INPUT xs : ARRAY[1..8] OF REAL returning the mean of the eight values.",
         st="""FUNCTION Average : REAL
VAR_INPUT xs : ARRAY[1..8] OF REAL; END_VAR
VAR i : INT; s : REAL; END_VAR
FOR i := 1 TO 8 DO s := s + xs[i]; END_FOR;
Average := s / 8.0;
END_FUNCTION""",
         ref=lambda xs: sum(xs) / 8,
         inputs=[[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]], [[0.5] * 8], [[-1.0, 1.0] * 4], [[100.25, 0, 0, 0, 0, 0, 0, 0.75]]]),
    dict(id="count_above", entry="CountAbove",
         intent="Write FUNCTION CountAbove : INT with VAR_INPUT xs : ARRAY[1..10] OF INT; threshold : INT returning how "
                "many elements are strictly greater than threshold.",
         st="""FUNCTION CountAbove : INT
VAR_INPUT xs : ARRAY[1..10] OF INT; threshold : INT; END_VAR
VAR i : INT; END_VAR
FOR i := 1 TO 10 DO
  IF xs[i] > threshold THEN CountAbove := CountAbove + 1; END_IF;
END_FOR;
END_FUNCTION""",
         ref=lambda xs, t: sum(x > t for x in xs),
         inputs=[[list(range(10)), 4], [[5] * 10, 5], [[-3, 8, 2, 9, -1, 0, 7, 7, 6, 10], 6], [list(range(10)), -100]]),
    dict(id="max_index", entry="MaxIndex",
         intent="Write FUNCTION MaxIndex : INT with VAR_INPUT xs : ARRAY[0..9] OF INT returning the index of the largest "
                "element (the first one when several are equal).",
         st="""FUNCTION MaxIndex : INT
VAR_INPUT xs : ARRAY[0..9] OF INT; END_VAR
VAR i : INT; END_VAR
MaxIndex := 0;
FOR i := 1 TO 9 DO
  IF xs[i] > xs[MaxIndex] THEN MaxIndex := i; END_IF;
END_FOR;
END_FUNCTION""",
         ref=lambda xs: xs.index(max(xs)),
         inputs=[[list(range(10))], [[9, 1, 9, 0, 0, 0, 0, 0, 0, 9]], [[-5] * 10], [[3, 1, 4, 1, 5, 9, 2, 6, 5, 3]]]),
    dict(id="reverse_string", entry="ReverseString",
         intent="Write FUNCTION ReverseString : STRING with VAR_INPUT s : STRING returning s with its characters in "
                "reverse order.",
         st="""FUNCTION ReverseString : STRING
VAR_INPUT s : STRING; END_VAR
VAR i : INT; END_VAR
ReverseString := '';
FOR i := LEN(s) TO 1 BY -1 DO
  ReverseString := CONCAT(ReverseString, MID(s, 1, i));
END_FOR;
END_FUNCTION""",
         ref=lambda s: s[::-1], inputs=[["abc"], [""], ["PLC"], ["racecar"], ["Hello, World"]]),
    dict(id="count_char", entry="CountChar",
         intent="Write FUNCTION CountChar : INT with VAR_INPUT s : STRING; c : STRING[1] returning how many times the "
                "character c occurs in s.",
         st="""FUNCTION CountChar : INT
VAR_INPUT s : STRING; c : STRING[1]; END_VAR
VAR i : INT; END_VAR
FOR i := 1 TO LEN(s) DO
  IF MID(s, 1, i) = c THEN CountChar := CountChar + 1; END_IF;
END_FOR;
END_FUNCTION""",
         ref=lambda s, c: s.count(c), inputs=[["banana", "a"], ["", "x"], ["aaaa", "a"], ["PLC", "x"], ["a,b,,c", ","]]),
    dict(id="bit_count", entry="BitCount",
         intent="Write FUNCTION BitCount : INT with VAR_INPUT w : WORD returning the number of bits set in w.",
         st="""FUNCTION BitCount : INT
VAR_INPUT w : WORD; END_VAR
VAR x : WORD; END_VAR
x := w;
WHILE x <> 0 DO
  IF (x AND 1) = 1 THEN BitCount := BitCount + 1; END_IF;
  x := SHR(x, 1);
END_WHILE;
END_FUNCTION""",
         ref=lambda w: bin(w).count("1"), inputs=[[0], [1], [65535], [0b1010_1010], [0x8001]]),
    dict(id="set_bit", entry="SetBit",
         intent="Write FUNCTION SetBit : WORD with VAR_INPUT w : WORD; n : INT; value : BOOL returning w with bit n "
                "(0..15) set to value; for n outside 0..15 return w unchanged.",
         st="""FUNCTION SetBit : WORD
VAR_INPUT w : WORD; n : INT; value : BOOL; END_VAR
SetBit := w;
IF n < 0 OR n > 15 THEN RETURN; END_IF;
IF value THEN SetBit := w OR SHL(WORD#1, n);
ELSE SetBit := w AND NOT SHL(WORD#1, n);
END_IF;
END_FUNCTION""",
         ref=lambda w, n, v: w if not 0 <= n <= 15 else (w | (1 << n)) if v else (w & ~(1 << n) & 0xFFFF),
         inputs=[[0, 0, True], [0xFFFF, 15, False], [0x00F0, 4, False], [0x00F0, 3, True], [5, 16, True], [5, -1, False]]),
    dict(id="fibonacci", entry="Fibonacci",
         intent="Write FUNCTION Fibonacci : DINT with VAR_INPUT n : INT returning the n-th Fibonacci number "
                "(Fibonacci(0) = 0, Fibonacci(1) = 1), for n from 0 to 40.",
         st="""FUNCTION Fibonacci : DINT
VAR_INPUT n : INT; END_VAR
VAR a, b, t : DINT; i : INT; END_VAR
a := 0; b := 1;
FOR i := 1 TO n DO t := a + b; a := b; b := t; END_FOR;
Fibonacci := a;
END_FUNCTION""",
         ref=lambda n: round(((1 + 5 ** 0.5) / 2) ** n / 5 ** 0.5), inputs=[[0], [1], [2], [10], [20], [40]]),
    dict(id="is_prime", entry="IsPrime",
         intent="Write FUNCTION IsPrime : BOOL with VAR_INPUT n : DINT that tells whether n is a prime number.",
         st="""FUNCTION IsPrime : BOOL
VAR_INPUT n : DINT; END_VAR
VAR d : DINT; END_VAR
IF n < 2 THEN IsPrime := FALSE; RETURN; END_IF;
IsPrime := TRUE;
d := 2;
WHILE d * d <= n DO
  IF n MOD d = 0 THEN IsPrime := FALSE; RETURN; END_IF;
  d := d + 1;
END_WHILE;
END_FUNCTION""",
         ref=lambda n: n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1)),
         inputs=[[0], [1], [2], [9], [97], [7919], [1000000]]),
    dict(id="median3", entry="Median3",
         intent="Write FUNCTION Median3 : REAL with VAR_INPUT a, b, c : REAL returning the middle value of the three.",
         st="""FUNCTION Median3 : REAL
VAR_INPUT a, b, c : REAL; END_VAR
Median3 := MAX(MIN(a, b), MIN(MAX(a, b), c));
END_FUNCTION""",
         ref=lambda a, b, c: sorted([a, b, c])[1], inputs=[[1.0, 2.0, 3.0], [3.5, -1.0, 2.0], [5.0, 5.0, 1.0], [0.0, 0.0, 0.0]]),
    dict(id="deadband", entry="Deadband",
         intent="Write FUNCTION Deadband : INT with VAR_INPUT value, setpoint, band : REAL returning 1 when value is above "
                "setpoint + band, -1 when it is below setpoint - band, and 0 otherwise.",
         st="""FUNCTION Deadband : INT
VAR_INPUT value, setpoint, band : REAL; END_VAR
IF value > setpoint + band THEN Deadband := 1;
ELSIF value < setpoint - band THEN Deadband := -1;
ELSE Deadband := 0;
END_IF;
END_FUNCTION""",
         ref=lambda v, s, b: 1 if v > s + b else -1 if v < s - b else 0,
         inputs=[[50.0, 50.0, 2.0], [52.5, 50.0, 2.0], [47.0, 50.0, 2.0], [52.0, 50.0, 2.0], [-10.0, 0.0, 0.0]]),
    dict(id="sort_array", entry="SortArray",
         intent="Write FUNCTION SortArray : BOOL with VAR_IN_OUT xs : ARRAY[1..6] OF INT that sorts xs in ascending "
                "order in place and returns TRUE.",
         st="""FUNCTION SortArray : BOOL
VAR_IN_OUT xs : ARRAY[1..6] OF INT; END_VAR
VAR i, j, t : INT; END_VAR
FOR i := 1 TO 5 DO
  FOR j := 1 TO 6 - i DO
    IF xs[j] > xs[j + 1] THEN t := xs[j]; xs[j] := xs[j + 1]; xs[j + 1] := t; END_IF;
  END_FOR;
END_FOR;
SortArray := TRUE;
END_FUNCTION""",
         ref=lambda xs: {"xs": sorted(xs), "SortArray": True},
         inputs=[[[3, 1, 2, 6, 5, 4]], [[1, 2, 3, 4, 5, 6]], [[0, 0, -1, -1, 7, 7]], [[32767, -32768, 0, 1, -1, 2]]]),
    dict(id="tank_percent", entry="TankPercent",
         intent="Write FUNCTION TankPercent : INT with VAR_INPUT level_mm, height_mm : INT returning the fill level in "
                "percent rounded to the nearest integer and clamped to 0..100; a height of 0 or less gives 0.",
         st="""FUNCTION TankPercent : INT
VAR_INPUT level_mm, height_mm : INT; END_VAR
IF height_mm <= 0 THEN TankPercent := 0; RETURN; END_IF;
TankPercent := LIMIT(0, REAL_TO_INT(INT_TO_REAL(level_mm) * 100.0 / INT_TO_REAL(height_mm)), 100);
END_FUNCTION""",
         ref=lambda lv, h: 0 if h <= 0 else min(100, max(0, math.floor(lv * 100 / h + 0.5) if lv >= 0 else -math.floor(-lv * 100 / h + 0.5))),
         inputs=[[500, 1000], [1000, 1000], [1200, 1000], [-5, 1000], [333, 1000], [1, 200], [50, 0]]),
    dict(id="next_light", entry="NextLight",
         intent="Declare TYPE Light : (Red, Green, Yellow); END_TYPE and write FUNCTION NextLight : Light with "
                "VAR_INPUT current : Light returning the next light in the cycle Red -> Green -> Yellow -> Red.",
         st="""TYPE Light : (Red, Green, Yellow); END_TYPE
FUNCTION NextLight : Light
VAR_INPUT current : Light; END_VAR
CASE current OF
  Red: NextLight := Green;
  Green: NextLight := Yellow;
ELSE NextLight := Red;
END_CASE;
END_FUNCTION""",
         ref=lambda c: {"Red": "Green", "Green": "Yellow", "Yellow": "Red"}[c], inputs=[["Red"], ["Green"], ["Yellow"]]),
    dict(id="xor_checksum", entry="XorChecksum",
         intent="Write FUNCTION XorChecksum : BYTE with VAR_INPUT data : ARRAY[1..8] OF BYTE returning the XOR of all "
                "eight bytes.",
         st="""FUNCTION XorChecksum : BYTE
VAR_INPUT data : ARRAY[1..8] OF BYTE; END_VAR
VAR i : INT; END_VAR
FOR i := 1 TO 8 DO XorChecksum := XorChecksum XOR data[i]; END_FOR;
END_FUNCTION""",
         ref=lambda d: __import__("functools").reduce(lambda a, b: a ^ b, d, 0),
         inputs=[[[0] * 8], [[1, 2, 3, 4, 5, 6, 7, 8]], [[255] * 8], [[0xAA, 0x55, 0, 0, 0, 0, 0, 1]]]),
    dict(id="to_bcd", entry="ToBcd",
         intent="Write FUNCTION ToBcd : WORD with VAR_INPUT n : INT converting n (0..9999) to packed BCD, four bits per "
                "decimal digit; values outside 0..9999 give 0.",
         st="""FUNCTION ToBcd : WORD
VAR_INPUT n : INT; END_VAR
VAR x, shift : INT; END_VAR
IF n < 0 OR n > 9999 THEN ToBcd := 0; RETURN; END_IF;
x := n;
WHILE x > 0 DO
  ToBcd := ToBcd OR SHL(INT_TO_WORD(x MOD 10), shift);
  x := x / 10;
  shift := shift + 4;
END_WHILE;
END_FUNCTION""",
         ref=lambda n: _bcd(n) if 0 <= n <= 9999 else 0, inputs=[[0], [7], [42], [1234], [9999], [10000], [-1]]),
    dict(id="word_wrap16", entry="AddWrap",
         intent="Write FUNCTION AddWrap : INT with VAR_INPUT a, b : INT returning a + b as a 16-bit INT (overflow wraps "
                "around, as on the PLC).",
         st="""FUNCTION AddWrap : INT
VAR_INPUT a, b : INT; END_VAR
AddWrap := a + b;
END_FUNCTION""",
         ref=lambda a, b: wrap16(a + b), inputs=[[1, 2], [32767, 1], [-32768, -1], [20000, 20000]]),
    # ---- function blocks: scan cycles in, outputs per cycle out
    dict(id="hysteresis", entry="Hysteresis", cycles=ref_hysteresis,
         intent="Write FUNCTION_BLOCK Hysteresis with VAR_INPUT value, low, high : REAL and VAR_OUTPUT on : BOOL. "
                "on becomes TRUE when value rises above high and FALSE when value falls below low; in between it keeps "
                "its state.",
         st="""FUNCTION_BLOCK Hysteresis
VAR_INPUT value, low, high : REAL; END_VAR
VAR_OUTPUT on : BOOL; END_VAR
IF value > high THEN on := TRUE;
ELSIF value < low THEN on := FALSE;
END_IF;
END_FUNCTION_BLOCK""",
         inputs=[[[{"value": v, "low": 10.0, "high": 20.0} for v in (5.0, 15.0, 21.0, 15.0, 10.0, 9.9, 15.0, 20.1)]]]),
    dict(id="start_stop", entry="StartStop", cycles=ref_latch,
         intent="Write FUNCTION_BLOCK StartStop with VAR_INPUT start, stop : BOOL and VAR_OUTPUT motor : BOOL: a "
                "self-holding latch where start switches the motor on, stop switches it off, and stop wins when both "
                "are pressed.",
         st="""FUNCTION_BLOCK StartStop
VAR_INPUT start, stop : BOOL; END_VAR
VAR_OUTPUT motor : BOOL; END_VAR
motor := (start OR motor) AND NOT stop;
END_FUNCTION_BLOCK""",
         inputs=[[[{}, {"start": True}, {"start": False}, {}, {"stop": True}, {"stop": False}, {"start": True, "stop": True},
                   {"stop": False}, {"start": False}]]]),
    dict(id="pulse_counter", entry="PulseCounter", cycles=ref_edges,
         intent="Write FUNCTION_BLOCK PulseCounter with VAR_INPUT pulse, reset : BOOL and VAR_OUTPUT count : INT that "
                "counts rising edges of pulse; reset sets count to 0 (an edge during reset is not counted).",
         st="""FUNCTION_BLOCK PulseCounter
VAR_INPUT pulse, reset : BOOL; END_VAR
VAR_OUTPUT count : INT; END_VAR
VAR edge : R_TRIG; END_VAR
edge(CLK := pulse);
IF reset THEN count := 0;
ELSIF edge.Q THEN count := count + 1;
END_IF;
END_FUNCTION_BLOCK""",
         inputs=[[[{"pulse": p} for p in (False, True, True, False, True, False, False, True)]
                  + [{"reset": True, "pulse": False}, {"reset": True, "pulse": True}, {"reset": False, "pulse": False},
                     {"pulse": True}]]]),
    dict(id="debounce", entry="Debounce", cycles=ref_debounce,
         intent="Write FUNCTION_BLOCK Debounce with VAR_INPUT raw : BOOL and VAR_OUTPUT stable : BOOL: stable follows raw "
                "only after raw has kept its new value for at least 50 ms (use a timer).",
         st="""FUNCTION_BLOCK Debounce
VAR_INPUT raw : BOOL; END_VAR
VAR_OUTPUT stable : BOOL; END_VAR
VAR t : TON; END_VAR
t(IN := raw <> stable, PT := T#50ms);
IF t.Q THEN stable := raw; t(IN := FALSE); END_IF;
END_FUNCTION_BLOCK""",
         inputs=[[[{"raw": True}, {"@ms": 20}, {"@ms": 20, "raw": False}, {"@ms": 20, "raw": True}, {"@ms": 30},
                   {"@ms": 20}, {"@ms": 10}, {"@ms": 10, "raw": False}, {"@ms": 60}, {"@ms": 10}]]]),
    dict(id="traffic_light", entry="TrafficLight", cycles=ref_traffic,
         intent="Write FUNCTION_BLOCK TrafficLight with VAR_INPUT enable : BOOL and VAR_OUTPUT red, green, yellow : BOOL. "
                "While enabled it shows red for 3 s, then green for 2 s, then yellow for 1 s, and repeats, starting with "
                "red when enabled; when not enabled all lights are off.",
         st="""FUNCTION_BLOCK TrafficLight
VAR_INPUT enable : BOOL; END_VAR
VAR_OUTPUT red, green, yellow : BOOL; END_VAR
VAR phase : INT; t : TON; durations : ARRAY[0..2] OF TIME := [T#3s, T#2s, T#1s]; END_VAR
IF NOT enable THEN
  phase := 0; t(IN := FALSE);
ELSE
  t(IN := TRUE, PT := durations[phase]);
  WHILE t.Q DO
    phase := (phase + 1) MOD 3;
    t(IN := FALSE);
    t(IN := TRUE, PT := durations[phase]);
  END_WHILE;
END_IF;
red := enable AND phase = 0;
green := enable AND phase = 1;
yellow := enable AND phase = 2;
END_FUNCTION_BLOCK""",
         inputs=[[[{"enable": True}] + [{"@ms": 500}] * 14 + [{"enable": False}, {"enable": True, "@ms": 100}, {"@ms": 3000}]]]),
    dict(id="moving_average", entry="MovingAverage", cycles=ref_moving_average,
         intent="Write FUNCTION_BLOCK MovingAverage with VAR_INPUT x : REAL and VAR_OUTPUT avg : REAL: the mean of the "
                "last four values of x (of all values so far while there are fewer than four).",
         st="""FUNCTION_BLOCK MovingAverage
VAR_INPUT x : REAL; END_VAR
VAR_OUTPUT avg : REAL; END_VAR
VAR buf : ARRAY[0..3] OF REAL; n, pos, i : INT; s : REAL; END_VAR
buf[pos] := x;
pos := (pos + 1) MOD 4;
IF n < 4 THEN n := n + 1; END_IF;
s := 0.0;
FOR i := 0 TO n - 1 DO s := s + buf[i]; END_FOR;
avg := s / INT_TO_REAL(n);
END_FUNCTION_BLOCK""",
         inputs=[[[{"x": x} for x in (4.0, 8.0, 0.0, 4.0, 12.0, -4.0, 2.5, 2.5)]]]),
    dict(id="rate_limiter", entry="RateLimiter", cycles=ref_rate_limit,
         intent="Write FUNCTION_BLOCK RateLimiter with VAR_INPUT target, max_step : REAL and VAR_OUTPUT out : REAL "
                "(starting at 0): each call moves out towards target by at most max_step.",
         st="""FUNCTION_BLOCK RateLimiter
VAR_INPUT target, max_step : REAL; END_VAR
VAR_OUTPUT out : REAL; END_VAR
out := out + LIMIT(-max_step, target - out, max_step);
END_FUNCTION_BLOCK""",
         inputs=[[[{"target": 10.0, "max_step": 4.0}] * 4 + [{"target": -2.0, "max_step": 5.0}] * 4]]),
    dict(id="tank_control", entry="TankControl", cycles=ref_tank,
         intent="Write FUNCTION_BLOCK TankControl with VAR_INPUT level : INT (percent) and VAR_OUTPUT pump, alarm : BOOL. "
                "The pump switches on when level is 20 or less and off when level is 80 or more, keeping its state in "
                "between; alarm is TRUE while level is above 95 or below 5.",
         st="""FUNCTION_BLOCK TankControl
VAR_INPUT level : INT; END_VAR
VAR_OUTPUT pump, alarm : BOOL; END_VAR
IF level <= 20 THEN pump := TRUE; END_IF;
IF level >= 80 THEN pump := FALSE; END_IF;
alarm := level > 95 OR level < 5;
END_FUNCTION_BLOCK""",
         inputs=[[[{"level": v} for v in (50, 20, 40, 79, 80, 60, 21, 3, 97, 50)]]]),
]
