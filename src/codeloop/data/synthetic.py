"""Procedurally generated function-writing tasks: ``synthetic-python:{train,dev,test}``, and the same in
Structured Text, ``synthetic-st:{train,dev,test}``.

A task is a pipeline over a list of integers or a string: one to three transforms (filters and maps)
then an aggregate, e.g. "keep the even numbers, multiply each by 3, then return their sum". Each task
has a description, a signature with a docstring (the prompt), a reference body, and I/O tests computed
by the Python implementation of each step (so the sandbox keeps expected outputs out of the sample).

Splits are by *shape*, the sequence of step kinds without their parameters: a shape belongs to exactly
one split, so test tasks are combinations never seen in training, while every single step is. All of it
is deterministic in ``seed``.

``synthetic-python+:SPLIT`` holds the same tasks (same ids, prompts, references) with stricter tests,
as EvalPlus does for HumanEval: the six base cases first, then more drawn per task from a wider input
distribution (longer lists, a wider range, one-letter and vowel-only words, double spaces). Six cases
accept some wrong programs: of the seed's passing samples on 100 test tasks, 7% fail on more inputs,
and of the positives the demo trains on, 14-17% (measured; README).

``synthetic-st[+]:SPLIT`` are the integer tasks with a scalar result (sum, count, max, min, first,
last) in IEC 61131-3 Structured Text: the prompt is the intent as an ST comment, the answer a whole
``FUNCTION solve : DINT`` over ``xs : ARRAY[1..12] OF DINT`` and ``n : INT`` (``st_function``). The
expected outputs still come from the Python step functions; cells past ``n`` hold stray values, and a
task whose six outputs are all equal is not drawn (a constant would pass it). Every value stays well
inside DINT: a pipeline has at most one square, inputs are at most 15 in size, lists at most 12 long.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from codeloop.data.prompts import describe_failure, execution_feedback, repair_prompt
from codeloop.types import Task

SPLITS = {"train": 6000, "dev": 500, "test": 500}
"""Default number of tasks per split."""
SPLIT_SHARES = (("test", 0.15), ("dev", 0.10), ("train", 0.75))
CASES = 6
"""I/O tests per task."""
PLUS_CASES = 50
"""I/O tests per task in ``synthetic-python+`` (the ``CASES`` base ones first)."""


@dataclass(frozen=True)
class Step:
    """One pipeline stage: its kind (for shapes), its words, its line of code, its semantics, and for
    integer steps its Structured Text form (a filter's condition, or a map's statements on ``x``)."""

    kind: str
    phrase: str
    code: str
    fn: Callable[[Any], Any]
    st: str = ""


_NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 0: "zero", 1: "one"}


def _num(rng: random.Random, k: int) -> str:
    """A number as digits, or (sometimes) in words: the wording should not map 1:1 onto the code."""
    return _NUMBER_WORDS[k] if k in _NUMBER_WORDS and rng.random() < 0.4 else str(k)


def _int_transforms(rng: random.Random) -> dict[str, Callable[[], Step]]:
    k, m = rng.randint(2, 5), rng.choice([3, 4, 5])
    t = rng.randint(-3, 5)
    say = rng.choice  # each step has several wordings; one is drawn per task
    K, M, T = _num(rng, k), _num(rng, m), _num(rng, t) if t >= 0 else str(t)
    return {
        "even": lambda: Step("even", say(["keep the even numbers", "drop the odd numbers", "keep only values divisible by two"]),
                             "xs = [x for x in xs if x % 2 == 0]", lambda xs: [x for x in xs if x % 2 == 0], "x MOD 2 = 0"),
        "odd": lambda: Step("odd", say(["keep the odd numbers", "drop the even numbers", "keep only values not divisible by two"]),
                            "xs = [x for x in xs if x % 2 == 1]", lambda xs: [x for x in xs if x % 2 == 1], "x MOD 2 <> 0"),
        "gt": lambda: Step("gt", say([f"keep the numbers greater than {T}", f"drop every value that is at most {T}",
                                      f"keep only values above {T}"]),
                           f"xs = [x for x in xs if x > {t}]", lambda xs: [x for x in xs if x > t], f"x > {t}"),
        "lt": lambda: Step("lt", say([f"keep the numbers less than {T}", f"drop every value that is at least {T}",
                                      f"keep only values below {T}"]),
                           f"xs = [x for x in xs if x < {t}]", lambda xs: [x for x in xs if x < t], f"x < {t}"),
        "multiple": lambda: Step("multiple", say([f"keep the multiples of {M}", f"keep only values divisible by {M}"]),
                                 f"xs = [x for x in xs if x % {m} == 0]", lambda xs: [x for x in xs if x % m == 0], f"x MOD {m} = 0"),
        "nonzero": lambda: Step("nonzero", say(["drop the zeros", "remove every 0", "keep the non-zero values"]),
                                "xs = [x for x in xs if x != 0]", lambda xs: [x for x in xs if x != 0], "x <> 0"),
        "mul": lambda: Step("mul", say([f"multiply each by {K}", f"scale every value by {K}", f"replace each value x by {K} times x"]),
                            f"xs = [x * {k} for x in xs]", lambda xs: [x * k for x in xs], f"x := x * {k};"),
        "add": lambda: Step("add", say([f"add {K} to each", f"increase every value by {K}", f"shift each value up by {K}"]),
                            f"xs = [x + {k} for x in xs]", lambda xs: [x + k for x in xs], f"x := x + {k};"),
        "sub": lambda: Step("sub", say([f"subtract {K} from each", f"decrease every value by {K}", f"shift each value down by {K}"]),
                            f"xs = [x - {k} for x in xs]", lambda xs: [x - k for x in xs], f"x := x - {k};"),
        "square": lambda: Step("square", say(["square each", "replace each value by its square", "multiply each value by itself"]),
                               "xs = [x * x for x in xs]", lambda xs: [x * x for x in xs], "x := x * x;"),
        "neg": lambda: Step("neg", say(["negate each", "flip the sign of every value"]), "xs = [-x for x in xs]",
                            lambda xs: [-x for x in xs], "x := -x;"),
        "abs": lambda: Step("abs", say(["take the absolute value of each", "make every value non-negative by dropping its sign"]),
                            "xs = [abs(x) for x in xs]", lambda xs: [abs(x) for x in xs], "x := ABS(x);"),
        "mod": lambda: Step("mod", say([f"replace each by its remainder modulo {M}", f"reduce every value modulo {M}"]),
                            f"xs = [x % {m} for x in xs]", lambda xs: [x % m for x in xs], f"x := x MOD {m};\nIF x < 0 THEN\n    x := x + {m};\nEND_IF;"),
        "reverse": lambda: Step("reverse", say(["reverse the order", "turn the list around"]), "xs = xs[::-1]",
                                lambda xs: xs[::-1]),
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


ST_AGGREGATES = ("count", "first", "last", "max", "min", "sum")
"""The integer aggregates with a scalar result (ST functions return one value)."""
_ST_AGGREGATE_TABLE = {k: _INT_AGGREGATES[k] for k in ST_AGGREGATES}


def _str_transforms(rng: random.Random) -> dict[str, Callable[[], Step]]:
    c = rng.choice("aeiost")
    r = rng.choice("xyz*")
    say = rng.choice
    return {
        "novowel": lambda: Step("novowel", say(["remove the vowels", "drop every vowel", "delete all a, e, i, o and u letters of either case"]),
                                "s = ''.join(c for c in s if c not in 'aeiouAEIOU')",
                                lambda s: "".join(ch for ch in s if ch not in "aeiouAEIOU")),
        "letters": lambda: Step("letters", say(["keep only the letters", "drop everything that is not a letter"]),
                                "s = ''.join(c for c in s if c.isalpha())", lambda s: "".join(ch for ch in s if ch.isalpha())),
        "nospace": lambda: Step("nospace", say(["remove the spaces", "delete every space"]), "s = s.replace(' ', '')",
                                lambda s: s.replace(" ", "")),
        "upper": lambda: Step("upper", say(["convert it to upper case", "capitalise every letter"]), "s = s.upper()", str.upper),
        "lower": lambda: Step("lower", say(["convert it to lower case", "make every letter small"]), "s = s.lower()", str.lower),
        "swap": lambda: Step("swap", say(["swap the case of each letter", "turn upper case into lower case and vice versa"]),
                             "s = s.swapcase()", str.swapcase),
        "sreverse": lambda: Step("sreverse", say(["reverse it", "read it backwards"]), "s = s[::-1]", lambda s: s[::-1]),
        "replace": lambda: Step("replace", say([f"replace every '{c}' with '{r}'", f"write '{r}' wherever '{c}' appears"]),
                                f"s = s.replace('{c}', '{r}')", lambda s: s.replace(c, r)),
        "double": lambda: Step("double", say(["repeat each character twice", "double every character"]),
                               "s = ''.join(c + c for c in s)", lambda s: "".join(ch + ch for ch in s)),
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


_PLUS_WORDS = _WORDS + "a I A e Oo AEIOU queue xyz Tt sky".split()


def _int_input_plus(rng: random.Random) -> list[int]:
    return [rng.randint(-12, 15) for _ in range(rng.randint(0, 12))]


def _str_input_plus(rng: random.Random) -> str:
    return rng.choice([" ", " ", " ", "  "]).join(rng.choice(_PLUS_WORDS) for _ in range(rng.randint(0, 7)))


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
    aggregates: dict[str, tuple[str, str, str, Callable[[Any], Any]]]
    if domain == "ints":
        transforms, aggregates = _int_transforms(rng), _INT_AGGREGATES
    elif domain == "st":
        transforms, aggregates = _int_transforms(rng), _ST_AGGREGATE_TABLE
    else:
        transforms, aggregates = _str_transforms(rng), _str_aggregates(rng)
    steps = [transforms[k]() for k in rng.sample(sorted(transforms), rng.randint(1, 3))]
    agg_kind = rng.choice(sorted(aggregates))
    shape = domain + ":" + ">".join(s.kind for s in steps) + ">" + agg_kind
    return shape, steps, aggregates[agg_kind]


def _run(steps: list[Step], agg_fn: Callable[[Any], Any], value: Any) -> Any:
    for s in steps:
        value = s.fn(value)
    return agg_fn(value)


def _body(steps: list[Step], agg_code: str) -> str:
    return "".join(f"    {s.code}\n" for s in steps) + f"    {agg_code}\n"


def _task(task_id: str, steps: list[Step], agg: tuple[str, str, str, Callable[[Any], Any]], domain: str,
          rng: random.Random) -> Task:
    phrase, ret, agg_code, agg_fn = agg
    arg, arg_type, make_input = ("xs", "list[int]", _int_input) if domain == "ints" else ("s", "str", _str_input)
    doc = _join([s.phrase for s in steps] + [phrase])
    prompt = f'def solve({arg}: {arg_type}) -> {ret}:\n    """{doc}"""\n'
    body = _body(steps, agg_code)
    inputs = [[make_input(rng)] for _ in range(CASES - 1)] + [[[] if domain == "ints" else ""]]
    outputs = [_run(steps, agg_fn, value) for (value,) in inputs]
    description = f"Write a function solve({arg}) that takes a {'list of integers' if domain == 'ints' else 'string'}. {doc}"
    return Task(task_id=task_id, prompt=prompt, entry_point="solve", canonical_solution=body, description=description,
                inputs=tuple(inputs), outputs=tuple(outputs))


ST_SIZE = 12
"""Capacity of the ``xs`` array of a Structured Text task (its lists have 0 to 12 values)."""
ST_FILTERS = frozenset({"even", "odd", "gt", "lt", "multiple", "nonzero"})
_ST_AGGREGATE_CODE = {
    "sum": ("0", ["solve := solve + x;"]),
    "count": ("0", ["solve := solve + 1;"]),
    "max": ("0", ["IF NOT found OR x > solve THEN", "    solve := x;", "    found := TRUE;", "END_IF;"]),
    "min": ("0", ["IF NOT found OR x < solve THEN", "    solve := x;", "    found := TRUE;", "END_IF;"]),
    "first": ("-1", ["solve := x;", "RETURN;"]),
    "last": ("-1", ["solve := x;"]),
}
_ST_HEADER = "FUNCTION solve : DINT with VAR_INPUT xs : ARRAY[1..12] OF DINT and n : INT, the values being xs[1] to xs[n]."


def st_function(steps: list[Step], agg_kind: str) -> str:
    """The reference in Structured Text: one loop over xs[1..n] (backwards where a step reverses the
    order, every other step acting on one value), filters as nested IFs, the aggregate innermost."""
    init, agg_lines = _ST_AGGREGATE_CODE[agg_kind]
    decls = ["i : INT;", "x : DINT;"] + (["found : BOOL;"] if agg_kind in ("max", "min") else [])
    lines = ["FUNCTION solve : DINT", "VAR_INPUT", "    xs : ARRAY[1..12] OF DINT;", "    n : INT;", "END_VAR",
             "VAR", *("    " + d for d in decls), "END_VAR", f"solve := {init};",
             "FOR i := n TO 1 BY -1 DO" if any(s.kind == "reverse" for s in steps) else "FOR i := 1 TO n DO",
             "    x := xs[i];"]
    depth = 1
    for step in steps:
        if step.kind in ST_FILTERS:
            lines.append("    " * depth + f"IF {step.st} THEN")
            depth += 1
        elif step.kind != "reverse":
            lines += ["    " * depth + line for line in step.st.splitlines()]
    lines += ["    " * depth + line for line in agg_lines]
    lines += ["    " * d + "END_IF;" for d in range(depth - 1, 0, -1)]
    return "\n".join(lines + ["END_FOR;", "END_FUNCTION"]) + "\n"


def _st_case(values: list[int], rng: random.Random) -> list[Any]:
    """A list as an ST call's arguments: the array padded with stray values (a program that reads past
    xs[n] should notice), and n."""
    return [values + [rng.randint(-9, 12) for _ in range(ST_SIZE - len(values))], len(values)]


def _st_task(task_id: str, steps: list[Step], agg: tuple[str, str, str, Callable[[Any], Any]], agg_kind: str,
             rng: random.Random) -> Task:
    doc = _join([s.phrase for s in steps] + [agg[0]])
    description = f"Write {_ST_HEADER} {doc}"
    values = [_int_input(rng) for _ in range(CASES - 1)] + [[]]
    pads = random.Random(f"codeloop-synthetic-st-pad:{task_id}")
    inputs = [_st_case(v, pads) for v in values]
    outputs = [_run(steps, agg[3], v) for v in values]
    return Task(task_id=task_id, prompt=f"(* {description} *)\n", entry_point="solve",
                canonical_solution=st_function(steps, agg_kind), description=description, inputs=tuple(inputs),
                outputs=tuple(outputs), language="st")


def _draw(split: str, n: int | None, seed: int, salt: str = "",
          language: str = "python") -> list[tuple[Task, str, list[Step], Any, str]]:
    """``n`` distinct tasks of ``split`` (None: its default size) with their shapes, steps, aggregates, domains."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    n = SPLITS[split] if n is None else n
    rng = random.Random(f"codeloop-synthetic{'-st' if language == 'st' else ''}:{seed}:{split}{salt}")
    out: list[tuple[Task, str, list[Step], Any, str]] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 200 * n + 1000:
            raise RuntimeError(f"could not draw {n} distinct {split} tasks")
        domain = "st" if language == "st" else "ints" if rng.random() < 0.7 else "str"
        shape, steps, agg = _make(rng, domain)
        if _split_of(shape, seed) != split:
            continue
        if domain == "st":
            task = _st_task(f"synthetic-st/{split}/{len(out)}", steps, agg, shape.rsplit(">", 1)[1], rng)
            if len(set(task.outputs or ())) == 1:  # e.g. "keep values above 1, then below 1": a constant passes
                continue
        else:
            task = _task(f"synthetic-python/{split}/{len(out)}", steps, agg, domain, rng)
        if task.prompt not in seen:
            seen.add(task.prompt)
            out.append((task, shape, steps, agg, domain))
    return out


def _plus(task: Task, steps: list[Step], agg: Any, domain: str, seed: int) -> Task:
    """The task with ``PLUS_CASES`` cases: its own, then more from a per-task generator (so the base
    tasks, and every other task's cases, are the same whether or not plus tests are drawn)."""
    assert task.inputs is not None and task.outputs is not None  # every synthetic task has I/O cases
    rng = random.Random(f"codeloop-synthetic-plus:{seed}:{task.task_id}")
    make_input = _str_input_plus if domain == "str" else _int_input_plus
    values: list[Any] = [make_input(rng) for _ in range(PLUS_CASES - len(task.inputs))]
    outputs = [_run(steps, agg[3], value) for value in values]
    extra = [_st_case(v, rng) for v in values] if domain == "st" else [[v] for v in values]
    return dataclasses.replace(task, inputs=task.inputs + tuple(extra), outputs=task.outputs + tuple(outputs))


def generate_with_shapes(split: str, n: int | None = None, seed: int = 0) -> list[tuple[Task, str]]:
    """``n`` distinct tasks (by prompt) of ``split`` with their shapes, deterministic in ``seed``."""
    return [(task, shape) for task, shape, *_ in _draw(split, n, seed)]


def _render(steps: list[Step], agg: Any, domain: str) -> str:
    """An attempt as text: a Python body, or for ST the whole function."""
    if domain == "st":
        return st_function(steps, next(k for k, v in _ST_AGGREGATE_TABLE.items() if v is agg))
    return _body(steps, agg[2])


def _wrong_attempt(rng: random.Random, steps: list[Step], agg: Any, domain: str) -> tuple[list[Step], Any] | str:
    """A plausible mistake: a step dropped or re-drawn, another aggregate, or broken syntax (a str)."""
    kind = rng.choice(["drop", "redraw", "aggregate", "syntax"] if len(steps) > 1 else ["redraw", "aggregate", "syntax"])
    if kind == "syntax":
        body = _render(steps, agg, domain)
        cut = rng.randrange(len(body) // 3, len(body) - 2)
        return body[:cut].rstrip() + "\n"
    if kind == "drop":
        i = rng.randrange(len(steps))
        return steps[:i] + steps[i + 1:], agg
    if kind == "redraw":
        table = _str_transforms(rng) if domain == "str" else _int_transforms(rng)
        i = rng.randrange(len(steps))
        return steps[:i] + [table[rng.choice(sorted(table))]()] + steps[i + 1:], agg
    aggregates: dict[str, tuple[str, str, str, Callable[[Any], Any]]]
    if domain == "str":
        aggregates = _str_aggregates(rng)
    else:
        aggregates = _ST_AGGREGATE_TABLE if domain == "st" else _INT_AGGREGATES
    return steps, aggregates[rng.choice(sorted(aggregates))]


def python_syntax_error(program: str) -> str | None:
    """What the sandbox says about a Python program that does not compile, or None (compiled, never run)."""
    try:
        compile(program, "<sample>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    return None


def _feedback(task: Task, attempt: tuple[list[Step], Any] | str, domain: str,
              compile_error: Callable[[str], str | None]) -> tuple[str, str] | None:
    """(attempt, feedback in the sandbox's words), or None when the attempt is in fact right."""
    if isinstance(attempt, str):
        message = compile_error(task.prompt + attempt)
        return None if message is None else (attempt, execution_feedback("compile_error", message))
    steps, agg = attempt
    assert task.inputs is not None and task.outputs is not None
    failed: list[str] = []
    for inp, expected in zip(task.inputs, task.outputs):
        try:
            got = _run(steps, agg[3], inp[0][:inp[1]] if domain == "st" else inp[0])
        except Exception as exc:  # noqa: BLE001 - our own step functions, e.g. max() of nothing
            return _render(steps, agg, domain), execution_feedback("runtime_error", f"case {len(failed) + 1}: {type(exc).__name__}: {exc}")
        if got != expected:
            failed.append(describe_failure(inp, expected, got))
    if not failed:
        return None
    return _render(steps, agg, domain), execution_feedback("failed", f"{len(failed)}/{len(task.inputs)} cases failed; first: {failed[0]}")


def repair_examples(n: int, split: str = "train", seed: int = 0, language: str = "python",
                    compile_error: Callable[[str], str | None] | None = None) -> list[tuple[str, str]]:
    """``n`` (repair prompt, correct answer) pairs built from wrong attempts at ``split`` tasks, in the
    self-refinement prompt format of ``language``. ``compile_error(program)`` says what the compiler
    says about a broken attempt (None: it compiles); Python's is built in, ST's is the checker in
    ``codeloop.languages.st``, which this layer may not import, so the caller passes it."""
    if compile_error is None:
        if language != "python":
            raise ValueError(f"repair_examples for {language!r} needs compile_error (the language's checker)")
        compile_error = python_syntax_error
    rng = random.Random(f"codeloop-repair{'-st' if language == 'st' else ''}:{seed}:{split}")
    pairs: list[tuple[str, str]] = []
    pool = _draw(split, max(n, 1), seed, salt=":repair", language=language)
    for task, _, steps, agg, domain in pool * 3:
        if len(pairs) == n:
            break
        found = _feedback(task, _wrong_attempt(rng, steps, agg, domain), domain, compile_error)
        if found is not None:
            pairs.append((repair_prompt(task.prompt, found[0], found[1], language), task.canonical_solution or ""))
    return pairs


def generate(split: str, n: int | None = None, seed: int = 0, plus: bool = False, language: str = "python") -> dict[str, Task]:
    """``n`` distinct tasks of ``split`` (default size: ``SPLITS``), deterministic in ``seed``; with
    ``plus``, the same tasks with ``PLUS_CASES`` cases each; ``language`` "st" for the integer tasks
    with a scalar result, written in Structured Text."""
    if language not in FAMILIES.values():
        raise ValueError(f"unknown language {language!r}; expected {' or '.join(FAMILIES.values())}")
    drawn = _draw(split, n, seed, language=language)
    if plus:
        return {t.task_id: _plus(t, steps, agg, domain, seed) for t, _, steps, agg, domain in drawn}
    return {t.task_id: t for t, *_ in drawn}


FAMILIES = {"synthetic-python": "python", "synthetic-st": "st"}
"""Task-set names and their language (each also with ``+`` for the stricter tests)."""


def spellings() -> list[str]:
    """How each family's task sets are named, for messages: ``synthetic-python[+]:{train,dev,test}[:N]``, ..."""
    return [f"{family}[+]:{{{','.join(SPLITS)}}}[:N]" for family in FAMILIES]


def load(name: str) -> dict[str, Task]:
    """``synthetic-python:SPLIT[:N]`` or ``synthetic-st:SPLIT[:N]``, with ``+`` after the family name
    for the stricter tests."""
    parts = name.split(":")
    if len(parts) not in (2, 3) or parts[0].removesuffix("+") not in FAMILIES:
        raise ValueError(f"expected {' or '.join(spellings())}, got {name!r}")
    if parts[1] not in SPLITS:
        raise ValueError(f"{name!r}: unknown split {parts[1]!r}; expected one of {', '.join(SPLITS)}")
    if len(parts) == 3 and not (parts[2].isascii() and parts[2].isdigit() and int(parts[2]) > 0):
        raise ValueError(f"{name!r}: the size after the second ':' must be a positive whole number, got {parts[2]!r}")
    return generate(parts[1], int(parts[2]) if len(parts) == 3 else None, plus=parts[0].endswith("+"),
                    language=FAMILIES[parts[0].removesuffix("+")])
