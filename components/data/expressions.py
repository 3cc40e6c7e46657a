"""Safe, vectorized label expressions such as ``play_time_ms >= 0.5 * duration_ms``.

A dataset spec may define a task's positive rule as an expression over raw
columns instead of a 0/1 column. Only arithmetic, comparisons, ``and``/``or``/
``not``, column names and number literals are allowed; nothing is ``eval``-ed::

    rule = LabelExpression("play_time_ms >= 0.5 * duration_ms")
    rule.columns                      # ("duration_ms", "play_time_ms")
    rule.evaluate({"play_time_ms": np.array([10.0]), "duration_ms": np.array([15.0])})  # array([ True])
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

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
            raise ExpressionError(f"expression {text!r} is not valid: {error.msg}") from None
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
                f"expression {self.text!r} uses {type(node).__name__}; only column names, numbers, "
                "+ - * /, comparisons and and/or/not are allowed"
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
