"""A safe parser for Python-literal text cells (the phonon tutorial's ``data.csv``).

:func:`parse_literal` accepts literals, containers, unary minus and ``array([...], dtype=...)``
only (docs/papers/dostransformer.md §2.2): the text is parsed with :mod:`ast` and walked; nothing
in a data file is
ever evaluated or executed.
"""

from __future__ import annotations

import ast
from typing import Any

import numpy as np

from dos_bench.io import DataError

__all__ = ["parse_literal"]

_DTYPE_NAMES = {
    "bool",
    "bool_",
    "int",
    "float",
    "complex",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
}
_NAME_CONSTANTS = {
    "nan": float("nan"),
    "inf": float("inf"),
    "NaN": float("nan"),
    "Inf": float("inf"),
}
_MAX_DEPTH = 64


class _LiteralWalker:
    """Evaluates an AST that may only contain literals and ``array(literal, dtype=...)``."""

    def __init__(self, where: str, source: str) -> None:
        self.where, self.source = where, source

    def refuse(self, node: ast.AST, why: str) -> DataError:
        try:
            snippet = ast.get_source_segment(self.source, node) or type(node).__name__
        except Exception:
            snippet = type(node).__name__
        if len(snippet) > 60:
            snippet = snippet[:57] + "..."
        return DataError(
            f"{self.where}: refused to evaluate {snippet!r}: {why}; only literals, lists, "
            "tuples, dicts, unary minus and array([...]) are allowed (nothing is executed)"
        )

    def visit(self, node: ast.AST, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise self.refuse(node, "nested too deeply")
        d = depth + 1
        if isinstance(node, ast.Constant):
            v = node.value
            if v is Ellipsis:
                raise self.refuse(node, "numpy summarised an array with '...'")
            if isinstance(v, (bool, int, float, complex, str)) or v is None:
                return v
            raise self.refuse(node, f"constant of type {type(v).__name__}")
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = []
            for e in node.elts:
                if isinstance(e, ast.Starred):
                    raise self.refuse(e, "starred expression")
                items.append(self.visit(e, d))
            if isinstance(node, ast.Tuple):
                return tuple(items)
            if isinstance(node, ast.Set):
                try:
                    return set(items)
                except TypeError:
                    raise self.refuse(node, "unhashable set element") from None
            return items
        if isinstance(node, ast.Dict):
            out = {}
            for k, v in zip(node.keys, node.values, strict=False):
                if k is None:
                    raise self.refuse(v, "dict unpacking (**)")
                key = self.visit(k, d)
                try:
                    out[key] = self.visit(v, d)
                except TypeError:
                    raise self.refuse(k, "unhashable dict key") from None
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = self.visit(node.operand, d)
            if isinstance(v, bool) or not isinstance(v, (int, float, complex)):
                raise self.refuse(node, "unary sign on a non-number")
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Name):
            if node.id in _NAME_CONSTANTS:
                return _NAME_CONSTANTS[node.id]
            raise self.refuse(node, f"name {node.id!r} is not allowed")
        if isinstance(node, ast.Call):
            return self.visit_array(node, d)
        raise self.refuse(node, f"{type(node).__name__} expressions are not allowed")

    def visit_array(self, node: ast.Call, depth: int) -> np.ndarray:
        if not (isinstance(node.func, ast.Name) and node.func.id == "array"):
            raise self.refuse(node, "the only call allowed is the bare name array(...)")
        if len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
            raise self.refuse(node, "array(...) takes exactly one literal argument")
        dtype = None
        for kw in node.keywords:
            if kw.arg != "dtype":
                raise self.refuse(node, f"array(...) keyword {kw.arg or '**'!r} is not allowed")
            v = kw.value
            if isinstance(v, ast.Constant) and isinstance(v.value, str):
                name = v.value
            elif isinstance(v, ast.Name):
                name = v.id
            else:
                raise self.refuse(v, "dtype must be a plain name or string")
            if name not in _DTYPE_NAMES:
                raise self.refuse(v, f"dtype {name!r} is not allowed")
            dtype = np.dtype(name)
        value = self.visit(node.args[0], depth)
        try:
            return np.asarray(value, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise self.refuse(node, f"not a rectangular numeric array ({exc})") from None


def parse_literal(text: str, where: str) -> Any:
    """Parse a Python-literal string (as written by ``repr`` of dicts holding numpy arrays).

    Accepted: numbers, strings, ``True/False/None``, ``nan``/``inf``, lists, tuples, sets,
    dicts, unary ``-``/``+`` and calls to the bare name ``array`` with one literal argument and
    an optional ``dtype=`` keyword (a whitelisted dtype name or string). The text is parsed with
    :func:`ast.parse` and walked; **nothing is evaluated or executed**. Anything else (attribute
    access, other calls, names, operators, comprehensions, lambdas, ``...``) raises
    :class:`DataError` naming ``where``.
    """
    if not isinstance(text, str):
        raise DataError(f"{where}: expected text, got {type(text).__name__}")
    src = text.strip()
    if not src:
        raise DataError(f"{where}: empty cell")
    try:
        tree = ast.parse(src, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise DataError(f"{where}: not a Python literal ({type(exc).__name__}: {exc})") from None
    return _LiteralWalker(where, src).visit(tree.body)
