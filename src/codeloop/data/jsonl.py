"""JSON Lines reading and writing. Every error names the file, the line and, where known, the field."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """Bad input data; the message says where (``file:line: field: problem``)."""


def where(path: str | Path, line: int | None = None, field: str | None = None) -> str:
    text = str(path) + (f":{line}" if line is not None else "")
    return text + (f": field {field!r}" if field else "")


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; ``.gz`` files are decompressed."""
    path = Path(path)
    try:
        handle = gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{where(path, number)}: malformed JSON: {exc.msg} (column {exc.colno})") from None
                if not isinstance(obj, dict):
                    raise DataError(f"{where(path, number)}: expected a JSON object, got {type(obj).__name__}")
                yield number, obj
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text: {exc.reason}") from None


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows atomically (to a temp file, then rename); return how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def require(obj: dict[str, Any], field: str, kind: type | tuple[type, ...], path: str | Path, line: int,
            optional: bool = False) -> Any:
    """``obj[field]`` checked for presence and type, or a DataError naming file, line and field."""
    if field not in obj or obj[field] is None:
        if optional:
            return None
        raise DataError(f"{where(path, line, field)}: missing")
    value = obj[field]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(f"{where(path, line, field)}: expected {names}, got {type(value).__name__}")
    return value
