"""Safe, vectorized label expressions such as ``play_time_ms >= 0.5 * duration_ms``.

A dataset spec may define a task's positive rule as an expression over raw
columns instead of a 0/1 column. Only arithmetic, comparisons, ``and``/``or``/
``not``, column names and number literals are allowed; nothing is ``eval``-ed::

    rule = LabelExpression("play_time_ms >= 0.5 * duration_ms")
    rule.columns                      # ("duration_ms", "play_time_ms")
    rule.evaluate({"play_time_ms": np.array([10.0]), "duration_ms": np.array([15.0])})  # array([ True])

An expression may nest at most ``MAX_DEPTH`` levels (``a`` is one, ``a + b + c`` three):
label rules are short, and a deeper one (say 50,000 terms added up) is refused
with an :class:`ExpressionError` instead of overflowing the interpreter's stack.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

MAX_DEPTH = 100  # nesting levels of the parsed expression
_SHOWN_CHARACTERS = 80  # of an expression quoted in an error

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


class ExpressionError(ValueError):
    """An expression uses syntax outside the allowed subset."""


class LabelExpression:
    """A boolean expression over numeric columns, evaluated on whole arrays at once."""

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            self._tree = ast.parse(text, mode="eval")
        except SyntaxError as error:
            raise ExpressionError(f"expression {self._shown} is not valid: {error.msg}") from None
        except (RecursionError, MemoryError):  # the parser's own stack overflows on very deep nesting
            raise self._too_deep("too deeply to parse") from None
        depth = _depth(self._tree.body)
        if depth > MAX_DEPTH:
            raise self._too_deep(f"{depth} levels deep")
        names: set[str] = set()
        self._check(self._tree.body, names)
        self.columns: tuple[str, ...] = tuple(sorted(names))

    def evaluate(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """The expression's boolean value for every row (NaN inputs compare as False)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self._eval(self._tree.body, columns), dtype=bool)

    def _check(self, node: ast.AST, names: set[str]) -> None:
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
            pass
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            self._check(node.left, names)
            self._check(node.right, names)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
            self._check(node.operand, names)
        elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            for child in (node.left, *node.comparators):
                self._check(child, names)
        elif isinstance(node, ast.BoolOp):
            for child in node.values:
                self._check(child, names)
        else:
            raise ExpressionError(
                f"expression {self._shown} uses {type(node).__name__}; only column names, numbers, "
                "+ - * /, comparisons and and/or/not are allowed"
            )

    @property
    def _shown(self) -> str:
        """The expression quoted for an error message, cut short when it is long."""
        if len(self.text) <= _SHOWN_CHARACTERS:
            return repr(self.text)
        return f"{self.text[:_SHOWN_CHARACTERS]!r}... ({len(self.text):,} characters)"

    def _too_deep(self, how: str) -> ExpressionError:
        return ExpressionError(
            f"expression {self._shown} nests {how}; the limit is {MAX_DEPTH} levels: "
            "write it with fewer nested operations or derive the label in a column of the data"
        )

    def _eval(self, node: ast.AST, columns: Mapping[str, np.ndarray]) -> Any:
        if isinstance(node, ast.Name):
            return np.asarray(columns[node.id], dtype=float)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](self._eval(node.left, columns), self._eval(node.right, columns))
        if isinstance(node, ast.UnaryOp):
            operand = self._eval(node.operand, columns)
            return np.logical_not(operand) if isinstance(node.op, ast.Not) else -operand
        if isinstance(node, ast.Compare):
            result, left = True, self._eval(node.left, columns)
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                right = self._eval(comparator, columns)
                result = np.logical_and(result, _COMPARE[type(op)](left, right))
                left = right
            return result
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or  # ast.BoolOp
        values = [self._eval(child, columns) for child in node.values]
        result = values[0]
        for value in values[1:]:
            result = combine(result, value)
        return result


def _depth(root: ast.AST) -> int:
    """The nesting depth of a parsed expression, found without recursion (the tree may be very deep)."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if not isinstance(child, _LEAVES))
    return deepest


_LEAVES = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)  # tokens, not levels
