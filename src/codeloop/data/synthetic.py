"""Procedurally generated Python function-writing tasks: ``synthetic-python:{train,dev,test}``.

A task is a pipeline over a list of integers or a string: one to three transforms (filters and maps)
then an aggregate, e.g. "keep the even numbers, multiply each by 3, then return their sum". Each task
has a description, a signature with a docstring (the prompt), a reference body, and I/O tests computed
by the Python implementation of each step (so the sandbox keeps expected outputs out of the sample).

Splits are by *shape*, the sequence of step kinds without their parameters: a shape belongs to exactly
one split, so test tasks are combinations never seen in training, while every single step is. All of it
is deterministic in ``seed``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from codeloop.types import Task

SPLITS = {"train": 6000, "dev": 500, "test": 500}
"""Default number of tasks per split."""
SPLIT_SHARES = (("test", 0.15), ("dev", 0.10), ("train", 0.75))
CASES = 6
"""I/O tests per task."""


@dataclass(frozen=True)
class Step:
    """One pipeline stage: its kind (for shapes), its words, its line of code, its semantics."""

    kind: str
    phrase: str
    code: str
    fn: Callable[[Any], Any]


def _int_transforms(rng: random.Random) -> dict[str, Callable[[], Step]]:
    k, m = rng.randint(2, 5), rng.choice([3, 4, 5])
    t = rng.randint(-3, 5)
    return {
        "even": lambda: Step("even", "keep the even numbers", "xs = [x for x in xs if x % 2 == 0]",
                             lambda xs: [x for x in xs if x % 2 == 0]),
        "odd": lambda: Step("odd", "keep the odd numbers", "xs = [x for x in xs if x % 2 == 1]",
                            lambda xs: [x for x in xs if x % 2 == 1]),
        "gt": lambda: Step("gt", f"keep the numbers greater than {t}", f"xs = [x for x in xs if x > {t}]",
                           lambda xs: [x for x in xs if x > t]),
        "lt": lambda: Step("lt", f"keep the numbers less than {t}", f"xs = [x for x in xs if x < {t}]",
                           lambda xs: [x for x in xs if x < t]),
        "multiple": lambda: Step("multiple", f"keep the multiples of {m}", f"xs = [x for x in xs if x % {m} == 0]",
                                 lambda xs: [x for x in xs if x % m == 0]),
        "nonzero": lambda: Step("nonzero", "drop the zeros", "xs = [x for x in xs if x != 0]",
                                lambda xs: [x for x in xs if x != 0]),
        "mul": lambda: Step("mul", f"multiply each by {k}", f"xs = [x * {k} for x in xs]", lambda xs: [x * k for x in xs]),
        "add": lambda: Step("add", f"add {k} to each", f"xs = [x + {k} for x in xs]", lambda xs: [x + k for x in xs]),
        "sub": lambda: Step("sub", f"subtract {k} from each", f"xs = [x - {k} for x in xs]", lambda xs: [x - k for x in xs]),
        "square": lambda: Step("square", "square each", "xs = [x * x for x in xs]", lambda xs: [x * x for x in xs]),
        "neg": lambda: Step("neg", "negate each", "xs = [-x for x in xs]", lambda xs: [-x for x in xs]),
        "abs": lambda: Step("abs", "take the absolute value of each", "xs = [abs(x) for x in xs]", lambda xs: [abs(x) for x in xs]),
        "mod": lambda: Step("mod", f"replace each by its remainder modulo {m}", f"xs = [x % {m} for x in xs]",
                            lambda xs: [x % m for x in xs]),
        "reverse": lambda: Step("reverse", "reverse the order", "xs = xs[::-1]", lambda xs: xs[::-1]),
    }


_INT_AGGREGATES: dict[str, tuple[str, str, str, Callable[[list[int]], Any]]] = {
    "sum": ("return their sum", "int", "return sum(xs)", sum),
    "max": ("return the largest, or 0 if there is none", "int", "return max(xs, default=0)", lambda xs: max(xs, default=0)),
    "min": ("return the smallest, or 0 if there is none", "int", "return min(xs, default=0)", lambda xs: min(xs, default=0)),
    "count": ("return how many there are", "int", "return len(xs)", len),
    "sorted": ("return them in ascending order", "list[int]", "return sorted(xs)", sorted),
    "list": ("return them as a list", "list[int]", "return xs", list),
    "first": ("return the first one, or -1 if there is none", "int", "return xs[0] if xs else -1", lambda xs: xs[0] if xs else -1),
    "last": ("return the last one, or -1 if there is none", "int", "return xs[-1] if xs else -1", lambda xs: xs[-1] if xs else -1),
    "distinct": ("return the distinct values in ascending order", "list[int]", "return sorted(set(xs))", lambda xs: sorted(set(xs))),
    "counts": ("return [value, count] pairs for the distinct values in ascending order", "list[list[int]]",
               "return [[x, xs.count(x)] for x in sorted(set(xs))]", lambda xs: [[x, xs.count(x)] for x in sorted(set(xs))]),
}


def _str_transforms(rng: random.Random) -> dict[str, Callable[[], Step]]:
    c = rng.choice("aeiost")
    r = rng.choice("xyz*")
    return {
        "novowel": lambda: Step("novowel", "remove the vowels", "s = ''.join(c for c in s if c not in 'aeiouAEIOU')",
                                lambda s: "".join(ch for ch in s if ch not in "aeiouAEIOU")),
        "letters": lambda: Step("letters", "keep only the letters", "s = ''.join(c for c in s if c.isalpha())",
                                lambda s: "".join(ch for ch in s if ch.isalpha())),
        "nospace": lambda: Step("nospace", "remove the spaces", "s = s.replace(' ', '')", lambda s: s.replace(" ", "")),
        "upper": lambda: Step("upper", "convert it to upper case", "s = s.upper()", str.upper),
        "lower": lambda: Step("lower", "convert it to lower case", "s = s.lower()", str.lower),
        "swap": lambda: Step("swap", "swap the case of each letter", "s = s.swapcase()", str.swapcase),
        "sreverse": lambda: Step("sreverse", "reverse it", "s = s[::-1]", lambda s: s[::-1]),
        "replace": lambda: Step("replace", f"replace every '{c}' with '{r}'", f"s = s.replace('{c}', '{r}')",
                                lambda s: s.replace(c, r)),
        "double": lambda: Step("double", "repeat each character twice", "s = ''.join(c + c for c in s)",
                               lambda s: "".join(ch + ch for ch in s)),
    }


def _str_aggregates(rng: random.Random) -> dict[str, tuple[str, str, str, Callable[[str], Any]]]:
    c = rng.choice("aeiost")
    return {
        "return": ("return it", "str", "return s", lambda s: s),
        "length": ("return its length", "int", "return len(s)", len),
        "countc": (f"return how many times '{c}' occurs in it", "int", f"return s.count('{c}')", lambda s: s.count(c)),
        "words": ("return the number of words in it", "int", "return len(s.split())", lambda s: len(s.split())),
        "chars": ("return a dict mapping each character to how many times it occurs", "dict[str, int]",
                  "return {c: s.count(c) for c in s}", lambda s: {ch: s.count(ch) for ch in s}),
    }


_WORDS = "the cat sat on a mat with its best friend at noon Eat Pie quietly 42 apples or 7 stories".split()


def _int_input(rng: random.Random) -> list[int]:
    return [rng.randint(-9, 12) for _ in range(rng.randint(0, 8))]


def _str_input(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 5)))


def _split_of(shape: str, seed: int) -> str:
    h = int(hashlib.sha256(f"{seed}:{shape}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    acc = 0.0
    for split, share in SPLIT_SHARES:
        acc += share
        if h < acc:
            return split
    return "train"


def _join(phrases: list[str]) -> str:
    text = ", ".join(phrases[:-1]) + (", then " if len(phrases) > 1 else "") + phrases[-1]
    return text[0].upper() + text[1:] + "."


def _make(rng: random.Random, domain: str) -> tuple[str, list[Step], tuple[str, str, str, Callable[[Any], Any]]]:
    if domain == "ints":
        transforms, aggregates = _int_transforms(rng), _INT_AGGREGATES
    else:
        transforms, aggregates = _str_transforms(rng), _str_aggregates(rng)
    steps = [transforms[k]() for k in rng.sample(sorted(transforms), rng.randint(1, 3))]
    agg_kind = rng.choice(sorted(aggregates))
    shape = domain + ":" + ">".join(s.kind for s in steps) + ">" + agg_kind
    return shape, steps, aggregates[agg_kind]


def _task(task_id: str, steps: list[Step], agg: tuple[str, str, str, Callable[[Any], Any]], domain: str,
          rng: random.Random) -> Task:
    phrase, ret, agg_code, agg_fn = agg
    arg, arg_type, make_input = ("xs", "list[int]", _int_input) if domain == "ints" else ("s", "str", _str_input)
    doc = _join([s.phrase for s in steps] + [phrase])
    prompt = f'def solve({arg}: {arg_type}) -> {ret}:\n    """{doc}"""\n'
    body = "".join(f"    {s.code}\n" for s in steps) + f"    {agg_code}\n"
    inputs = [[make_input(rng)] for _ in range(CASES - 1)] + [[[] if domain == "ints" else ""]]
    outputs = []
    for (value,) in inputs:
        for s in steps:
            value = s.fn(value)
        outputs.append(agg_fn(value))
    description = f"Write a function solve({arg}) that takes a {'list of integers' if domain == 'ints' else 'string'}. {doc}"
    return Task(task_id=task_id, prompt=prompt, entry_point="solve", canonical_solution=body, description=description,
                inputs=tuple(inputs), outputs=tuple(outputs))


def generate_with_shapes(split: str, n: int | None = None, seed: int = 0) -> list[tuple[Task, str]]:
    """``n`` distinct tasks (by prompt) of ``split`` with their shapes, deterministic in ``seed``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    n = SPLITS[split] if n is None else n
    rng = random.Random(f"codeloop-synthetic:{seed}:{split}")
    out: list[tuple[Task, str]] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 200 * n + 1000:
            raise RuntimeError(f"could not draw {n} distinct {split} tasks")
        domain = "ints" if rng.random() < 0.7 else "str"
        shape, steps, agg = _make(rng, domain)
        if _split_of(shape, seed) != split:
            continue
        task = _task(f"synthetic-python/{split}/{len(out)}", steps, agg, domain, rng)
        if task.prompt not in seen:
            seen.add(task.prompt)
            out.append((task, shape))
    return out


def generate(split: str, n: int | None = None, seed: int = 0) -> dict[str, Task]:
    """``n`` distinct tasks of ``split`` (default size: ``SPLITS``), deterministic in ``seed``."""
    return {task.task_id: task for task, _ in generate_with_shapes(split, n, seed)}


def load(name: str) -> dict[str, Task]:
    """``synthetic-python:SPLIT`` or ``synthetic-python:SPLIT:N``."""
    parts = name.split(":")
    if len(parts) not in (2, 3) or parts[0] != "synthetic-python":
        raise ValueError(f"expected synthetic-python:SPLIT[:N], got {name!r}")
    return generate(parts[1], int(parts[2]) if len(parts) == 3 else None)
