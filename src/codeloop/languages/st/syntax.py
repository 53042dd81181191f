"""IEC 61131-3 Structured Text: tokens, syntax tree and a recursive-descent parser.

The subset is the one PLC code generators write (and the online-DPO paper's tasks use): FUNCTION,
FUNCTION_BLOCK and PROGRAM units; TYPE declarations of structures and enumerations; VAR / VAR_INPUT /
VAR_OUTPUT / VAR_IN_OUT / VAR_TEMP / VAR CONSTANT sections; elementary types, STRING[n] and
multi-dimensional ARRAY[lo..hi] OF T; IF, CASE, FOR, WHILE, REPEAT, EXIT, CONTINUE, RETURN; calls with
positional or formal (``IN := x``, ``Q => y``) arguments. Keywords and names are case-insensitive.
Not supported (reported as errors, never silently accepted): pointers and references, methods,
interfaces, ACTIONs, SFC, IL and LD.

Every error is a :class:`STError` naming the line and column; the parser stops at the first one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MAX_NESTING = 200  # expressions and statements nested deeper than this are an error, not a RecursionError


class STError(Exception):
    """A syntax or semantic error at a line and column of the program."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(f"line {line}:{col}: {message}")
        self.line, self.col, self.message = line, col, message


KEYWORDS = frozenset("""
FUNCTION END_FUNCTION FUNCTION_BLOCK END_FUNCTION_BLOCK PROGRAM END_PROGRAM VAR VAR_INPUT VAR_OUTPUT
VAR_IN_OUT VAR_TEMP VAR_GLOBAL VAR_EXTERNAL END_VAR CONSTANT RETAIN NON_RETAIN IF THEN ELSIF ELSE END_IF
CASE OF END_CASE FOR TO BY DO END_FOR WHILE END_WHILE REPEAT UNTIL END_REPEAT EXIT CONTINUE RETURN AND OR
XOR NOT MOD TRUE FALSE ARRAY STRING WSTRING TYPE END_TYPE STRUCT END_STRUCT POINTER REF_TO METHOD
END_METHOD INTERFACE ACTION END_ACTION
""".split())

UNSUPPORTED = {"POINTER": "pointers", "REF_TO": "references", "METHOD": "methods", "INTERFACE": "interfaces",
               "ACTION": "actions", "VAR_GLOBAL": "global variables", "VAR_EXTERNAL": "external variables"}


@dataclass(frozen=True)
class Token:
    kind: str  # "name", "keyword", "int", "real", "string", "time", "op", "eof"
    text: str  # as written (upper-cased for keywords and names' ``key``)
    value: Any
    line: int
    col: int

    @property
    def key(self) -> str:
        return self.text.upper()


_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n\f]+)
  | (?P<line_comment>//[^\n]*)
  | (?P<time>(?:T|TIME|LT|LTIME)\#[-+]?[0-9_.a-zA-Z]+)
  | (?P<based>(?:2|8|16)\#[0-9A-Fa-f_]+)
  | (?P<real>[0-9][0-9_]*\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+)
  | (?P<int>[0-9][0-9_]*)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>'(?:[^'$\n]|\$.)*'|"(?:[^"$\n]|\$.)*")
  | (?P<op>:=|=>|<=|>=|<>|\*\*|\.\.|[-+*/=<>()\[\],;:.\#&^])
""", re.VERBOSE | re.IGNORECASE)

_TIME_UNIT = re.compile(r"([0-9][0-9_]*(?:\.[0-9_]+)?)(ms|us|ns|d|h|m|s)", re.IGNORECASE)
_TIME_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1, "us": 1e-3, "ns": 1e-6}
_ESCAPES = {"$": "$", "'": "'", '"': '"', "L": "\n", "N": "\n", "P": "\f", "R": "\r", "T": "\t"}


def _time_ms(text: str, line: int, col: int) -> int:
    """``T#1h2m3s4ms`` → milliseconds (TIME values are whole milliseconds here)."""
    body = text.split("#", 1)[1].replace("_", "")
    sign = -1 if body.startswith("-") else 1
    body = body.lstrip("+-")
    pos, total = 0, 0.0
    for m in _TIME_UNIT.finditer(body):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _TIME_MS[m.group(2).lower()]
        pos = m.end()
    if pos != len(body) or not body:
        raise STError(line, col, f"malformed time literal {text!r}")
    return sign * int(round(total))


def _unescape(text: str, line: int, col: int) -> str:
    out, i, body = [], 0, text[1:-1]
    while i < len(body):
        ch = body[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1:i + 2]
        if nxt.upper() in _ESCAPES:
            out.append(_ESCAPES[nxt.upper()])
            i += 2
        elif re.fullmatch(r"[0-9A-Fa-f]{2}", body[i + 1:i + 3]):
            out.append(chr(int(body[i + 1:i + 3], 16)))
            i += 3
        else:
            raise STError(line, col, f"unknown escape '${nxt}' in string")
    return "".join(out)


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(source):
        col = pos - line_start + 1
        if source.startswith("(*", pos) or source.startswith("/*", pos):
            end = _comment_end(source, pos, line, col)
            text = source[pos:end]
        else:
            m = _TOKEN.match(source, pos)
            if not m:
                raise STError(line, col, f"unexpected character {source[pos]!r}")
            kind, text, end = m.lastgroup or "", m.group(), m.end()
            if kind == "name":
                key = text.upper()
                tokens.append(Token("keyword" if key in KEYWORDS else "name", text, key, line, col))
            elif kind == "int":
                if len(text) > 40:  # far beyond any ST integer type (and int() refuses 4,300 digits)
                    raise STError(line, col, f"integer literal of {len(text)} digits is too long")
                tokens.append(Token("int", text, int(text.replace("_", "")), line, col))
            elif kind == "based":
                base, digits = text.split("#")
                if len(digits) > 70:
                    raise STError(line, col, f"integer literal of {len(digits)} digits is too long")
                try:
                    tokens.append(Token("int", text, int(digits.replace("_", ""), int(base)), line, col))
                except ValueError:
                    raise STError(line, col, f"malformed number {text!r}") from None
            elif kind == "real":
                tokens.append(Token("real", text, float(text.replace("_", "")), line, col))
            elif kind == "time":
                tokens.append(Token("time", text, _time_ms(text, line, col), line, col))
            elif kind == "string":
                tokens.append(Token("string", text, _unescape(text, line, col), line, col))
            elif kind == "op":
                tokens.append(Token("op", text, text, line, col))
        newlines = text.count("\n")
        if newlines:
            line += newlines
            line_start = pos + text.rfind("\n") + 1
        pos = end
    tokens.append(Token("eof", "end of file", None, line, pos - line_start + 1))
    return tokens


def _comment_end(source: str, pos: int, line: int, col: int) -> int:
    """End of a (* *) or /* */ comment; (* *) comments nest."""
    if source.startswith("/*", pos):
        end = source.find("*/", pos + 2)
        if end < 0:
            raise STError(line, col, "comment '/*' is never closed")
        return end + 2
    depth, i = 0, pos
    while i < len(source):
        if source.startswith("(*", i):
            depth, i = depth + 1, i + 2
        elif source.startswith("*)", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    raise STError(line, col, "comment '(*' is never closed")


# ---- the syntax tree -------------------------------------------------------------------------------

@dataclass
class Node:
    line: int
    col: int


@dataclass
class Literal(Node):
    value: Any
    kind: str  # "int", "real", "bool", "string", "time"
    type_name: str | None = None  # INT#5 → "INT"


@dataclass
class Name(Node):
    name: str

    @property
    def key(self) -> str:
        return self.name.upper()


@dataclass
class Index(Node):
    base: Node
    indices: list[Node]


@dataclass
class Member(Node):
    base: Node
    name: str


@dataclass
class Arg:
    name: str | None  # formal parameter, or None for positional
    value: Node
    output: bool = False  # Q => target


@dataclass
class Call(Node):
    name: str  # function, function block instance or standard function
    args: list[Arg]
    target: Node | None = None  # a member call such as fb.inner(...) (the callee expression)


@dataclass
class Unary(Node):
    op: str  # "-", "+", "NOT"
    operand: Node


@dataclass
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass
class ArrayInit(Node):
    items: list[tuple[int, Node]]  # (repeat count, value)


@dataclass
class StructInit(Node):
    fields: list[tuple[str, Node]]


@dataclass
class Assign(Node):
    target: Node
    value: Node


@dataclass
class CallStmt(Node):
    call: Call


@dataclass
class If(Node):
    branches: list[tuple[Node, list[Node]]]
    orelse: list[Node]


@dataclass
class CaseArm:
    labels: list[tuple[Node, Node | None]]  # value, or (low, high) range
    body: list[Node]


@dataclass
class Case(Node):
    selector: Node
    arms: list[CaseArm]
    orelse: list[Node]


@dataclass
class For(Node):
    var: Name
    start: Node
    stop: Node
    step: Node | None
    body: list[Node]


@dataclass
class While(Node):
    cond: Node
    body: list[Node]


@dataclass
class Repeat(Node):
    body: list[Node]
    cond: Node


@dataclass
class Jump(Node):
    kind: str  # "EXIT", "CONTINUE", "RETURN"


@dataclass
class TypeRef(Node):
    name: str  # elementary or user type; "ARRAY"; "STRING"
    dims: list[tuple[Node, Node]] = field(default_factory=list)
    of: TypeRef | None = None
    length: Node | None = None  # STRING[n]


@dataclass
class VarDecl(Node):
    name: str
    type: TypeRef
    init: Node | None
    section: str  # VAR, VAR_INPUT, VAR_OUTPUT, VAR_IN_OUT, VAR_TEMP
    constant: bool = False


@dataclass
class Pou(Node):
    kind: str  # FUNCTION, FUNCTION_BLOCK, PROGRAM
    name: str
    return_type: TypeRef | None
    decls: list[VarDecl]
    body: list[Node]


@dataclass
class TypeDecl(Node):
    name: str
    kind: str  # "struct", "enum", "alias"
    fields: list[VarDecl] = field(default_factory=list)
    values: list[tuple[str, Node | None]] = field(default_factory=list)
    alias: TypeRef | None = None


@dataclass
class Unit:
    pous: list[Pou]
    types: list[TypeDecl]


# ---- the parser ------------------------------------------------------------------------------------

_SECTIONS = ("VAR", "VAR_INPUT", "VAR_OUTPUT", "VAR_IN_OUT", "VAR_TEMP")
_ENDS = {"FUNCTION": "END_FUNCTION", "FUNCTION_BLOCK": "END_FUNCTION_BLOCK", "PROGRAM": "END_PROGRAM"}
_CLOSERS = ("ELSE", "ELSIF", "UNTIL", "THEN", "DO", "OF", "TO", "BY")
_BINARY_LEVELS = [("OR",), ("XOR",), ("AND", "&"), ("=", "<>"), ("<", ">", "<=", ">="), ("+", "-"), ("*", "/", "MOD")]


def parse(source: str) -> Unit:
    """The syntax tree of a whole program, or an :class:`STError` at the first syntax error."""
    return _Parser(tokenize(source)).unit()


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens, self.pos, self.depth = tokens, 0, 0

    # -- helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def at(self, *keys: str) -> bool:
        t = self.tok
        return t.kind in ("keyword", "op") and t.key in keys

    def take(self) -> Token:
        t = self.tok
        self.pos += 1
        return t

    def expect(self, key: str, context: str = "") -> Token:
        if not self.at(key):
            where = f" {context}" if context else ""
            raise self.error(f"expected '{key}'{where}, found {self.describe(self.tok)}")
        return self.take()

    def accept(self, key: str) -> bool:
        if self.at(key):
            self.pos += 1
            return True
        return False

    def name(self, what: str) -> Token:
        t = self.tok
        if t.kind == "keyword" and t.key in UNSUPPORTED:
            raise self.error(f"{UNSUPPORTED[t.key]} are not supported")
        if t.kind != "name":
            raise self.error(f"expected {what}, found {self.describe(t)}")
        return self.take()

    @staticmethod
    def describe(t: Token) -> str:
        return "end of file" if t.kind == "eof" else f"'{t.text}'"

    def error(self, message: str, t: Token | None = None) -> STError:
        t = t or self.tok
        return STError(t.line, t.col, message)

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(f"nested more than {MAX_NESTING} levels deep")

    # -- units
    def unit(self) -> Unit:
        pous: list[Pou] = []
        types: list[TypeDecl] = []
        while self.tok.kind != "eof":
            if self.at("FUNCTION", "FUNCTION_BLOCK", "PROGRAM"):
                pous.append(self.pou())
            elif self.at("TYPE"):
                types.extend(self.type_block())
            elif self.tok.key in UNSUPPORTED:
                raise self.error(f"{UNSUPPORTED[self.tok.key]} are not supported")
            else:
                raise self.error(f"expected FUNCTION, FUNCTION_BLOCK, PROGRAM or TYPE, found {self.describe(self.tok)}")
        if not pous and not types:
            raise self.error("the program is empty: no FUNCTION, FUNCTION_BLOCK or PROGRAM")
        return Unit(pous, types)

    def pou(self) -> Pou:
        start = self.take()
        kind = start.key
        name = self.name(f"a name after {kind}")
        return_type = None
        if kind == "FUNCTION":
            if self.accept(":"):
                return_type = self.type_ref()
        decls: list[VarDecl] = []
        while self.at(*_SECTIONS) or self.tok.key in ("VAR_GLOBAL", "VAR_EXTERNAL"):
            decls.extend(self.var_block())
        body = self.statements(_ENDS[kind])
        self.expect(_ENDS[kind], f"to close {kind} {name.text} (line {start.line})")
        self.accept(";")
        return Pou(start.line, start.col, kind, name.text, return_type, decls, body)

    def var_block(self) -> list[VarDecl]:
        head = self.tok
        if head.key in UNSUPPORTED:
            raise self.error(f"{UNSUPPORTED[head.key]} are not supported")
        section = self.take().key
        constant = False
        while self.at("CONSTANT", "RETAIN", "NON_RETAIN"):
            constant |= self.take().key == "CONSTANT"
        decls: list[VarDecl] = []
        while not self.at("END_VAR"):
            if self.tok.kind == "eof" or self.tok.kind == "keyword":
                raise self.error(f"expected a variable name or END_VAR (for {section} at line {head.line}), "
                                 f"found {self.describe(self.tok)}")
            names = [self.name("a variable name")]
            while self.accept(","):
                names.append(self.name("a variable name"))
            self.expect(":", "after the variable name")
            type_ref = self.type_ref()
            init = self.initializer() if self.accept(":=") else None
            self.expect(";", "after the declaration")
            decls += [VarDecl(n.line, n.col, n.text, type_ref, init, section, constant) for n in names]
        self.take()
        self.accept(";")
        return decls

    def initializer(self) -> Node:
        t = self.tok
        if self.accept("["):
            items: list[tuple[int, Node]] = []
            while True:
                if self.tok.kind == "int" and self.peek().text == "(":
                    count = self.take().value
                    self.take()
                    value: Node = self.initializer() if not self.at(")") else Literal(t.line, t.col, None, "default")
                    self.expect(")", "to close the repeated initial value")
                    items.append((count, value))
                else:
                    items.append((1, self.initializer()))
                if not self.accept(","):
                    break
            self.expect("]", "to close the array's initial values")
            return ArrayInit(t.line, t.col, items)
        if self.at("(") and self.peek().kind == "name" and self.peek(2).text == ":=":
            self.take()
            fields: list[tuple[str, Node]] = []
            while True:
                fname = self.name("a field name")
                self.expect(":=", "after the field name")
                fields.append((fname.text, self.initializer()))
                if not self.accept(","):
                    break
            self.expect(")", "to close the structure's initial values")
            return StructInit(t.line, t.col, fields)
        return self.expression()

    def type_ref(self) -> TypeRef:
        t = self.tok
        if self.accept("ARRAY"):
            self.expect("[", "after ARRAY")
            dims = []
            while True:
                lo = self.expression()
                self.expect("..", "in the array's index range")
                dims.append((lo, self.expression()))
                if not self.accept(","):
                    break
            self.expect("]", "to close the array's index ranges")
            self.expect("OF", "after the array's index ranges")
            return TypeRef(t.line, t.col, "ARRAY", dims=dims, of=self.type_ref())
        if self.at("STRING", "WSTRING"):
            self.take()
            length = None
            if self.at("[", "("):
                closer = "]" if self.take().text == "[" else ")"
                length = self.expression()
                self.expect(closer, "to close the string's length")
            return TypeRef(t.line, t.col, "STRING", length=length)
        name = self.name("a type name")
        return TypeRef(t.line, t.col, name.key)

    def type_block(self) -> list[TypeDecl]:
        self.take()
        decls: list[TypeDecl] = []
        while not self.at("END_TYPE"):
            name = self.name("a type name")
            self.expect(":", "after the type name")
            if self.accept("STRUCT"):
                fields: list[VarDecl] = []
                while not self.at("END_STRUCT"):
                    fname = self.name("a field name or END_STRUCT")
                    self.expect(":", "after the field name")
                    ftype = self.type_ref()
                    init = self.initializer() if self.accept(":=") else None
                    self.expect(";", "after the field")
                    fields.append(VarDecl(fname.line, fname.col, fname.text, ftype, init, "FIELD"))
                self.take()
                self.accept(";")
                decls.append(TypeDecl(name.line, name.col, name.text, "struct", fields=fields))
                continue
            if self.accept("("):
                values: list[tuple[str, Node | None]] = []
                while True:
                    v = self.name("an enumeration value")
                    values.append((v.text, self.expression() if self.accept(":=") else None))
                    if not self.accept(","):
                        break
                self.expect(")", "to close the enumeration")
                if self.accept(":="):  # a default value: the first one is the default anyway
                    self.name("the enumeration's initial value")
                self.expect(";", "after the enumeration")
                decls.append(TypeDecl(name.line, name.col, name.text, "enum", values=values))
                continue
            alias = self.type_ref()
            self.expect(";", "after the type")
            decls.append(TypeDecl(name.line, name.col, name.text, "alias", alias=alias))
        self.take()
        self.accept(";")
        return decls

    # -- statements
    def statements(self, *enders: str) -> list[Node]:
        body: list[Node] = []
        while not self.at(*enders):
            t = self.tok
            if t.kind == "eof" or (t.kind == "keyword" and (t.key.startswith("END_") or t.key in _CLOSERS)):
                raise self.error(f"expected {' or '.join(enders)}, found {self.describe(t)}")
            stmt = self.statement()
            if stmt is not None:
                body.append(stmt)
        return body

    def statement(self) -> Node | None:
        t = self.tok
        self.nest()
        try:
            if self.accept(";"):
                return None
            if t.kind == "keyword":
                key = t.key
                if key == "IF":
                    return self.if_stmt()
                if key == "CASE":
                    return self.case_stmt()
                if key == "FOR":
                    return self.for_stmt()
                if key == "WHILE":
                    self.take()
                    cond = self.expression()
                    self.expect("DO", "after the WHILE condition")
                    body = self.statements("END_WHILE")
                    self.take()
                    self.accept(";")  # optional after END_*, as CODESYS and RuSTy accept
                    return While(t.line, t.col, cond, body)
                if key == "REPEAT":
                    self.take()
                    body = self.statements("UNTIL")
                    self.take()
                    cond = self.expression()
                    self.expect("END_REPEAT", "after the UNTIL condition")
                    self.accept(";")  # optional after END_*, as CODESYS and RuSTy accept
                    return Repeat(t.line, t.col, body, cond)
                if key in ("EXIT", "CONTINUE", "RETURN"):
                    self.take()
                    self.end_of_statement(key)
                    return Jump(t.line, t.col, key)
                if key in UNSUPPORTED:
                    raise self.error(f"{UNSUPPORTED[key]} are not supported")
                raise self.error(f"expected a statement, found {self.describe(t)}")
            if t.kind != "name":
                raise self.error(f"expected a statement, found {self.describe(t)}")
            target = self.postfix(self.primary())
            if isinstance(target, Call):
                self.end_of_statement("the call")
                return CallStmt(t.line, t.col, target)
            if not self.at(":="):
                if self.at("="):
                    raise self.error("expected ':=' (assignment), found '=' (comparison)")
                raise self.error(f"expected ':=' or a call, found {self.describe(self.tok)}")
            self.take()
            value = self.expression()
            self.end_of_statement("the assignment")
            return Assign(t.line, t.col, target, value)
        finally:
            self.depth -= 1

    def end_of_statement(self, what: str) -> None:
        if not self.accept(";"):
            raise self.error(f"expected ';' after {what}, found {self.describe(self.tok)}")

    def if_stmt(self) -> If:
        t = self.take()
        branches = []
        cond = self.expression()
        self.expect("THEN", "after the IF condition")
        branches.append((cond, self.statements("ELSIF", "ELSE", "END_IF")))
        while self.accept("ELSIF"):
            cond = self.expression()
            self.expect("THEN", "after the ELSIF condition")
            branches.append((cond, self.statements("ELSIF", "ELSE", "END_IF")))
        orelse = self.statements("END_IF") if self.accept("ELSE") else []
        self.expect("END_IF", f"to close the IF of line {t.line}")
        self.accept(";")  # optional after END_*, as CODESYS and RuSTy accept
        return If(t.line, t.col, branches, orelse)

    def case_stmt(self) -> Case:
        t = self.take()
        selector = self.expression()
        self.expect("OF", "after the CASE selector")
        arms: list[CaseArm] = []
        while not self.at("ELSE", "END_CASE"):
            if self.tok.kind == "eof":
                raise self.error(f"expected END_CASE for the CASE of line {t.line}, found end of file")
            labels: list[tuple[Node, Node | None]] = []
            while True:
                lo = self.expression()
                hi = self.expression() if self.accept("..") else None
                labels.append((lo, hi))
                if not self.accept(","):
                    break
            self.expect(":", "after the CASE label")
            arms.append(CaseArm(labels, self.case_body()))
        orelse = self.statements("END_CASE") if self.accept("ELSE") else []
        self.expect("END_CASE", f"to close the CASE of line {t.line}")
        self.accept(";")  # optional after END_*, as CODESYS and RuSTy accept
        return Case(t.line, t.col, selector, arms, orelse)

    def case_body(self) -> list[Node]:
        """Statements up to the next label (``value :``, ``lo..hi :``, ``a, b :``), ELSE or END_CASE."""
        body: list[Node] = []
        while not self.at("ELSE", "END_CASE"):
            if self.tok.kind == "eof":
                raise self.error("expected END_CASE, found end of file")
            if self._label_ahead():
                break
            stmt = self.statement()
            if stmt is not None:
                body.append(stmt)
        return body

    def _label_ahead(self) -> bool:
        i = self.pos
        if self.tokens[i].kind == "op" and self.tokens[i].text in ("-", "+"):
            i += 1
        t = self.tokens[i]
        if t.kind not in ("int", "name") and t.key not in ("TRUE", "FALSE"):
            return False
        if t.kind == "name" and self.tokens[i + 1].text == "#":  # typed literal or enum Type#Value
            i += 2
        nxt = self.tokens[i + 1]
        return nxt.kind == "op" and nxt.text in (":", ",", "..")

    def for_stmt(self) -> For:
        t = self.take()
        var = self.name("the loop variable")
        self.expect(":=", "after the FOR variable")
        start = self.expression()
        self.expect("TO", "in the FOR statement")
        stop = self.expression()
        step = self.expression() if self.accept("BY") else None
        self.expect("DO", "in the FOR statement")
        body = self.statements("END_FOR")
        self.take()
        self.accept(";")  # optional after END_*, as CODESYS and RuSTy accept
        return For(t.line, t.col, Name(var.line, var.col, var.text), start, stop, step, body)

    # -- expressions
    def expression(self, level: int = 0) -> Node:
        if level == len(_BINARY_LEVELS):
            return self.power()
        self.nest()
        chain = 0  # a + b + c ... builds a tree as deep as the chain is long: it counts as nesting
        try:
            left = self.expression(level + 1)
            while self.at(*_BINARY_LEVELS[level]):
                op = self.take()
                self.nest()
                chain += 1
                right = self.expression(level + 1)
                left = Binary(op.line, op.col, "AND" if op.key == "&" else op.key, left, right)
            return left
        finally:
            self.depth -= 1 + chain

    def power(self) -> Node:
        base = self.unary()
        if self.at("**"):
            op = self.take()
            return Binary(op.line, op.col, "**", base, self.power())
        return base

    def unary(self) -> Node:
        t = self.tok
        if self.at("-", "+", "NOT"):
            self.take()
            self.nest()
            try:
                operand = self.unary()
            finally:
                self.depth -= 1
            if t.text == "-" and isinstance(operand, Literal) and operand.kind in ("int", "real", "time"):
                return Literal(t.line, t.col, -operand.value, operand.kind, operand.type_name)
            return Unary(t.line, t.col, t.key, operand)
        return self.postfix(self.primary())

    def primary(self) -> Node:
        t = self.tok
        if t.kind in ("int", "real", "string", "time"):
            self.take()
            kind = "string" if t.kind == "string" else t.kind
            return Literal(t.line, t.col, t.value, kind, "WSTRING" if t.text.startswith('"') else None)
        if self.at("TRUE", "FALSE"):
            self.take()
            return Literal(t.line, t.col, t.key == "TRUE", "bool")
        if self.accept("("):
            self.nest()
            try:
                inner = self.expression()
            finally:
                self.depth -= 1
            self.expect(")", "to close the parenthesis")
            return inner
        if t.kind == "keyword" and t.key in UNSUPPORTED:
            raise self.error(f"{UNSUPPORTED[t.key]} are not supported")
        if t.kind == "keyword" and t.key in ("STRING", "WSTRING") and self.peek().text == "#":
            self.take()
        elif t.kind != "name":
            raise self.error(f"expected an expression, found {self.describe(t)}")
        else:
            self.take()
        if self.at("#"):  # INT#5, REAL#1.5, BOOL#TRUE, Color#Red
            self.take()
            v = self.tok
            if v.kind in ("int", "real", "string"):
                self.take()
                return Literal(t.line, t.col, v.value, v.kind, t.key)
            if self.at("-") and self.peek().kind in ("int", "real"):
                self.take()
                v = self.take()
                return Literal(t.line, t.col, -v.value, v.kind, t.key)
            if v.key in ("TRUE", "FALSE"):
                self.take()
                return Literal(t.line, t.col, v.key == "TRUE", "bool", t.key)
            if v.kind == "name":
                self.take()
                return Member(t.line, t.col, Name(t.line, t.col, t.text), v.text)  # Type#Value as Type.Value
            raise self.error(f"expected a value after '{t.text}#'")
        return Name(t.line, t.col, t.text)

    def postfix(self, node: Node) -> Node:
        while True:
            t = self.tok
            if self.at("["):
                self.take()
                indices = [self.expression()]
                while self.accept(","):
                    indices.append(self.expression())
                self.expect("]", "to close the index")
                node = Index(t.line, t.col, node, indices)
            elif self.at("."):
                self.take()
                member = self.name("a member name after '.'")
                node = Member(member.line, member.col, node, member.text)
            elif self.at("("):
                if not isinstance(node, (Name, Member, Index)):
                    raise self.error("only a function or a function block instance can be called")
                self.take()
                args = self.arguments()
                if isinstance(node, Name):
                    node = Call(node.line, node.col, node.name, args)
                else:  # a block instance reached through a member or an index: fb.inner(...), timers[i](...)
                    node = Call(node.line, node.col, node.name if isinstance(node, Member) else "", args, target=node)
            elif self.at("^"):
                raise self.error("pointers are not supported")
            else:
                return node

    def arguments(self) -> list[Arg]:
        args: list[Arg] = []
        if self.accept(")"):
            return args
        while True:
            if self.tok.kind == "name" and self.peek().text in (":=", "=>"):
                pname = self.take()
                output = self.take().text == "=>"
                args.append(Arg(pname.text, self.expression(), output))
            elif self.at("NOT") and self.peek().kind == "name" and self.peek(2).text == "=>":
                raise self.error("negated output bindings are not supported")
            else:
                args.append(Arg(None, self.expression()))
            if not self.accept(","):
                break
        self.expect(")", "to close the call's arguments")
        return args


# --- declarations, line by line (what cRLHF's ``score_lines: statements`` leaves out) ----------

_UNIT_LINE = re.compile(r"\s*(END_)?(FUNCTION_BLOCK|FUNCTION|PROGRAM)\b", re.IGNORECASE)
_BLOCK_OPEN = re.compile(r"\s*(VAR(_INPUT|_OUTPUT|_IN_OUT|_TEMP|_GLOBAL|_EXTERNAL)?|TYPE)\b", re.IGNORECASE)
_BLOCK_CLOSE = re.compile(r"\s*(END_VAR|END_TYPE)\b", re.IGNORECASE)


_HIDDEN = re.compile(r"\(\*|/\*|//|'(?:[^'$]|\$.)*'?|\"(?:[^\"$]|\$.)*\"?")  # comment starts, strings
_NESTED = re.compile(r"\(\*|\*\)")


def _code_text(lines: list[str]) -> list[str]:
    """Each line with its comments and string literals blanked: (* *) comments nest and, like /* */ ones,
    may span lines; // runs to the end of its line; a comment left open runs to the end."""
    out, depth, slash = [], 0, False
    for line in lines:
        text, i = list(line), 0
        while i < len(line):
            if slash:
                end = line.find("*/", i)
                slash, stop = end < 0, len(line) if end < 0 else end + 2
            elif depth:
                m = _NESTED.search(line, i)
                stop = m.end() if m else len(line)
                depth += (1 if m.group() == "(*" else -1) if m else 0
            else:
                m = _HIDDEN.search(line, i)
                if not m:
                    break
                i, stop = m.start(), len(line) if m.group() == "//" else m.end()
                depth, slash = int(m.group() == "(*"), m.group() == "/*"
            text[i:stop] = " " * (stop - i)
            i = stop
        out.append("".join(text))
    return out


def declaration_lines(lines: list[str]) -> list[bool]:
    """Per line: does it declare rather than compute? A unit's first and last line (FUNCTION ...,
    END_FUNCTION and their FUNCTION_BLOCK and PROGRAM kin) and every line of a VAR... or TYPE block, from
    its opening keyword to END_VAR / END_TYPE. Judged by each line's first word outside comments and
    strings, so it works on programs that do not parse; a block left open runs to the end."""
    out, inside = [], False
    for line in _code_text(lines):
        if inside:
            out.append(True)
            inside = not _BLOCK_CLOSE.match(line)
        elif _BLOCK_OPEN.match(line):
            out.append(True)
            inside = not _BLOCK_CLOSE.search(line)  # VAR x : INT; END_VAR on one line
        else:
            out.append(bool(_UNIT_LINE.match(line)))
    return out
