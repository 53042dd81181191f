"""IEC 61131-3 Structured Text: parser, checker (the compiler expert) and interpreter."""

from __future__ import annotations

import ast

import pytest

from codeloop.eval.evaluate import job_for
from codeloop.feedback.compiler import compiles
from codeloop.languages import st
from codeloop.languages.st.syntax import parse, tokenize
from codeloop.types import Sample, Task


def fn(body: str, decls: str = "", ret: str = "INT", name: str = "F") -> str:
    return f"FUNCTION {name} : {ret}\n{decls}\n{body}\nEND_FUNCTION\n"


def run(source: str, name: str, *args: object) -> object:
    return st.entry(source, name)(*args)


def first_error(source: str) -> st.Diagnostic:
    errors = st.errors(source)
    assert errors, f"expected an error in:\n{source}"
    return errors[0]


# ---- lexing and parsing ----------------------------------------------------------------------------

def test_tokens_numbers_strings_times_and_comments() -> None:
    tokens = tokenize("16#FF 2#1010 8#17 1_000 1.5E2 T#1h2m3s4ms t#-250ms 'it$'s$N' (* a (* nested *) *) // x\n/* y */ z")
    values = [t.value for t in tokens if t.kind != "eof"]
    assert values == [255, 10, 15, 1000, 150.0, 3_723_004, -250, "it's\n", "Z"]


def test_keywords_and_names_are_case_insensitive() -> None:
    source = "function f : int\nvar_input A : Int; end_var\nIf a > 0 Then F := A; Else f := -a; End_If\nend_function"
    assert st.check(source) == []
    assert run(source, "F", -4) == 4


@pytest.mark.parametrize("source, line, fragment", [
    (fn("IF TRUE THEN F := 1;"), 4, "expected ELSIF or ELSE or END_IF, found 'END_FUNCTION'"),
    (fn("F = 1;"), 3, "expected ':=' (assignment), found '=' (comparison)"),
    (fn("F := 1"), 4, "expected ';' after the assignment"),
    ("FUNCTION F : INT\n(* never closed\nEND_FUNCTION", 2, "comment '(*' is never closed"),
    ("", 1, "the program is empty"),
    (fn("F := 'abc$Q';"), 3, "unknown escape"),
    (fn("F := T#5x;"), 3, "malformed time literal"),
    (fn("F := " + "9" * 5000 + ";"), 3, "integer literal of 5000 digits is too long"),
    (fn("F := 2#" + "1" * 5000 + ";"), 3, "integer literal of 5000 digits is too long"),
    (fn("p := ADR(x);", "VAR p : POINTER TO INT; x : INT; END_VAR"), 2, "pointers are not supported"),
    ("FUNCTION F : INT\nF := 1;\nEND_FUNCTION_BLOCK", 3, "expected END_FUNCTION, found 'END_FUNCTION_BLOCK'"),
])
def test_syntax_errors_name_line_and_reason(source: str, line: int, fragment: str) -> None:
    error = first_error(source)
    assert error.line == line and fragment in error.message, error


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    source = fn("F := " + "(" * 400 + "1" + ")" * 400 + ";")
    assert "nested more than" in first_error(source).message
    nested_ifs = fn("IF TRUE THEN " * 300 + "F := 1;" + " END_IF" * 300)
    assert "nested more than" in first_error(nested_ifs).message
    for op in ("+", " AND ", " OR ", "*"):  # a long chain builds a deep tree too: refused, not a RecursionError
        assert "nested more than" in first_error(fn("F := " + op.join(["1"] * 5000) + ";")).message
    assert st.errors(fn("F := " + "+".join(["1"] * 150) + ";", ret="DINT")) == []  # long real-world sums still check


# ---- the checker -----------------------------------------------------------------------------------

DECLS = "VAR_INPUT a : INT; r : REAL; b : BOOL; s : STRING; END_VAR\nVAR CONSTANT K : INT := 3; END_VAR\nVAR arr : ARRAY[1..3] OF INT; t : TON; END_VAR"


@pytest.mark.parametrize("body, fragment", [
    ("F := a + b;", "'+' needs numbers, not INT and BOOL"),
    ("F := r;", "cannot store REAL in INT without a conversion (e.g. REAL_TO_INT)"),
    ("IF a THEN F := 1; END_IF", "the IF condition must be BOOL, not INT"),
    ("x := 1;", "'x' is not declared"),
    ("EXIT;", "EXIT outside a loop"),
    ("F := NOPE(a);", "unknown function 'NOPE'"),
    ("K := 4;", "cannot assign to constant 'K'"),
    ("F := arr[4];", "index 4 is outside the array's range 1..3"),
    ("F := arr[1, 2];", "2 indices for an array of 1 dimension(s)"),
    ("t.Q := TRUE;", "cannot assign to output 'Q' of a function block instance"),
    ("F := LIMIT(0, a);", "LIMIT takes 3 argument(s), 2 given"),
    ("F := SQRT(s);", "SQRT: IN must be a number, not STRING"),
    ("F := 40000;", "constant 40000 does not fit INT"),
    ("s := s + 'x';", "use CONCAT for strings"),
    ("F := t;", "cannot store TON in INT"),
    ("t(IN := b, PT := 5);", "cannot store an integer literal in TIME"),
    ("t(IN := b, XX := T#1s);", "'TON' has no parameter 'XX'"),
    ("F := t(IN := b);", "a function block call has no value"),
    ("CASE a OF 1: F := 1; 1: F := 2; END_CASE", "CASE label repeats an earlier one"),
    ("WHILE a DO END_WHILE", "the WHILE condition must be BOOL"),
    ("F := TON;", "'TON' is a type, not a variable"),
    ("FOR r := 1 TO 3 DO END_FOR", "the FOR variable must be an integer, not REAL"),
])
def test_checker_errors(body: str, fragment: str) -> None:
    error = first_error(fn(body, DECLS))
    assert fragment in error.message and error.line >= 5, error


def test_checker_reports_every_error_with_its_position() -> None:
    source = fn("F := a + b;\nF := r;\nx := 1;", DECLS)
    lines = [(d.line, d.col) for d in st.errors(source)]
    assert lines == [(5, 8), (6, 6), (7, 1)]


def test_many_case_labels_check_quickly_and_overlaps_are_found() -> None:
    import time

    labels = "\n".join(f"{i}: F := {i % 7};" for i in range(20000))
    start = time.perf_counter()
    assert st.errors(fn(f"CASE a OF\n{labels}\nEND_CASE", "VAR_INPUT a : DINT; END_VAR")) == []
    assert time.perf_counter() - start < 20  # pairwise comparison would be 2e8 steps
    overlap = fn("CASE a OF 1..5: F := 1; 7: F := 2; 3: F := 3; END_CASE", "VAR_INPUT a : INT; END_VAR")
    error = first_error(overlap)
    assert error.message == "CASE label repeats an earlier one" and error.col == 36  # the "3" inside 1..5


def test_recursion_and_duplicates_are_rejected() -> None:
    rec = fn("F := G(a);", "VAR_INPUT a : INT; END_VAR") + fn("G := F(a);", "VAR_INPUT a : INT; END_VAR", name="G")
    assert "recursion" in first_error(rec).message
    assert "'a' is declared twice" in first_error(fn("F := 1;", "VAR a : INT; a : INT; END_VAR")).message
    assert "already defined" in first_error(fn("F := 1;") + fn("F := 2;")).message


def test_structures_that_contain_themselves_are_rejected() -> None:
    source = "TYPE A : STRUCT b : B; END_STRUCT; B : STRUCT a : ARRAY[1..2] OF A; END_STRUCT; END_TYPE\n" + fn("F := 1;")
    assert [d.message for d in st.errors(source)] == ["structure 'A' contains itself"]


def test_narrowing_is_a_warning_and_still_compiles() -> None:
    source = fn("F := d;", "VAR_INPUT d : DINT; END_VAR")
    diagnostics = st.check(source)
    assert [d.severity for d in diagnostics] == ["warning"] and "may lose data" in diagnostics[0].message
    assert st.errors(source) == [] and compiles(source, "st").score == 1.0
    assert run(source, "F", 70000) == 70000 - 65536  # wraps like a PLC


def test_huge_arrays_are_refused_at_check_time() -> None:
    source = fn("F := 1;", "VAR x : ARRAY[1..100000, 1..100000] OF LREAL; END_VAR")
    assert "more than 10,000,000" in first_error(source).message


# ---- the interpreter -------------------------------------------------------------------------------

@pytest.mark.parametrize("expr, ret, expected", [
    ("32767 + a", "INT", -32768),  # stored into INT: wraps
    ("-7 / 2", "INT", -3),  # integer division truncates toward zero
    ("-7 MOD 2", "INT", -1),  # MOD takes the dividend's sign
    ("REAL_TO_INT(2.5)", "INT", 3),  # rounds half away from zero
    ("REAL_TO_INT(-2.5)", "INT", -3),
    ("TRUNC(-2.7)", "DINT", -2),
    ("2 ** 10", "DINT", 1024),
    ("SHL(BYTE#16#81, 1)", "BYTE", 2),
    ("ROL(BYTE#16#81, 1)", "BYTE", 3),
    ("NOT BYTE#0", "BYTE", 255),
    ("16#F0 AND 16#3C", "INT", 0x30),
    ("MAX(3, a, 9, -2)", "INT", 9),
    ("LIMIT(0, 150, 100)", "INT", 100),
    ("SEL(TRUE, 1, 2)", "INT", 2),
    ("MUX(2, 10, 20, 30)", "INT", 30),
    ("LEN(CONCAT('ab', 'cd', 'e'))", "INT", 5),
    ("FIND('hello', 'll')", "INT", 3),
    ("MID('abcdef', 2, 3)", "STRING", "cd"),
    ("LEFT('abcdef', 2)", "STRING", "ab"),
    ("RIGHT('abcdef', 2)", "STRING", "ef"),
    ("INT_TO_STRING(a)", "STRING", "1"),
    ("STRING_TO_INT('42')", "INT", 42),
    ("TIME_TO_DINT(T#1m30s)", "DINT", 90_000),
    ("1.0 / 3.0", "REAL", 0.3333333432674408),  # single precision
    ("1.0 / 3.0", "LREAL", 1 / 3),
    ("INT_TO_REAL(a) / 2", "REAL", 0.5),
    ("a > 0 AND a < 2", "BOOL", True),
])
def test_expression_semantics(expr: str, ret: str, expected: object) -> None:
    source = fn(f"F := {expr};", "VAR_INPUT a : INT; END_VAR", ret=ret)
    assert st.errors(source) == []
    assert run(source, "F", 1) == expected


def test_control_flow() -> None:
    source = fn("""
FOR i := 10 TO 1 BY -1 DO
  IF i = 8 THEN CONTINUE; END_IF
  IF i = 3 THEN EXIT; END_IF
  total := total + i;
END_FOR
WHILE n < 5 DO n := n + 1; END_WHILE
REPEAT n := n * 2; UNTIL n > 30 END_REPEAT
CASE n OF
  1..9: F := -1;
  40, 41: F := total + n;
ELSE F := 0;
END_CASE
RETURN;
F := 999;""", "VAR i, total, n : INT; END_VAR")
    # total = 10+9+7+6+5+4 = 41; n: 5 -> 10 -> 20 -> 40
    assert run(source, "F") == 81


def test_enums_structs_and_arrays() -> None:
    source = """
TYPE
  Mode : (Off, Manual, Auto := 5);
  Point : STRUCT x : INT; y : INT := 7; END_STRUCT;
END_TYPE
FUNCTION Walk : INT
VAR_INPUT pts : ARRAY[0..2] OF Point; m : Mode; END_VAR
VAR grid : ARRAY[1..2, 1..3] OF INT := [1, 2, 3, 2(9)]; i : INT; p : Point := (x := 4); END_VAR
FOR i := 0 TO 2 DO Walk := Walk + pts[i].x * pts[i].y; END_FOR
IF m = Mode#Auto THEN Walk := Walk + grid[2, 2] + p.y + p.x; END_IF
CASE m OF Manual: Walk := -Walk; END_CASE
END_FUNCTION
"""
    assert st.check(source) == []
    pts = [{"x": 1, "y": 2}, {"x": 3}, {"x": 0, "y": 0}]
    assert run(source, "Walk", pts, "Auto") == 2 + 21 + 9 + 7 + 4
    assert run(source, "Walk", pts, "Mode#Manual") == -23
    with pytest.raises(ValueError, match=r"Walk\.m: 'Fast' is not a valid Mode"):
        run(source, "Walk", pts, "Fast")
    with pytest.raises(ValueError, match=r"Walk\.pts\[1\]: Point has no field 'z'"):
        run(source, "Walk", [{"x": 1}, {"z": 1}, {}], "Off")


def test_outputs_in_outs_and_formal_calls() -> None:
    source = """
FUNCTION DivMod : BOOL
VAR_INPUT a, b : DINT; END_VAR
VAR_OUTPUT q, r : DINT; END_VAR
IF b = 0 THEN RETURN; END_IF
q := a / b; r := a MOD b; DivMod := TRUE;
END_FUNCTION
FUNCTION Swap
VAR_IN_OUT x, y : INT; END_VAR
VAR t : INT; END_VAR
t := x; x := y; y := t;
END_FUNCTION
FUNCTION Main : DINT
VAR p, s : INT; ok : BOOL; qq, rr : DINT; END_VAR
p := 1; s := 2;
Swap(x := p, y := s);
ok := DivMod(a := 17, b := 5, q => qq, r => rr);
Main := p * 1000 + s * 100 + qq * 10 + rr;
END_FUNCTION
"""
    assert st.errors(source) == []
    assert run(source, "Main") == 2000 + 100 + 30 + 2
    assert run(source, "DivMod", 17, 5) == {"q": 3, "r": 2, "DivMod": True}
    assert run(source, "Swap", 1, 2) == {"x": 2, "y": 1}


def test_function_blocks_keep_state_and_timers_follow_the_clock() -> None:
    source = """
FUNCTION_BLOCK Station
VAR_INPUT start, part : BOOL; END_VAR
VAR_OUTPUT running, done : BOOL; parts : INT; elapsed : TIME; END_VAR
VAR count : CTU; edge : R_TRIG; timer : TON; END_VAR
edge(CLK := part);
count(CU := part, R := NOT start, PV := 3);
timer(IN := start, PT := T#1s);
running := start AND NOT count.Q;
done := count.Q OR timer.Q;
parts := count.CV;
elapsed := timer.ET;
END_FUNCTION_BLOCK
"""
    cycles = [{"start": True}, {"part": True, "@ms": 100}, {"part": False}, {"part": True, "@ms": 300},
              {"part": False, "@ms": 400}, {"part": True}, {"@ms": 500}, {"start": False, "part": False}]
    out = run(source, "Station", cycles)
    assert [c["parts"] for c in out] == [0, 1, 1, 2, 2, 3, 3, 0]
    assert [c["done"] for c in out] == [False, False, False, False, False, True, True, False]
    assert [c["elapsed"] for c in out] == [0, 100, 100, 400, 800, 800, 1000, 0]
    assert out[0]["running"] and not out[5]["running"]
    with pytest.raises(ValueError, match="no input named 'speed'"):
        run(source, "Station", [{"speed": 1}])


def test_block_instances_in_arrays_and_structures_can_be_called() -> None:
    source = """
TYPE Pair : STRUCT edge : R_TRIG; END_STRUCT; END_TYPE
FUNCTION_BLOCK Edges
VAR_INPUT a, b : BOOL; END_VAR
VAR_OUTPUT n : INT; END_VAR
VAR trig : ARRAY[1..2] OF R_TRIG; p : Pair; name : STRING(4) := 'abcdef'; END_VAR
trig[1](CLK := a); trig[2](CLK := b); p.edge(CLK := a AND b);
IF trig[1].Q THEN n := n + 1; END_IF;
IF trig[2].Q THEN n := n + 10; END_IF;
IF p.edge.Q THEN n := n + 100; END_IF;
IF LEN(name) <> 4 THEN n := -1; END_IF;
END_FUNCTION_BLOCK
"""
    assert st.errors(source) == []
    out = run(source, "Edges", [{"a": True}, {"b": True}, {"a": False}, {"a": True, "b": False}])
    assert [c["n"] for c in out] == [1, 111, 111, 112]


def test_runtime_faults_name_the_line() -> None:
    source = fn("F := a / (a - a);", "VAR_INPUT a : INT; END_VAR")
    with pytest.raises(st.STRuntimeError, match="line 3: division by zero"):
        run(source, "F", 2)
    indexed = fn("F := xs[a];", "VAR_INPUT a : INT; END_VAR\nVAR xs : ARRAY[1..3] OF INT; END_VAR")
    with pytest.raises(st.STRuntimeError, match=r"line 4: index 9 is outside the array's range 1\.\.3"):
        run(indexed, "F", 9)


def test_a_program_with_errors_does_not_load() -> None:
    with pytest.raises(st.STCompileError, match="'x' is not declared"):
        st.entry(fn("F := x;"), "F")


# ---- evaluation through the sandbox ----------------------------------------------------------------

def st_task(**kw: object) -> Task:
    base = dict(task_id="st/max3", prompt="(* the largest of three *)\n", entry_point="Max3", language="st",
                inputs=((1, 7, 3), (-5, -2, -9)), outputs=(7, -2))
    base.update(kw)
    return Task(**base)  # type: ignore[arg-type]


MAX3 = "FUNCTION Max3 : INT\nVAR_INPUT a, b, c : INT; END_VAR\n{body}\nEND_FUNCTION\n"


def test_st_job_is_checked_in_the_parent_and_the_wrapper_is_inert() -> None:
    bad = job_for(st_task(), Sample("st/max3", MAX3.format(body="Max3 := a + TRUE;")))
    assert bad.rejected == "4:11: error: '+' needs numbers, not INT and BOOL"  # the prompt's comment is line 1
    # A completion full of Python syntax stays an ST string: the wrapper is always the same two statements.
    hostile = "FUNCTION Max3 : INT\n(* ''' \"\"\" \\ \n import os; os._exit(0) *)\nMax3 := 1;\nEND_FUNCTION\n"
    job = job_for(st_task(), Sample("st/max3", hostile))
    assert job.rejected == ""
    tree = ast.parse(job.program)
    assert [type(n).__name__ for n in tree.body] == ["ImportFrom", "Assign"]
    source = tree.body[1].value.args[0].value  # type: ignore[attr-defined]
    assert source == st_task().prompt + hostile


def test_st_samples_get_every_status_in_the_sandbox() -> None:
    from codeloop.eval import evaluate
    from codeloop.sandbox import Sandbox

    bodies = {"passed": "Max3 := MAX(a, b, c);", "failed": "Max3 := a;", "compile_error": "Max3 := a + TRUE;",
              "timeout": "WHILE TRUE DO a := a + 1; END_WHILE", "runtime_error": "Max3 := a / (b - b);"}
    samples = [Sample("st/max3", MAX3.format(body=b)) for b in bodies.values()]
    with Sandbox(workers=1, timeout_s=1.0) as sandbox:
        outcomes = evaluate({"st/max3": st_task()}, samples, sandbox)
    assert [o.status.value for o in outcomes] == list(bodies)
    assert "division by zero" in outcomes[4].reason
    assert outcomes[1].reason.startswith("failed: 2/2") or "expected 7 got 1" in outcomes[1].reason


def test_compiler_expert_speaks_st() -> None:
    good = compiles(MAX3.format(body="Max3 := MAX(a, b, c);"), "st")
    bad = compiles(MAX3.format(body="Max3 := d;"), "st")
    assert good.score == 1.0 and bad.score == 0.0 and "'d' is not declared" in bad.reason
    with pytest.raises(ValueError, match="no built-in compiler for language 'cobol'"):
        compiles("x", "cobol")


def test_parse_keeps_every_unit() -> None:
    unit = parse(MAX3.format(body="Max3 := a;") + "TYPE E : (A, B); END_TYPE\nPROGRAM Main\nEND_PROGRAM\n")
    assert [p.name for p in unit.pous] == ["Max3", "Main"] and [t.name for t in unit.types] == ["E"]


def test_check_command_prints_file_line_col_and_exits_1_on_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from codeloop.cli import app

    good, bad = tmp_path / "good.st", tmp_path / "bad.st"
    good.write_text(MAX3.format(body="Max3 := MAX(a, b, c);"))
    bad.write_text(MAX3.format(body="Max3 := d;\nMax3 := DINT#5;"))
    runner = CliRunner()
    result = runner.invoke(app, ["check", str(good), str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:3:9: error: 'd' is not declared" in result.output
    assert runner.invoke(app, ["check", str(good)]).exit_code == 0
    assert runner.invoke(app, ["check", str(tmp_path / "missing.st")]).exit_code == 2
    assert runner.invoke(app, ["check", str(tmp_path / "x.c")]).exit_code == 2


def test_sandbox_preload_loads_modules_before_samples_fork() -> None:
    from codeloop.eval import preload_for
    from codeloop.sandbox import Job, Sandbox, SandboxError

    probe = Job(program="import sys\ndef loaded():\n    return 'codeloop.languages.st' in sys.modules\n",
                entry_point="loaded", inputs=((),), outputs=(True,))
    assert preload_for([st_task()]) == ("codeloop.languages.st",) and preload_for([Task("t", "")]) == ()
    with Sandbox(workers=1, preload=preload_for([st_task()])) as sandbox:
        assert sandbox.run_one(probe).passed
    with Sandbox(workers=1) as sandbox:
        assert not sandbox.run_one(probe).passed  # nothing extra in the zygote of a plain sandbox
    with pytest.raises(ValueError, match="module names"):
        Sandbox(preload=["os; rm -rf"])
    with pytest.raises(SandboxError, match="preload 'codeloop_no_such_module' failed"):
        with Sandbox(workers=1, preload=["codeloop_no_such_module"]) as sandbox:
            sandbox.run_one(probe)


def test_the_parent_side_checker_never_raises_on_mangled_programs() -> None:
    """The evaluator checks untrusted ST in the trusted parent: whatever the text, diagnostics, never an exception."""
    import json
    import random
    from importlib import resources

    from codeloop.languages.st.syntax import KEYWORDS

    lines = resources.files("codeloop.data").joinpath("st_plc.jsonl").read_text().splitlines()
    sources = [json.loads(line)["canonical_solution"] for line in lines]
    vocab = [*sorted(KEYWORDS), ":=", "=>", "(", ")", "[", "]", ";", ":", ",", ".", "..", "+", "-", "*", "/", "=",
             "<>", "#", "x", "TON", "INT", "1", "2.5", "T#1s", "'s'", "16#FF", "INT#3", "\n"]
    rng = random.Random(0)
    programs = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 60))) for _ in range(600)]
    for _ in range(1200):
        s, t = rng.choice(sources), rng.choice(sources)
        a = rng.randrange(len(s))
        b, c = min(len(s), a + rng.randint(1, 30)), rng.randrange(len(t))
        programs.append(rng.choice([s[:a] + s[b:], s[:a] + rng.choice(vocab) + " " + s[a:], s[:a] + t[c:c + 40] + s[b:]]))
    verdicts = [bool(st.errors(p)) for p in programs]  # raises on any crash
    assert 0 < sum(not v for v in verdicts) < sum(verdicts)  # some mangled programs still compile; most do not
