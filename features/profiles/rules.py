"""Segments and tags: named rules over a member's fields, declared in YAML (configs/segments.yaml, configs/tags.yaml)
and evaluated for every member at once (batch `profile`, `score`, audiences) or for one (`/profile`), by the same
code on arrays, so both answer alike.

A rule is a Python-like expression, parsed and checked when its file is read, never `eval`'d:
    price_sensitivity >= 0.35 and priced_orders >= 2
    tier == 'high_value' and churn_probability >= 0.5
    preferred_channel in ['app', 'mini_program'] or pct(eng_shares) >= 0.9
    segment('price_sensitive') and not consent_marketing
Fields are the snapshot's features (`community-ml features catalog`), the profile's own fields (PROFILE_FIELDS)
and the models' outputs; `pct(field)` is the member's percentile in the snapshot's population (0 to 1: a rule
that reads the same on any dataset's scale), `segment(name)` whether the member is in a segment, `known(field)`
whether the field has a value. An empty value makes a comparison false. Operators: and, or, not, ==, !=, <, <=,
>, >=, in, not in, +, -, *, /.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from features.common.errors import DataError

Array = np.ndarray
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
FUNCTIONS = ("pct", "segment", "known")
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
}
_ARITHMETIC: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
}


@dataclass(frozen=True)
class Env:
    """What rules read for `size` members: each field's values (numbers as float with NaN for empty, booleans as
    0/1, text as objects with None), the population's percentile grids, and the segments already worked out."""

    size: int
    columns: Mapping[str, Array]
    quantiles: Mapping[str, Array] = field(default_factory=dict)
    segments: Mapping[str, Array] = field(default_factory=dict)


Compiled = Callable[[Env], Any]


@dataclass(frozen=True)
class Rule:
    name: str
    meaning: str
    text: str
    reads: frozenset[str]  # the fields it reads (pct's included)
    segments: frozenset[str]  # the segments it reads through segment()
    run: Compiled

    def evaluate(self, env: Env) -> Array:
        """True for the members the rule holds for (a bool array of env.size)."""
        return _truth(self.run(env), env.size)


def _truth(value: Any, size: int) -> Array:
    if isinstance(value, np.ndarray) and value.dtype == bool and value.shape == (size,):
        return value  # what comparisons give: nothing to convert (never written to)
    array = np.asarray(value)
    if array.dtype == object:
        array = np.array([bool(v) and v == v for v in np.broadcast_to(array, (size,))], dtype=bool)
    elif array.dtype.kind == "f":
        array = np.nan_to_num(array, nan=0.0) != 0
    return np.broadcast_to(array.astype(bool), (size,)).copy()


def load_rules(
    path: Path, section: str, fields: Mapping[str, str], segments: frozenset[str] = frozenset()
) -> list[Rule]:
    """The rules under `section` of the YAML file, each checked: a bad one stops with the file, the entry and what
    is wrong. `fields`: every field a rule may read, with its type ("number" or "text"); `segments`: the segment
    names a rule may read through segment()."""
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(loaded, dict) or not isinstance(loaded.get(section, {}), dict):
        raise DataError(f"{path}: expected `{section}:` with one entry per name (NAME: {{meaning: ..., rule: ...}})")
    rules = []
    for name, entry in (loaded.get(section) or {}).items():
        where = f"{path}: {section}.{name}"
        if not isinstance(name, str) or not NAME.match(name):
            raise DataError(f"{where}: a name is lower-case letters, digits and '_', starting with a letter")
        if not isinstance(entry, dict) or set(entry) - {"meaning", "rule"} or "rule" not in entry:
            raise DataError(f"{where}: expected `meaning:` and `rule:` (and nothing else)")
        if not isinstance(entry["rule"], str) or not entry["rule"].strip():
            raise DataError(f"{where}.rule: a rule is an expression, e.g. price_sensitivity >= 0.35")
        rules.append(parse_rule(name, str(entry.get("meaning", "")), entry["rule"], fields, segments, f"{where}.rule"))
    return rules


def parse_rule(
    name: str, meaning: str, text: str, fields: Mapping[str, str], segments: frozenset[str], where: str
) -> Rule:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise DataError(f"{where}: not a rule ({exc.msg} at column {exc.offset}): {text!r}") from exc
    compiler = _Compiler(fields, segments, where)
    run, kind = compiler.compile(tree.body)
    if kind == "text":
        raise DataError(f"{where}: a rule is true or false; {text!r} is a text value")
    return Rule(
        name,
        meaning,
        text.strip(),
        frozenset(compiler.reads),
        frozenset(compiler.segments),
        run,
    )


class _Compiler:
    """An expression's tree as nested functions over an Env, type-checked: text is compared for (in)equality or
    membership only, numbers with anything."""

    def __init__(self, fields: Mapping[str, str], segments: frozenset[str], where: str) -> None:
        self.fields, self.known_segments, self.where = fields, segments, where
        self.reads: set[str] = set()
        self.segments: set[str] = set()

    def fail(self, message: str) -> DataError:
        return DataError(f"{self.where}: {message}")

    def compile(self, node: ast.AST) -> tuple[Compiled, str]:
        """(function, its type: number, text or bool)."""
        if isinstance(node, ast.BoolOp):
            parts = [self.compile(v)[0] for v in node.values]
            reduce = np.logical_and if isinstance(node.op, ast.And) else np.logical_or

            def combined(env: Env) -> Array:
                result = _truth(parts[0](env), env.size)
                for part in parts[1:]:
                    result = reduce(result, _truth(part(env), env.size))
                return result

            return combined, "bool"
        if isinstance(node, ast.UnaryOp):
            inner, kind = self.compile(node.operand)
            if isinstance(node.op, ast.Not):
                return (lambda env: ~_truth(inner(env), env.size)), "bool"
            if isinstance(node.op, ast.USub) and kind == "number":
                return (lambda env: np.negative(inner(env))), "number"
            raise self.fail(f"{ast.unparse(node)!r}: this operator does not apply to a {kind}")
        if isinstance(node, ast.BinOp):
            op = _ARITHMETIC.get(type(node.op))
            (left, lk), (right, rk) = self.compile(node.left), self.compile(node.right)
            if op is None or lk == "text" or rk == "text":
                raise self.fail(f"{ast.unparse(node)!r}: arithmetic is + - * / on numbers")

            def arithmetic(env: Env) -> Any:
                with np.errstate(divide="ignore", invalid="ignore"):
                    return op(np.asarray(left(env), dtype=float), np.asarray(right(env), dtype=float))

            return arithmetic, "number"
        if isinstance(node, ast.Compare):
            return self._compare(node), "bool"
        if isinstance(node, ast.Name):
            return self._field(node.id), self.fields.get(node.id, "number")
        if isinstance(node, ast.Constant) and isinstance(node.value, bool | int | float | str):
            value = node.value
            return (lambda env: value), ("text" if isinstance(value, str) else "number")
        if isinstance(node, ast.Call):
            return self._call(node)
        raise self.fail(
            f"{ast.unparse(node)!r} is not allowed in a rule (fields, numbers, 'text', comparisons, and/or/not)"
        )

    def _field(self, name: str) -> Compiled:
        if name not in self.fields:
            close = difflib.get_close_matches(name, list(self.fields), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise self.fail(
                f"unknown field {name!r}{hint}; see `community-ml features catalog` and the README's profile fields"
            )
        self.reads.add(name)
        return lambda env: env.columns[name]

    def _call(self, node: ast.Call) -> tuple[Compiled, str]:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS or len(node.args) != 1 or node.keywords:
            raise self.fail(f"{ast.unparse(node)!r}: the functions are pct(field), segment('name') and known(field)")
        (arg,) = node.args
        if name == "segment":
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise self.fail(f"{ast.unparse(node)!r}: segment() takes a segment's name in quotes")
            segment = arg.value
            if segment not in self.known_segments:
                close = difflib.get_close_matches(segment, list(self.known_segments), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise self.fail(f"unknown segment {segment!r}{hint}")
            self.segments.add(segment)
            return (lambda env: env.segments[segment]), "bool"
        if not isinstance(arg, ast.Name):
            raise self.fail(f"{ast.unparse(node)!r}: {name}() takes a field's name")
        read = self._field(arg.id)
        if name == "known":
            return (lambda env: _known(read(env))), "bool"
        if self.fields[arg.id] != "number":
            raise self.fail(f"{ast.unparse(node)!r}: pct() ranks numbers; {arg.id} is text")
        column = arg.id

        def percentile(env: Env) -> Array:
            values = np.asarray(read(env), dtype=float)
            grid = env.quantiles[column]
            ranked = np.searchsorted(grid, values, side="right") / max(len(grid), 1)
            return np.where(np.isnan(values), np.nan, ranked)

        return percentile, "number"

    def _compare(self, node: ast.Compare) -> Compiled:
        left, lk = self.compile(node.left)
        steps: list[Compiled] = []
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                if not isinstance(comparator, ast.List | ast.Tuple | ast.Set) or not all(
                    isinstance(e, ast.Constant) for e in comparator.elts
                ):
                    raise self.fail(f"{ast.unparse(node)!r}: `in` takes a list of values, e.g. ['app', 'web']")
                values = [e.value for e in comparator.elts]  # type: ignore[attr-defined]
                steps.append(_membership(left, values, isinstance(op, ast.NotIn)))
                left, lk = (lambda env, vs=values: vs), "list"
                continue
            right, rk = self.compile(comparator)
            compare = _COMPARE[type(op)]
            if "text" in (lk, rk):
                if not isinstance(op, ast.Eq | ast.NotEq):
                    raise self.fail(f"{ast.unparse(node)!r}: text is compared with == != or in, not ordered")
                if {lk, rk} != {"text"}:
                    raise self.fail(f"{ast.unparse(node)!r}: compares text with a number")
            steps.append(_comparison(left, right, compare, text="text" in (lk, rk)))
            left, lk = right, rk
        if len(steps) == 1:
            return steps[0]
        return lambda env: np.logical_and.reduce([_truth(s(env), env.size) for s in steps])


def _comparison(left: Compiled, right: Compiled, compare: Callable[[Any, Any], Any], text: bool) -> Compiled:
    if text:

        def on_text(env: Env) -> Array:
            a, b = np.asarray(left(env), dtype=object), np.asarray(right(env), dtype=object)
            result = compare(a, b).astype(bool)
            return result & _known(a) & _known(b)  # an empty value is neither equal nor unequal

        return on_text

    def on_numbers(env: Env) -> Array:
        with np.errstate(invalid="ignore"):
            return compare(np.asarray(left(env), dtype=float), np.asarray(right(env), dtype=float))

    return on_numbers


def _membership(left: Compiled, values: list[Any], negate: bool) -> Compiled:
    wanted = set(values)

    def member(env: Env) -> Array:
        array = np.asarray(left(env), dtype=object).ravel()
        if len(array) <= 64:  # a request's few members: a set lookup beats hashing a column
            found = np.array([v in wanted for v in array], dtype=bool)
        else:
            found = pd.Series(array, dtype=object).isin(values).to_numpy(dtype=bool)
        return (~found if negate else found) & _known(array)

    return member


def _known(values: Any) -> Array:
    array = np.asarray(values)
    if array.dtype == object:
        return np.array([v is not None and v == v for v in array.ravel()], dtype=bool).reshape(array.shape)
    if array.dtype.kind == "f":
        return ~np.isnan(array)
    return np.ones(array.shape, dtype=bool)
