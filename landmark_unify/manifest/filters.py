"""Row filters (``--where``): a small expression language, parsed and evaluated here, that cannot run code.

The text is parsed with Python's :mod:`ast` in ``eval`` mode and every node is checked against a strict
whitelist; nothing is ever passed to ``eval``, ``exec`` or ``DataFrame.query``. Evaluation is done here,
with pandas/NumPy operations on the columns. The grammar (``docs/guides/filters.md``)::

    expr     := expr 'or' expr | expr 'and' expr | 'not' expr | '(' expr ')'
              | expr '|' expr | expr '&' expr | '~' expr          (the same, pandas spelling)
              | operand CMP operand [CMP operand ...]            CMP: == != < <= > >=
              | operand ['not'] 'in' list
              | NAME 'is' ['not'] null | 'isnull(' NAME ')' | 'notnull(' NAME ')'
              | NAME                                             (a boolean column)
    operand  := NAME | literal
    list     := '[' literal, ... ']' | '(' literal, ... ')'
    literal  := 'text' | "text" | number | -number | true | false | null   (also True, False, None)
    NAME     := a column of the manifest (scalar columns only: not landmarks, valid, bbox)

Nulls: a comparison with a null value is false (``yaw > 30`` is false where yaw is unknown), ``x == null``
is ``isnull(x)``, ``not`` negates the result as computed. Anything else (attribute access, subscripts,
calls other than ``isnull`` / ``notnull``, ``@`` variables, names that are no column, lambdas,
comprehensions, f-strings, ``:=``, ``*``, arithmetic) is a :class:`FilterError` naming the offending part.
Pure: no I/O.
"""
from __future__ import annotations

import ast
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import LandmarkUnifyError
from .schema import FIXED_COLUMNS

#: Longest accepted expression (characters), and deepest nesting: a guard against pathological input.
MAX_LENGTH = 4000
MAX_DEPTH = 64
#: Columns that hold arrays per row: not usable in a filter.
ARRAY_COLUMNS = tuple(FIXED_COLUMNS)
NULL_FUNCTIONS = ("isnull", "notnull")
_LITERAL_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_CMP = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}


class FilterError(LandmarkUnifyError):
    """A ``--where`` expression that is not in the filter language, or does not fit the manifest."""


@dataclass(frozen=True)
class Filter:
    """A parsed filter: ``text`` as given, ``tree`` its checked syntax tree, ``columns`` the names it reads."""

    text: str
    tree: ast.Expression
    columns: tuple[str, ...]

    def mask(self, df: pd.DataFrame) -> np.ndarray:
        """``(len(df),)`` bool: the rows that match."""
        return evaluate(self, df)

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``df`` that match (attrs kept)."""
        out = df[self.mask(df)]
        out.attrs = dict(df.attrs)
        return out


def _fail(text: str, node: ast.AST | None, what: str, hint: bool = True) -> FilterError:
    where = ""
    if node is not None and hasattr(node, "col_offset"):
        seg = ast.get_source_segment(text, node) or ""
        where = f" at column {node.col_offset + 1}" + (f" ({seg!r})" if seg else "")
    if not hint:
        return FilterError(f"bad filter {text!r}{where}: {what}")
    return FilterError(f"bad filter {text!r}{where}: {what}. Allowed: column names, literals (text, numbers, "
                       "true/false/null), comparisons, and/or/not, in [...], 'is null', isnull()/notnull() "
                       "(docs/guides/filters.md)")


def parse_filter(text: str, columns: Sequence[str] | None = None) -> Filter:
    """Parse and check ``text``; raises :class:`FilterError` for anything outside the language. With
    ``columns``, every name must be one of them (and not an array column)."""
    if not isinstance(text, str):
        raise FilterError(f"a filter must be text; got {type(text).__name__}")
    if not text.strip():
        raise FilterError("empty filter")
    if len(text) > MAX_LENGTH:
        raise FilterError(f"filter is {len(text)} characters long; at most {MAX_LENGTH}")
    if "@" in text:
        at = text.index("@")
        raise FilterError(f"bad filter {text!r} at column {at + 1}: '@' (local variables) is not allowed")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise FilterError(f"bad filter {text!r}: syntax error at column {exc.offset}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise FilterError(f"bad filter {text!r}: {exc}") from None
    text = text.strip()
    names: list[str] = []
    _check(tree.body, text, names, 0)
    if columns is not None:
        _check_columns(text, names, columns)
    return Filter(text, tree, tuple(dict.fromkeys(names)))


def _check_columns(text: str, names: Sequence[str], columns: Sequence[str]) -> None:
    known = set(columns)
    for n in names:
        if n in ARRAY_COLUMNS:
            raise FilterError(f"bad filter {text!r}: column {n!r} holds an array per face and cannot be compared")
        if n not in known:
            scalar = [c for c in columns if c not in ARRAY_COLUMNS]
            raise FilterError(f"bad filter {text!r}: {n!r} is not a column; columns: {scalar}")


def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None or isinstance(node.value, (str, int, float, bool)) and not isinstance(node.value, complex)
    if isinstance(node, ast.Name):
        return node.id in _LITERAL_NAMES
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)
    return False


def _check(node: ast.AST, text: str, names: list[str], depth: int) -> None:
    """Walk the tree; every node must be of a whitelisted kind in a whitelisted place."""
    if depth > MAX_DEPTH:
        raise _fail(text, node, f"nested more than {MAX_DEPTH} deep")
    d = depth + 1
    if isinstance(node, ast.BoolOp):
        for v in node.values:
            _check(v, text, names, d)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
        _check(node.operand, text, names, d)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
        _check(node.left, text, names, d)
        _check(node.right, text, names, d)
    elif isinstance(node, ast.Compare):
        _check_compare(node, text, names)
    elif isinstance(node, ast.Call):
        _check_call(node, text, names)
    elif isinstance(node, ast.Name):
        if node.id in _LITERAL_NAMES:
            if not isinstance(_literal(node), bool):
                raise _fail(text, node, "null alone is not a condition")
            return
        _check_name(node, text, names)
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return
    else:
        raise _fail(text, node, _describe(node))


def _check_name(node: ast.Name, text: str, names: list[str]) -> None:
    if node.id.startswith("_"):
        raise _fail(text, node, f"names starting with '_' ({node.id!r}) are not allowed")
    if not isinstance(node.ctx, ast.Load):
        raise _fail(text, node, "assignment is not allowed")
    names.append(node.id)


#: The largest number literal a filter takes: every integer up to it is exact as a float64, the type numbers
#: are compared in (a 400-digit literal cannot be compared with any column).
MAX_NUMBER = 2.0 ** 53


def _check_number(node: ast.AST, text: str) -> None:
    """A number literal must be finite and at most :data:`MAX_NUMBER` in magnitude."""
    value = _literal(node)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > MAX_NUMBER:
        raise _fail(text, node, f"number out of range (finite, at most {MAX_NUMBER:.0f} in magnitude)", hint=False)


def _check_operand(node: ast.AST, text: str, names: list[str]) -> None:
    if isinstance(node, ast.Name) and node.id not in _LITERAL_NAMES:
        _check_name(node, text, names)
    elif not _is_literal(node):
        raise _fail(text, node, _describe(node) + " where a column or a literal is expected")
    else:
        _check_number(node, text)


def _check_compare(node: ast.Compare, text: str, names: list[str]) -> None:
    items = [node.left, *node.comparators]
    for op, right in zip(node.ops, node.comparators):
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(right, (ast.List, ast.Tuple)):
                raise _fail(text, right, "'in' needs a list of literals, e.g. source in ['wflw', 'lapa']")
            for e in right.elts:
                if not _is_literal(e):
                    raise _fail(text, e, _describe(e) + " inside a list (only literals)")
                _check_number(e, text)
        elif isinstance(op, (ast.Is, ast.IsNot)):
            if not (_is_literal(right) and _literal(right) is None):
                raise _fail(text, right, "'is' and 'is not' take only null")
        elif type(op) not in _CMP:
            raise _fail(text, node, f"operator {type(op).__name__} is not allowed")
    for k, item in enumerate(items):
        if k > 0 and isinstance(node.ops[k - 1], (ast.In, ast.NotIn, ast.Is, ast.IsNot)):
            continue
        _check_operand(item, text, names)
    if len(node.ops) > 1 and any(isinstance(op, (ast.In, ast.NotIn, ast.Is, ast.IsNot)) for op in node.ops):
        raise _fail(text, node, "'in' and 'is' cannot be chained; use 'and'")


def _check_call(node: ast.Call, text: str, names: list[str]) -> None:
    if not (isinstance(node.func, ast.Name) and node.func.id in NULL_FUNCTIONS):
        raise _fail(text, node, "function calls are not allowed (only isnull(column) and notnull(column))")
    if node.keywords or len(node.args) != 1 or not isinstance(node.args[0], ast.Name) \
            or node.args[0].id in _LITERAL_NAMES:
        raise _fail(text, node, f"{node.func.id}() takes exactly one column name")
    _check_name(node.args[0], text, names)


def _describe(node: ast.AST) -> str:
    kinds = {
        ast.Attribute: "attribute access ('.')", ast.Subscript: "subscripts ('[...]')", ast.Lambda: "lambda",
        ast.ListComp: "comprehensions", ast.SetComp: "comprehensions", ast.DictComp: "comprehensions",
        ast.GeneratorExp: "comprehensions", ast.JoinedStr: "f-strings", ast.NamedExpr: "assignment (':=')",
        ast.Starred: "'*' unpacking", ast.Call: "function calls", ast.BinOp: "arithmetic",
        ast.IfExp: "'if ... else'", ast.Dict: "dicts", ast.Set: "sets", ast.Await: "await", ast.Yield: "yield",
        ast.List: "a list here", ast.Tuple: "a tuple here",
    }
    for typ, what in kinds.items():
        if isinstance(node, typ):
            return f"{what} not allowed"
    if isinstance(node, ast.Constant):
        return f"the literal {node.value!r} is not a condition" if not isinstance(node.value, bytes) \
            else "bytes literals are not allowed"
    return f"{type(node).__name__} is not allowed"


def _literal(node: ast.AST):
    if isinstance(node, ast.Name):
        return _LITERAL_NAMES[node.id]
    if isinstance(node, ast.UnaryOp):
        v = node.operand.value
        return -v if isinstance(node.op, ast.USub) else v
    return node.value


# --- evaluation ---------------------------------------------------------------------------------------------

def _kind_of_series(s: pd.Series) -> str:
    dt = s.dtype
    if pd.api.types.is_bool_dtype(dt):
        return "bool"
    if pd.api.types.is_numeric_dtype(dt):
        return "number"
    if pd.api.types.is_string_dtype(dt) or pd.api.types.is_object_dtype(dt):
        non_null = s.dropna()
        if len(non_null) and not all(isinstance(v, str) for v in non_null.iloc[:100]):
            return "other"
        return "text"
    return "other"


def _kind_of_value(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return "text"


class _Evaluator:
    def __init__(self, f: Filter, df: pd.DataFrame) -> None:
        self.f = f
        self.df = df
        self.n = len(df)
        _check_columns(f.text, f.columns, list(df.columns))

    def fail(self, node, what) -> FilterError:
        return _fail(self.f.text, node, what, hint=False)

    def column(self, node: ast.Name) -> tuple[pd.Series, str]:
        s = self.df[node.id]
        kind = _kind_of_series(s)
        if kind == "other":
            raise self.fail(node, f"column {node.id!r} has type {s.dtype} and cannot be compared")
        return s, kind

    def operand(self, node):
        if isinstance(node, ast.Name) and node.id not in _LITERAL_NAMES:
            s, kind = self.column(node)
            return ("col", s, kind)
        v = _literal(node)
        return ("lit", v, _kind_of_value(v))

    def bool_mask(self, node) -> np.ndarray:
        if isinstance(node, ast.BoolOp):
            masks = [self.bool_mask(v) for v in node.values]
            out = masks[0]
            for m in masks[1:]:
                out = (out & m) if isinstance(node.op, ast.And) else (out | m)
            return out
        if isinstance(node, ast.UnaryOp):
            return ~self.bool_mask(node.operand)
        if isinstance(node, ast.BinOp):
            left, right = self.bool_mask(node.left), self.bool_mask(node.right)
            return (left & right) if isinstance(node.op, ast.BitAnd) else (left | right)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            s = self.df[node.args[0].id]
            null = s.isna().to_numpy(dtype=bool)
            return null if node.func.id == "isnull" else ~null
        if isinstance(node, (ast.Name, ast.Constant)):
            if isinstance(node, ast.Constant) or node.id in _LITERAL_NAMES:
                return np.full(self.n, bool(_literal(node)))
            s, kind = self.column(node)
            if kind != "bool":
                raise self.fail(node, f"column {node.id!r} holds {kind}, not true/false; compare it, e.g. "
                                      f"{node.id} == ...")
            return s.fillna(False).to_numpy(dtype=bool)
        raise self.fail(node, _describe(node))  # pragma: no cover - the parser refused it

    def compare(self, node: ast.Compare) -> np.ndarray:
        out = np.ones(self.n, bool)
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            out &= self.compare_one(left, op, right)
            left = right
        return out

    def compare_one(self, left, op, right) -> np.ndarray:
        if isinstance(op, (ast.Is, ast.IsNot)):
            a = self.operand(left)
            null = (a[1].isna().to_numpy(dtype=bool) if a[0] == "col" else np.full(self.n, a[1] is None))
            return null if isinstance(op, ast.Is) else ~null
        if isinstance(op, (ast.In, ast.NotIn)):
            a = self.operand(left)
            values = [_literal(e) for e in right.elts]
            for e, v in zip(right.elts, values):
                self.check_types(left, a[2], e, _kind_of_value(v))
            if a[0] == "col":
                got = a[1].isin([v for v in values if v is not None]).to_numpy(dtype=bool)
                if any(v is None for v in values):
                    got = got | a[1].isna().to_numpy(dtype=bool)
            else:
                got = np.full(self.n, a[1] in values)
            return got if isinstance(op, ast.In) else ~got
        a, b = self.operand(left), self.operand(right)
        sym = _CMP[type(op)]
        if a[2] == "null" or b[2] == "null":
            other = b if a[2] == "null" else a
            if sym not in ("==", "!="):
                raise self.fail(right, f"'{sym}' with null; use 'is null' or 'is not null'")
            null = other[1].isna().to_numpy(dtype=bool) if other[0] == "col" else np.full(self.n, other[1] is None)
            return null if sym == "==" else ~null
        self.check_types(left, a[2], right, b[2])
        if sym not in ("==", "!=") and "bool" in (a[2], b[2]):
            raise self.fail(right, f"'{sym}' on true/false values")
        x = a[1].to_numpy(dtype=object) if a[0] == "col" else a[1]
        y = b[1].to_numpy(dtype=object) if b[0] == "col" else b[1]
        nulls = np.zeros(self.n, bool)
        for side in (a, b):
            if side[0] == "col":
                nulls = nulls | side[1].isna().to_numpy(dtype=bool)
        if a[2] == "number":
            x = a[1].to_numpy(dtype=np.float64, na_value=np.nan) if a[0] == "col" else float(a[1])
            y = b[1].to_numpy(dtype=np.float64, na_value=np.nan) if b[0] == "col" else float(b[1])
        elif a[0] == "col" or b[0] == "col":
            x = np.where(nulls, "", x) if a[0] == "col" else x
            y = np.where(nulls, "", y) if b[0] == "col" else y
        ops = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal, ">": np.greater,
               ">=": np.greater_equal}
        with np.errstate(invalid="ignore"):
            got = np.asarray(ops[sym](x, y), dtype=bool)
        if got.ndim == 0:
            got = np.full(self.n, bool(got))
        return got & ~nulls

    def check_types(self, left, ka: str, right, kb: str) -> None:
        if "null" in (ka, kb) or ka == kb:
            return
        what = {"text": "text", "number": "numbers", "bool": "true/false"}
        lname = left.id if isinstance(left, ast.Name) and left.id not in _LITERAL_NAMES else None
        rname = right.id if isinstance(right, ast.Name) and right.id not in _LITERAL_NAMES else None
        desc_a = f"column {lname!r} holds {what[ka]}" if lname else f"{what[ka]}"
        desc_b = f"column {rname!r} holding {what[kb]}" if rname else f"{what[kb]} ({ast.unparse(right)})"
        raise self.fail(right, f"{desc_a}; it cannot be compared with {desc_b}")


def evaluate(f: Filter | str, df: pd.DataFrame) -> np.ndarray:
    """``(len(df),)`` bool mask of the rows of ``df`` (a manifest DataFrame) that match filter ``f``."""
    if isinstance(f, str):
        f = parse_filter(f)
    ev = _Evaluator(f, df)
    mask = ev.bool_mask(f.tree.body)
    return np.asarray(mask, dtype=bool).reshape(len(df))


def filter_rows(df: pd.DataFrame, where: str | Filter | None) -> pd.DataFrame:
    """The rows of ``df`` matching ``where`` (all of them when ``where`` is None or empty)."""
    if where is None or (isinstance(where, str) and not where.strip()):
        return df
    f = where if isinstance(where, Filter) else parse_filter(where)
    return f.apply(df)
