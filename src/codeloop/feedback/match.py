"""The match expert: how much of a reference program's structure a candidate shares (DESIGN.md 1.3).

Two dense signals for a policy-gradient reward, after the paper's eqs. 4.8 and 4.9 and CodeBLEU's
syntax and dataflow matches, computed with Python's own ``ast`` (no tree-sitter):

- AST match = Count(AST_cand ∩ AST_ref) / Count(AST_ref): every reference subtree (a node with at least
  one child node; identifiers, attribute names and literal values left out, as tree-sitter's
  s-expressions leave out a leaf's text) counts once per occurrence, and is matched when the candidate
  has the same subtree anywhere.
- Data-flow match = Count(G(cand) ∩ G(ref)) / Count(G(ref)): edges ``(variable, relation, sources)``
  where the relation is "comesFrom" (``y = x``, and every later use of a variable, pointing to its
  definition) or "computedFrom" (``y = f(x, z)``, a loop or comprehension target from its iterable);
  variable names are renamed ``var_0, var_1, ...`` in order of first appearance, so consistent
  renaming does not lower the score. Each candidate edge matches at most one reference edge.

Both are 0.0 when the candidate does not parse, and 0.0 when the reference has nothing to match (a
constant that a policy-gradient baseline cancels). Nothing here runs code.
"""

from __future__ import annotations

import ast
from collections import Counter

_SKIPPED = (ast.expr_context, ast.Load, ast.Store, ast.Del)


def _children(node: ast.AST) -> list[ast.AST]:
    return [c for c in ast.iter_child_nodes(node) if not isinstance(c, _SKIPPED)]


def _shape(node: ast.AST, memo: dict[int, str]) -> str:
    """The node's subtree as node types only: ``BinOp(Name,Add,Name)``."""
    key = id(node)
    if key not in memo:
        kids = _children(node)
        name = type(node).__name__
        memo[key] = f"{name}({','.join(_shape(c, memo) for c in kids)})" if kids else name
    return memo[key]


def _subtrees(tree: ast.AST) -> list[str]:
    memo: dict[int, str] = {}
    return [_shape(n, memo) for n in ast.walk(tree) if _children(n)]


def _parse(program: str) -> ast.AST | None:
    try:
        return ast.parse(program)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def ast_match(candidate: str, reference: str) -> float:
    """Matched reference subtrees / reference subtrees (0.0 if either does not parse)."""
    cand, ref = _parse(candidate), _parse(reference)
    if cand is None or ref is None:
        return 0.0
    have = set(_subtrees(cand))
    wanted = _subtrees(ref)
    return sum(s in have for s in wanted) / len(wanted) if wanted else 0.0


def _reads(node: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]


class _DataFlow(ast.NodeVisitor):
    """Edges in source order: definitions (assignment, loop and comprehension targets, arguments) and uses."""

    def __init__(self) -> None:
        self.edges: list[tuple[str, str, tuple[str, ...]]] = []
        self.defined: set[str] = set()

    def _uses(self, node: ast.AST | None) -> list[str]:
        """The names ``node`` reads (comprehension targets in it defined first), each read of a defined one an edge."""
        if node is None:
            return []
        for sub in ast.walk(node):
            if isinstance(sub, ast.comprehension):
                self._define(sub.target, None, _reads(sub.iter))
            elif isinstance(sub, ast.NamedExpr):
                self._define(sub.target, sub.value, _reads(sub.value))
        names = _reads(node)
        for name in names:
            if name in self.defined:
                self.edges.append((name, "comesFrom", (name,)))
        return names

    def _define(self, target: ast.AST, value: ast.AST | None, sources: list[str]) -> None:
        relation = "comesFrom" if isinstance(value, ast.Name) else "computedFrom"
        for node in ast.walk(target):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.edges.append((node.id, relation, tuple(dict.fromkeys(sources))))
                self.defined.add(node.id)

    def visit_arg(self, node: ast.arg) -> None:
        self.defined.add(node.arg)

    def visit_Assign(self, node: ast.Assign) -> None:
        sources = self._uses(node.value)
        for target in node.targets:
            self._define(target, node.value, sources)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._define(node.target, node.value, self._uses(node.value))

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        name = [node.target.id] if isinstance(node.target, ast.Name) else []
        self._define(node.target, None, name + self._uses(node.value))

    def visit_For(self, node: ast.For) -> None:
        self._define(node.target, None, self._uses(node.iter))
        for stmt in node.body + node.orelse:
            self.visit(stmt)

    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.expr):  # an expression statement, a return value, a condition: its reads
            self._uses(node)
            return
        super().generic_visit(node)


def dataflow_graph(program: str) -> list[tuple[str, str, tuple[str, ...]]] | None:
    """The program's data-flow edges with variables renamed in order of first appearance (None: no parse)."""
    tree = _parse(program)
    if tree is None:
        return None
    flow = _DataFlow()
    flow.visit(tree)
    names: dict[str, str] = {}

    def norm(name: str) -> str:
        return names.setdefault(name, f"var_{len(names)}")

    return [(norm(v), rel, tuple(norm(s) for s in src)) for v, rel, src in flow.edges]


def dataflow_match(candidate: str, reference: str) -> float:
    """Matched reference data-flow edges / reference edges (0.0 if either does not parse or the reference has none)."""
    cand, ref = dataflow_graph(candidate), dataflow_graph(reference)
    if cand is None or not ref:
        return 0.0
    left = Counter(cand)
    matched = 0
    for edge in ref:
        if left[edge] > 0:
            left[edge] -= 1
            matched += 1
    return matched / len(ref)

