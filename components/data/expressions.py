"""Safe, vectorized label expressions such as ``play_time_ms >= 0.5 * duration_ms``.

A dataset spec may define a task's positive rule as an expression over raw
columns instead of a 0/1 column. Only arithmetic, comparisons, ``and``/``or``/
``not``, column names and number literals are allowed, and a column compared
with text: ``event == 'purchase'``, ``!=``, or ``in``/``not in`` a tuple of
texts (such a column is a text column, :attr:`LabelExpression.text_columns`,
compared with surrounding whitespace removed); nothing is ``eval``-ed::

    rule = LabelExpression("play_time_ms >= 0.5 * duration_ms")
    rule.columns                      # ("duration_ms", "play_time_ms")
    rule.evaluate({"play_time_ms": np.array([10.0]), "duration_ms": np.array([15.0])})  # array([ True])
    LabelExpression("event in ('cart', 'purchase')").evaluate({"event": np.array(["view", " cart"], object)})

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
        numeric: set[str] = set()  # columns used as numbers
        self._text: set[str] = set()  # columns compared with text
        self._check(self._tree.body, numeric)
        both = sorted(self._text & numeric)
        if both:
            raise ExpressionError(f"expression {self._shown} uses {', '.join(both)} both as text and as a number")
        self.columns: tuple[str, ...] = tuple(sorted(numeric | self._text))
        # Columns compared with text literals: read as text, every other column as a number.
        self.text_columns: tuple[str, ...] = tuple(sorted(self._text))

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
        elif isinstance(node, ast.Compare) and self._text_comparison(node):
            self._text.add(node.left.id)  # type: ignore[attr-defined]  (a Name: checked by _text_comparison)
        elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            for child in (node.left, *node.comparators):
                self._check(child, names)
        elif isinstance(node, ast.BoolOp):
            for child in node.values:
                self._check(child, names)
        else:
            raise ExpressionError(
                f"expression {self._shown} uses {type(node).__name__}; only column names, numbers, "
                "+ - * /, comparisons, and/or/not, and a column compared with text (== 'a', != 'a', "
                "in ('a', 'b')) are allowed"
            )

    def _text_comparison(self, node: ast.Compare) -> bool:
        """Whether ``node`` compares a column with text: ``column == 'a'``, ``!=``, ``column in ('a', 'b')`` or
        ``not in``; a text literal used any other way is an error."""
        if all(_texts(child) is None for child in (node.left, *node.comparators)):
            return False
        op, right = node.ops[0], node.comparators[0]
        equality = isinstance(op, ast.Eq | ast.NotEq) and isinstance(right, ast.Constant)
        membership = isinstance(op, ast.In | ast.NotIn) and isinstance(right, ast.Tuple)
        if len(node.ops) > 1 or not isinstance(node.left, ast.Name) or _texts(right) is None:
            equality = membership = False
        if not (equality or membership):
            raise ExpressionError(
                f"expression {self._shown}: text is compared as column == 'a', column != 'a', "
                "column in ('a', 'b') or column not in ('a', 'b')"
            )
        return True

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
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id in self._text:
            values = np.char.strip(np.asarray(columns[node.left.id], dtype=str))
            matched = np.isin(values, list(_texts(node.comparators[0]) or ()))
            return ~matched if isinstance(node.ops[0], ast.NotEq | ast.NotIn) else matched
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


def _texts(node: ast.AST) -> tuple[str, ...] | None:
    """The text literals of ``'a'`` or ``('a', 'b')``; None when ``node`` is not one of those."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return (node.value,)
    if isinstance(node, ast.Tuple | ast.List) and node.elts:
        values = [element.value for element in node.elts if isinstance(element, ast.Constant)]
        if len(values) == len(node.elts) and all(isinstance(value, str) for value in values):
            return tuple(values)
    return None


def _depth(root: ast.AST) -> int:
    """The nesting depth of a parsed expression, found without recursion (the tree may be very deep)."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if not isinstance(child, _LEAVES))
    return deepest


_LEAVES = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)  # tokens, not levels
